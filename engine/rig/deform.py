"""The backward warp that lets the radiance field follow the rig (INSTA-style), and the field seen through it.

For an *observed* canonical point p (where a ray samples the expressed head):

* near the face: the nearest triangle of the *expressed* proxy gives the closest point c, its barycentric
  coordinates b and the residual r = p - c; p maps to ``sum(b * V_src[t]) + rot(n_obs -> n_src) r`` on the
  *source* proxy (the proxy at the photo's expression, where the field was fitted). Points in front of the face
  keep this map out to ``OUTSIDE_FAR`` so space a moving surface left behind maps to air; points inside the head
  blend, between ``INSIDE_NEAR`` and ``INSIDE_FAR`` of depth, into the volume map;
* the volume map is rigid: identity for the head, the jaw's rigid motion (hinge rotation + shift) weighted by the
  proxy's jaw mask for the chin's interior;
* a *mouth cavity*: where the lips part wider than in the photo, the field knows nothing (no teeth, no tongue), so
  a dark recessed surface is shown instead of stretched lip skin (docs/RIG.md);
* guards at the eyes and the mouth: a lid or lip that closes over an opening never shows what the photo had
  inside it (:func:`eye_guard`).

This module is the exact map (:func:`warp_points`, the slow, obvious twin); :mod:`engine.rig.baked` is its fast
path on grids, and ``tests/test_rig.py`` compares them. All lengths here are canonical units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from engine.rig import topology as T

INSIDE_NEAR, INSIDE_FAR = 0.012, 0.03
"""Depth behind the expressed surface (canonical units) over which the surface map fades into the volume map."""
OUTSIDE_FAR = 0.07
"""Distance in front of the expressed surface out to which points follow the surface map (then fade out)."""
JAW_DEPTH_NEAR, JAW_DEPTH_FAR = 0.04, 0.06
"""Depth over which the chin's interior follows the jaw before fading to the rigid head."""
CAVITY_DEPTH = 0.012
"""How far behind the lips' inner edge the mouth cavity's dark surface sits."""
CAVITY_RGB = (0.16, 0.05, 0.05)
"""Colour of the mouth cavity: the shadowed mouth interior (the field has none of its own)."""
SAMPLE_SPACING = 0.001
COLLAPSED = 0.05
"""A triangle whose area shrank below this fraction of its area in the photo counts as collapsed."""
CANDIDATES = 10


@dataclass(frozen=True)
class WarpSpec:
    """Everything the warp needs, in canonical units: the expressed (observed) and source proxies (N_PROXY, 3),
    oriented triangles, per-vertex jaw weight (N_PROXY,), and the jaw's rigid maps from observed to source
    space (3x3 linear part, translation)."""

    observed: np.ndarray
    source: np.ndarray
    triangles: np.ndarray
    jaw_weight: np.ndarray
    jaw_linear: np.ndarray
    jaw_offset: np.ndarray

    @property
    def moving(self) -> np.ndarray:
        """(N_PROXY,) how far each vertex moved between source and observed."""
        return np.linalg.norm(self.observed - self.source, axis=1)

    def is_identity(self, tol: float = 1e-6) -> bool:
        return bool(self.moving.max() < tol) and bool(np.allclose(self.jaw_linear, np.eye(3), atol=1e-9))


def _closest_on_triangles(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor):
    """Closest point on triangles (a, b, c) (..., 3) to points p (..., 3) (Ericson, Real-Time Collision Detection
    5.1.5), vectorised. Returns barycentric coordinates (..., 3)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    eps = 1e-30
    # interior
    denom = va + vb + vc
    denom = torch.where(denom.abs() > eps, denom, torch.ones_like(denom))
    v_in, w_in = vb / denom, vc / denom
    bary = torch.stack([1 - v_in - w_in, v_in, w_in], -1)

    def put(mask, vals):
        nonlocal bary
        bary = torch.where(mask[..., None], vals, bary)

    one, zero = torch.ones_like(d1), torch.zeros_like(d1)
    # edge bc
    m_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    w_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6)).clamp(min=eps)
    put(m_bc, torch.stack([zero, 1 - w_bc, w_bc], -1))
    # edge ac
    m_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    w_ac = d2 / (d2 - d6).clamp(min=eps)
    put(m_ac, torch.stack([1 - w_ac, zero, w_ac], -1))
    # edge ab
    m_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    v_ab = d1 / (d1 - d3).clamp(min=eps)
    put(m_ab, torch.stack([1 - v_ab, v_ab, zero], -1))
    # vertices
    put((d6 >= 0) & (d5 <= d6), torch.stack([zero, zero, one], -1))
    put((d3 >= 0) & (d4 <= d3), torch.stack([zero, one, zero], -1))
    put((d1 <= 0) & (d2 <= 0), torch.stack([one, zero, zero], -1))
    return bary


def _triangle_samples(v: np.ndarray, tris: np.ndarray, spacing: float):
    """Points covering every triangle at most ``spacing`` apart (barycentric grids), their triangle ids and
    barycentric coordinates."""
    e = np.stack([v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 1]], v[tris[:, 0]] - v[tris[:, 2]]], 1)
    n_sub = np.clip(np.ceil(np.linalg.norm(e, axis=-1).max(1) / spacing), 1, 64).astype(int)
    pts, ids, bs = [], [], []
    for n in np.unique(n_sub):
        sel = np.nonzero(n_sub == n)[0]
        i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        keep = (i + j) <= n
        bary = np.stack([n - i[keep] - j[keep], i[keep], j[keep]], 1) / n  # (S, 3)
        tv = v[tris[sel]]  # (m, 3, 3)
        p = np.einsum("sk,mkd->msd", bary, tv).reshape(-1, 3)
        pts.append(p)
        ids.append(np.repeat(sel, len(bary)))
        bs.append(np.tile(bary, (len(sel), 1)))
    return np.concatenate(pts), np.concatenate(ids), np.concatenate(bs)


class NearestTriangle:
    """Nearest-triangle queries on one mesh. Fast path: the nearest of dense triangle samples (at most
    ``SAMPLE_SPACING`` apart) stands for the closest point -- an error of under a millimetre tangentially, which
    the warp carries along the surface. ``exact``: the exact closest point (Ericson) on the triangles of the ten
    nearest samples; ``brute``: on every triangle (the slow, obvious twin)."""

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, keep: np.ndarray | None = None) -> None:
        self.v = np.asarray(vertices, dtype=np.float64)
        self.t = np.asarray(triangles, dtype=np.int64)
        ids = np.arange(len(self.t)) if keep is None else np.nonzero(keep)[0]
        pts, sample_local, self.sample_bary = _triangle_samples(self.v, self.t[ids], SAMPLE_SPACING)
        self.sample_tri = ids[sample_local]
        self.ids = ids
        self.tree = cKDTree(pts)
        tv = torch.as_tensor(self.v[self.t])  # (F, 3, 3)
        self.ta, self.tb, self.tc = tv[:, 0], tv[:, 1], tv[:, 2]

    def refine(self, p: np.ndarray, tri: np.ndarray, bary0: np.ndarray | None = None) -> np.ndarray:
        """Barycentric coordinates (N, 3) of each p's projection onto the plane of its triangle ``tri``, clamped
        into the triangle: the exact closest point whenever it lies inside that triangle. Where ``bary0`` (the
        sample that chose the triangle) is closer than the clamped projection, it is kept."""
        a, b, c = (self.v[self.t[tri, k]] for k in range(3))
        e0, e1, d = b - a, c - a, p - a
        d00, d01, d11 = (e0 * e0).sum(1), (e0 * e1).sum(1), (e1 * e1).sum(1)
        d20, d21 = (d * e0).sum(1), (d * e1).sum(1)
        den = d00 * d11 - d01 * d01
        den = np.where(np.abs(den) > 1e-30, den, 1.0)
        v = (d11 * d20 - d01 * d21) / den
        w = (d00 * d21 - d01 * d20) / den
        bary = np.clip(np.stack([1.0 - v - w, v, w], 1), 0.0, None)
        bary = bary / np.maximum(bary.sum(1, keepdims=True), 1e-12)
        if bary0 is None:
            return bary
        tv = np.stack([a, b, c], 1)
        d_new = np.linalg.norm(np.einsum("nk,nkd->nd", bary, tv) - p, axis=1)
        d_old = np.linalg.norm(np.einsum("nk,nkd->nd", bary0, tv) - p, axis=1)
        return np.where((d_old < d_new)[:, None], bary0, bary)

    def query_lattice(self, grid: np.ndarray, n: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
        """Triangle ids and barycentric coordinates for every point of a lattice ``grid`` (from :func:`_lattice`:
        ``n`` points per axis, x fastest, ``voxel`` apart), in one Euclidean distance transform: each voxel takes
        the sample in its nearest occupied voxel, then :meth:`refine` projects onto that sample's triangle."""
        from scipy.ndimage import distance_transform_edt

        lo = grid[0]
        pts = self.tree.data
        ijk = np.round((pts - lo) / voxel).astype(np.int64)
        ok = ((ijk >= 0) & (ijk < n)).all(1)
        flat = np.full(int(np.prod(n)), -1, dtype=np.int64)
        lin = (ijk[ok, 2] * n[1] + ijk[ok, 1]) * n[0] + ijk[ok, 0]
        flat[lin] = np.nonzero(ok)[0]
        occupied = (flat >= 0).reshape(n[2], n[1], n[0])
        if not occupied.any():
            raise ValueError("the face proxy does not cross the warp grid")
        nearest = distance_transform_edt(~occupied, return_distances=False, return_indices=True)
        src = (nearest[0] * n[1] + nearest[1]) * n[0] + nearest[2]
        sample = flat[src.reshape(-1)]
        tri = self.sample_tri[sample]
        return tri, self.refine(grid, tri, self.sample_bary[sample])

    def query(self, p: np.ndarray, mode: str = "fast") -> tuple[np.ndarray, np.ndarray]:
        """Triangle ids (N,) and barycentric coordinates (N, 3) of the closest surface point to each p (N, 3);
        ``mode`` is fast | exact | brute."""
        if mode == "fast":
            _, nn = self.tree.query(p, k=1, workers=-1)
            tri = self.sample_tri[nn]
            return tri, self.refine(p, tri, self.sample_bary[nn])
        pt = torch.as_tensor(np.asarray(p, dtype=np.float64))
        if mode == "brute":
            cand = torch.as_tensor(self.ids).expand(len(p), -1)
        else:
            _, nn = self.tree.query(p, k=CANDIDATES, workers=-1)
            cand = torch.as_tensor(self.sample_tri[nn])
        a, b, c = self.ta[cand], self.tb[cand], self.tc[cand]
        bary = _closest_on_triangles(pt[:, None], a, b, c)
        q = bary[..., :1] * a + bary[..., 1:2] * b + bary[..., 2:] * c
        best = ((q - pt[:, None]) ** 2).sum(-1).argmin(1)
        rows = torch.arange(len(p))
        return cand[rows, best].numpy(), bary[rows, best].numpy()


def finder_for(spec: WarpSpec) -> NearestTriangle:
    """Nearest-triangle search on the observed proxy, without the triangles an expression collapsed (a closed
    eye's disc): they have no surface left to show, and binding to them would show what they hid."""
    t = spec.triangles

    def area(v):
        return np.linalg.norm(np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]]), axis=1)

    keep = area(spec.observed) > COLLAPSED * area(spec.source)
    return NearestTriangle(spec.observed, t, keep)


def _face_normals(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _rotate_between(r: np.ndarray, n_from: np.ndarray, n_to: np.ndarray) -> np.ndarray:
    """Rotate vectors r (N, 3) by the smallest rotation taking unit n_from to unit n_to (Rodrigues)."""
    axis = np.cross(n_from, n_to)
    s = np.linalg.norm(axis, axis=1, keepdims=True)
    cos = (n_from * n_to).sum(1, keepdims=True)
    k = axis / np.maximum(s, 1e-12)
    rot = r * cos + np.cross(k, r) * s + k * (k * r).sum(1, keepdims=True) * (1.0 - cos)
    return np.where(s > 1e-9, rot, r)


def _smooth01(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def warp_points(points: np.ndarray, spec: WarpSpec, mode: str = "fast", chunk: int = 65536):
    """The warp of observed canonical points (N, 3): source points (N, 3) and mouth-cavity weight (N,). ``mode``
    chooses the closest-point search (:class:`NearestTriangle`)."""
    p = np.asarray(points, dtype=np.float64)
    finder = finder_for(spec)
    outs = []
    for i in range(0, len(p), chunk):
        tri, bary = finder.query(p[i : i + chunk], mode)
        outs.append(warp_with_binding(p[i : i + chunk], tri, bary, spec))
    if not outs:
        return np.zeros((0, 3)), np.zeros(0)
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def warp_with_binding(
    p: np.ndarray, tri: np.ndarray, bary: np.ndarray, spec: WarpSpec, cavity: bool = True, guard: bool = True
):
    """The warp of points p (N, 3) whose closest point on the observed proxy is ``bary`` (N, 3) on ``tri`` (N,):
    source points (N, 3) and the mouth-cavity weight (N,). ``guard`` applies :func:`eye_guard`."""
    t = spec.triangles[tri]
    c_obs = np.einsum("nk,nkd->nd", bary, spec.observed[t])
    c_src = np.einsum("nk,nkd->nd", bary, spec.source[t])
    n_obs = _face_normals(spec.observed, spec.triangles)[tri]
    n_src = _face_normals(spec.source, spec.triangles)[tri]
    r = p - c_obs
    dist = np.linalg.norm(r, axis=1)
    h = (r * n_obs).sum(1)
    surface = c_src + _rotate_between(r, n_obs, n_src)
    # the volume map: rigid head, the jaw's rigid motion for the chin's interior
    jaw_w = (bary * spec.jaw_weight[t]).sum(1) * (
        1.0 - _smooth01((dist - JAW_DEPTH_NEAR) / (JAW_DEPTH_FAR - JAW_DEPTH_NEAR))
    )
    jaw_w = np.where(h < 0, jaw_w, 0.0)
    jawed = p @ spec.jaw_linear.T + spec.jaw_offset
    volume = p + jaw_w[:, None] * (jawed - p)
    outside = h >= 0
    alpha = np.where(
        outside,
        1.0 - _smooth01((dist - 0.8 * OUTSIDE_FAR) / (0.2 * OUTSIDE_FAR)),
        1.0 - _smooth01((dist - INSIDE_NEAR) / (INSIDE_FAR - INSIDE_NEAR)),
    )
    q = alpha[:, None] * surface + (1.0 - alpha[:, None]) * volume
    if guard:
        q = eye_guard(p, q, spec)
    return q, (mouth_cavity(p, q, spec) if cavity else np.zeros(len(p)))


EYE_MARGIN_UPPER, EYE_MARGIN_LOWER = 0.0008, 0.0022
"""How far above / below the photo's eye contour (canonical units) lid skin is taken from when the lids fully
cover the eye: the upper lid keeps its lash line (a closed eye's dark seam); the lower margin also absorbs the
contour's own error (mediapipe's lower lid contour can sit on the eye white)."""


def _between(xy: np.ndarray, upper: np.ndarray, lower: np.ndarray, margin) -> np.ndarray:
    """Signed distance-like depth (N,) of 2-D points inside the opening between two lid / lip polylines, seen
    along +Z: positive between them (by ``margin`` extra), negative outside or past the corners."""
    x0, x1 = min(upper[0, 0], upper[-1, 0]), max(upper[0, 0], upper[-1, 0])
    y_up = np.interp(xy[:, 0], *_sorted_xy(upper))
    y_dn = np.interp(xy[:, 0], *_sorted_xy(lower))
    return np.minimum(np.minimum(y_up - xy[:, 1], xy[:, 1] - y_dn), np.minimum(xy[:, 0] - x0, x1 - xy[:, 0])) + margin


MOUTH_MARGIN = 0.0008
"""How far beyond the photo's inner lip contour (canonical units) lip colour is taken from where the lips close."""


def _guard(p, q, spec: WarpSpec, up_idx, dn_idx, margin_up: float, margin_dn: float) -> np.ndarray:
    """Keep an opening's covers opaque (see :func:`eye_guard`) for the opening between polylines ``up_idx`` and
    ``dn_idx`` (lids, inner lips). Modifies and returns ``q``."""
    po = spec.observed[up_idx + dn_idx]
    ps = spec.source[up_idx + dn_idx]
    lo = np.minimum(po.min(0), ps.min(0)) - 0.01
    hi = np.maximum(po.max(0), ps.max(0)) + 0.01
    near = np.nonzero(((p >= lo) & (p <= hi)).all(1))[0]
    if len(near) == 0:
        return q
    up_s, dn_s = spec.source[up_idx], spec.source[dn_idx]
    up_o, dn_o = spec.observed[up_idx], spec.observed[dn_idx]
    x = p[near, 0]
    ap_src = np.interp(x, *_sorted_xy(up_s)) - np.interp(x, *_sorted_xy(dn_s))
    ap_obs = np.interp(x, *_sorted_xy(up_o)) - np.interp(x, *_sorted_xy(dn_o))
    # only where the photo's opening is open (not past its corners) can a cover close over it
    closure = np.where(ap_src > 0.1 * ap_src.max(), np.clip(1.0 - ap_obs / np.maximum(ap_src, 1e-9), 0.0, 1.0), 0.0)
    in_obs = _between(p[near, :2], up_o, dn_o, 0.0)
    in_src = _between(q[near, :2], up_s, dn_s, 0.0)
    bad = (in_obs < 0) & (in_src > -closure * max(margin_up, margin_dn)) & ((in_src > 0) | (closure > 0))
    if not bad.any():
        return q
    idx, k = near[bad], closure[bad]
    xq = q[idx, 0]
    y_up = np.interp(xq, *_sorted_xy(up_s))
    y_dn = np.interp(xq, *_sorted_xy(dn_s))
    upper = q[idx, 1] > 0.5 * (y_up + y_dn)
    q[idx, 1] = np.where(
        upper, np.maximum(q[idx, 1], y_up + k * margin_up), np.minimum(q[idx, 1], y_dn - k * margin_dn)
    )
    return q


def eye_guard(p: np.ndarray, q: np.ndarray, spec: WarpSpec) -> np.ndarray:
    """Keep lids and lips opaque: an observed point outside the expressed eye (or mouth) opening, on a lid or a
    lip, must not show what the photo had inside that opening (the eye, the teeth). Where the opening is closing
    (closure k = 1 - observed / photo aperture at that place along it), such points whose source falls inside the
    photo's opening, or near it, are moved vertically onto the nearer lid or lip, ``k * margin`` outside it (a lid's
    lash line stays: ``EYE_MARGIN_UPPER`` is small). Returns corrected sources."""
    c = T.contours()
    q = q.copy()
    for side in ("left", "right"):
        q = _guard(p, q, spec, c[f"eye_{side}_upper"], c[f"eye_{side}_lower"], EYE_MARGIN_UPPER, EYE_MARGIN_LOWER)
    return _guard(p, q, spec, c["lip_inner_upper"], c["lip_inner_lower"], MOUTH_MARGIN, MOUTH_MARGIN)


def _sorted_xy(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o = np.argsort(v[:, 0])
    return v[o, 0], v[o, 1]


def _mouth_polygon(v: np.ndarray) -> np.ndarray:
    return v[T.contours()["mouth_loop"]]


MIN_GAP = 0.0015
"""Lips closer than this (canonical units) count as closed: no cavity shows between them (a corner that merely
stretches keeps its lips together)."""


def _opening(xy: np.ndarray, v: np.ndarray, edge: float, min_gap: float = 0.0) -> np.ndarray:
    """(N,) in [0, 1]: how far inside the mouth opening of proxy ``v`` points lie, seen along +Z -- between the
    inner lips at their x, more than ``min_gap / 2`` from either, by ``edge`` to be fully in; 0 where the lips
    touch or cross."""
    c = T.contours()
    return _smooth01(_between(xy, v[c["lip_inner_upper"]], v[c["lip_inner_lower"]], -0.5 * min_gap) / edge)


def mouth_cavity(p: np.ndarray, q: np.ndarray, spec: WarpSpec) -> np.ndarray:
    """(N,) in [0, 1]: 1 where an observed point lies in the mouth opening (between the expressed inner lips, seen
    along the face's +Z, within the mouth's depth) *and* maps to somewhere outside the photo's own opening -- the
    parted lips show something the photo never saw."""
    mo = _mouth_polygon(spec.observed)
    edge = 0.0015
    out = np.zeros(len(p))
    lo, hi = mo.min(0) - [edge, edge, 0.06], mo.max(0) + [edge, edge, 0.03]
    near = np.nonzero(((p >= lo) & (p <= hi)).all(1))[0]
    if len(near) == 0:
        return out
    pn, qn = p[near], q[near]
    inside_obs = _opening(pn[:, :2], spec.observed, edge, MIN_GAP)
    inside_src = _opening(qn[:, :2], spec.source, edge)
    z_lo, z_hi = mo[:, 2].min() - 0.05, mo[:, 2].max() + 0.02
    window = _smooth01((pn[:, 2] - z_lo) / 0.01) * (1.0 - _smooth01((pn[:, 2] - z_hi) / 0.01))
    out[near] = inside_obs * (1.0 - inside_src) * window
    return out


def cavity_depth_plane(spec: WarpSpec) -> float:
    """Canonical z of the cavity's dark back surface."""
    return float(_mouth_polygon(spec.observed)[:, 2].mean() - CAVITY_DEPTH)
