"""The asset's hair (or hijab, cap): the field's surface where it lies outside the fitted skin's skull by more than
a few millimetres, as a clean open shell with its boundary tucked under the skin, its own UV disc and texture.

``hair_shell`` is pure (a surface mesh and callables in, arrays out); ``hair_from_field`` makes the surface and the
callables from a bundle's field and the assembled asset (engine.asset.build). docs/ASSET.md "Hair"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from engine.asset.measure import boundary_loops, uv_signed_area, winding_numbers
from engine.extract.mesh import marching_cubes, sample_grid, vertex_normals


@dataclass(frozen=True)
class HairConfig:
    """How the hair is cut from the field's surface. Lengths in metres; heights in the template's frame (origin
    between the ears at eye height, +y up, +z the face)."""

    out_m: float = 0.0025
    """The field's surface counts as hair where it is more than this outside the skin."""
    nape_m: float = -0.06
    """Nothing below this height (the nape's and the ears' lower line; engine.fit.head_prior's ``nape_m``)."""
    brow_m: float = 0.03
    """In front of the ear plane (template z > 0) nothing below this height (the face, the temples, the jaw:
    engine.fit.head_prior's ``brow_m``)."""
    ear_x_m: float = 0.06
    """The ears (left out: the template's own ears, which the field wraps in a blob): beyond this |x|, ..."""
    ear_y_m: tuple[float, float] = (-0.06, 0.015)
    """... between these heights ..."""
    ear_z_m: float = 0.035
    """... and within this of the ear plane (template z = 0)."""
    side_out_m: float = 0.005
    """Below the brows at the head's sides (beyond ``side_x_m`` of the mid-plane, in front of the ear plane and
    over the ears), the field's surface counts as hair where it is more than this outside the skin and its colour
    is nearer the photo's hair colour than its skin colour (a bob's sides, hair over the ears). 0: never."""
    side_x_m: float = 0.06
    """Where the sides begin, from the mid-plane (the face's outline at the cheeks is inside this)."""
    side_max_out_m: float = 0.035
    """... and at most this far outside it (beyond, the field's surface at the sides is a flat wing toward the
    background or the shoulders, not hair)."""
    ear_cover: float = 0.45
    """An ear is under the hair when at least this fraction of the field's surface over it (its ear box) is hair
    by the rule above; otherwise its box stays out and the ear shows."""
    side_gap_m: float = 0.002
    """Hair over an ear: the least gap between it and the skin (the ear stays under the hair)."""
    side_smooth_iters: int = 30
    """Hair over an ear: rounds of Laplacian smoothing (the field's surface there is the ear's blob, not hair's
    shape), every fifth followed by the push out to ``side_gap_m``."""
    hole_m2: float = 0.0015
    """Gaps in the hair's selection at the sides smaller than this (15 cm^2) are filled (where the template's ear
    reaches the field's surface under the hair)."""
    min_component_m2: float = 0.001
    """A connected piece of hair smaller than this (10 cm^2) is dropped (field noise, a collar, an ear's rim)."""
    min_area_m2: float = 0.003
    """Less hair than this in all (30 cm^2) is a bald head: no hair part."""
    max_triangles: int = 20000
    """Face budget of the decimated shell."""
    smooth_iters: int = 8
    """Taubin iterations on the field's surface before the cut."""
    tuck_m: float = 0.001
    """The shell's open boundary is moved to this far inside the skin (along the skin's normal)."""
    tuck_rings: int = 2
    """Over this many edge rings inside the boundary the tuck fades out (no step at the edge)."""
    voxel_m: float = 0.003
    """Marching-cubes lattice step over the skull's box (the field is trilinear, so finer only resamples it)."""
    margin_m: float = 0.06
    """The lattice's box is the skin's skull region grown by this much (the thickest hair kept)."""

    def __post_init__(self) -> None:
        if self.out_m <= 0 or self.tuck_m < 0 or self.voxel_m <= 0 or self.max_triangles < 100:
            raise ValueError("HairConfig: out_m, voxel_m > 0, tuck_m >= 0, max_triangles >= 100")


@dataclass(frozen=True)
class HairShell:
    """The hair in world metres: ``positions`` (N, 3), ``normals`` (N, 3) outward, ``uv`` (N, 2) in [0, 1] (v up),
    ``tris`` (F, 3) wound outward, ``sample_points`` (N, 3) where each vertex takes the field's colour (its place
    on the field's surface before the tuck), ``info`` the numbers asset.json records."""

    positions: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    tris: np.ndarray
    sample_points: np.ndarray
    info: dict


def surface_distance_fn(verts: np.ndarray, tris: np.ndarray, per_edge: int = 6) -> Callable:
    """points (N, 3) -> (signed distance (N,) to the triangle mesh ``verts`` (V, 3) / ``tris`` (F, 3), positive on
    the side the triangles' normals point to, and that unit normal (N, 3)): the plane distance of the triangle
    holding the nearest of ``per_edge``-per-edge barycentric samples (exact on a face, a close bound near edges)."""
    a, b, c = (verts[tris[:, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-18)
    i, j = np.meshgrid(np.arange(per_edge + 1), np.arange(per_edge + 1), indexing="ij")
    keep = i + j <= per_edge
    wb, wc = i[keep] / per_edge, j[keep] / per_edge
    wa = 1.0 - wb - wc
    samples = wa[None, :, None] * a[:, None] + wb[None, :, None] * b[:, None] + wc[None, :, None] * c[:, None]
    owner = np.repeat(np.arange(len(tris)), len(wa))
    tree = cKDTree(samples.reshape(-1, 3))

    def fn(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.asarray(points, np.float64)
        _, k = tree.query(p)
        f = owner[k]
        return ((p - a[f]) * n[f]).sum(1), n[f]

    return fn


def surface_near_fn(verts: np.ndarray, tris: np.ndarray, per_edge: int = 6) -> Callable:
    """points (N, 3) -> unsigned distance (N,) to the triangle mesh ``verts`` / ``tris``, to the nearest of
    ``per_edge``-per-edge barycentric samples (no sign, so a thin part -- an ear -- is never 'inside' from afar)."""
    a, b, c = (verts[tris[:, k]] for k in range(3))
    i, j = np.meshgrid(np.arange(per_edge + 1), np.arange(per_edge + 1), indexing="ij")
    keep = i + j <= per_edge
    wb, wc = i[keep] / per_edge, j[keep] / per_edge
    wa = 1.0 - wb - wc
    samples = wa[None, :, None] * a[:, None] + wb[None, :, None] * b[:, None] + wc[None, :, None] * c[:, None]
    tree = cKDTree(samples.reshape(-1, 3))

    def fn(points: np.ndarray, upto: float = np.inf) -> np.ndarray:
        """``upto``: distances beyond it come back as inf (a much faster query when only "nearer than" counts)."""
        return tree.query(np.asarray(points, np.float64), distance_upper_bound=upto)[0]

    return fn


def _components(faces: np.ndarray, n_verts: int) -> np.ndarray:
    """(F,) connected-component label of each face (faces sharing a vertex are connected)."""
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    adj = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_verts, n_verts))
    _, labels = connected_components(adj, directed=False)
    return labels[faces[:, 0]]


def _adjacency(faces: np.ndarray, n: int):
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    return ((adj + adj.T) > 0).astype(np.float64)


def _ear_box(local_template: np.ndarray, cfg: HairConfig) -> np.ndarray:
    x, y, z = np.asarray(local_template, np.float64).T
    return (np.abs(x) > cfg.ear_x_m) & (y > cfg.ear_y_m[0]) & (y < cfg.ear_y_m[1]) & (np.abs(z) < cfg.ear_z_m)


def _side_box(tpl: np.ndarray, cfg: HairConfig) -> np.ndarray:
    """(N,) bool: template-frame points at the head's sides below the brows (beyond ``side_x_m``, in front of the
    ear plane's back edge)."""
    x, y, z = np.asarray(tpl, np.float64).T
    return (np.abs(x) > cfg.side_x_m) & (y < cfg.brow_m) & (z > -cfg.ear_z_m)


def _with_sides(v, f, tpl, dist, ok, is_hair_colour: Callable, cfg: HairConfig):
    """The hair selection ``ok`` (V,) with the head's sides below the brows added where the field is hair (far
    enough outside the skin, hair-coloured; ``tpl`` the vertices in the template's frame), each ear's box only
    when the hair covers it (``cfg.ear_cover``), the sides' small gaps filled. Returns (selection, the selected
    vertices over a covered ear, {"left" / "right": the fraction of that ear's box that is hair})."""
    x, y, z = tpl.T
    side = _side_box(tpl, cfg) & (y >= cfg.nape_m)
    cand = side & ~ok & (dist > cfg.side_out_m) & (dist < cfg.side_max_out_m)
    hairy = np.zeros(len(v), bool)
    if cand.any():
        hairy[cand] = is_hair_colour(v[cand])
    box = _ear_box(tpl, cfg)
    vert_area = np.zeros(len(v))
    np.add.at(vert_area, f.reshape(-1), np.repeat(_areas(v, f) / 3.0, 3))
    covered = np.zeros(len(v), bool)
    ears = {}
    for name, sign in (("left", 1.0), ("right", -1.0)):  # the template's +x is the subject's left
        mine = box & (np.sign(x) == sign)
        a = float(vert_area[mine].sum())
        frac = float(vert_area[mine & hairy].sum()) / a if a > 0 else 0.0
        ears[name] = round(frac, 3)
        if frac >= cfg.ear_cover:
            covered |= mine
    sel = ok | (hairy & (~box | covered))
    sel = _fill_gaps(sel, f, vert_area, cfg.hole_m2, allowed=side & (~box | covered))
    return sel, covered & sel, ears


def _over_covered_ear(tpl: np.ndarray, ears: dict, cfg: HairConfig, grow_m: float = 0.015) -> np.ndarray:
    """(N,) bool: template-frame points ``tpl`` in the box of an ear the hair covers (``ears``: the fractions
    :func:`_with_sides` measured), the box grown by ``grow_m`` (below, in front, behind and inward)."""
    x, y, z = np.asarray(tpl, np.float64).T
    signs = [s for name, s in (("left", 1.0), ("right", -1.0)) if ears.get(name, 0.0) >= cfg.ear_cover]
    box = (np.abs(x) > cfg.ear_x_m - grow_m) & (y > cfg.ear_y_m[0] - grow_m) & (y < cfg.ear_y_m[1])
    return box & (np.abs(z) < cfg.ear_z_m + grow_m) & np.isin(np.sign(x), signs)


def _fill_gaps(sel: np.ndarray, f: np.ndarray, vert_area: np.ndarray, max_m2: float, allowed: np.ndarray):
    """``sel`` with each gap (unselected vertices connected among themselves) of less than ``max_m2`` whose vertices
    are all ``allowed`` selected."""
    n = len(sel)
    free = ~sel
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e = e[free[e[:, 0]] & free[e[:, 1]]]
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, lab = connected_components(adj, directed=False)
    m = int(lab.max()) + 1
    area = np.bincount(lab[free], weights=vert_area[free], minlength=m)
    bad = np.bincount(lab[free], weights=(~allowed[free]).astype(np.float64), minlength=m)
    has = np.bincount(lab[free], minlength=m) > 0
    fill = np.nonzero(has & (area < max_m2) & (bad == 0))[0]
    return sel | (free & np.isin(lab, fill))


def _smooth_over_ears(v, f, covered, skin_near: Callable, to_local: Callable, cfg: HairConfig) -> np.ndarray:
    """``v`` with the hair over a covered ear (``covered`` (V,) and two edge rings round it, fading; the shell's
    open boundary held) made a smooth sheet: Laplacian rounds, every fifth preceded by a push out, away from the
    head's vertical centre line, to ``cfg.side_gap_m`` beyond the last point of the skin (``skin_near``, unsigned)
    on that line within 3 cm (radially: the nearest skin normal flips from one face of the ear to the other)."""
    n = len(v)
    adj = _adjacency(f, n)
    deg = np.asarray(adj.sum(1)).reshape(-1).clip(1.0)
    w = covered.astype(np.float64)
    for _ in range(2):
        w = np.maximum(w, 0.5 * np.asarray(adj @ w).reshape(-1) / deg)
    edge = _edge_rings(f, n, 0) == 0
    w[edge] = 0.0
    moved = np.nonzero((w > 0) | (covered & edge))[0]  # the shell's edge over the ear is pushed out, not smoothed
    o = to_local(np.zeros((1, 3)))[0]
    axes = np.stack([to_local(np.eye(3)[k : k + 1])[0] - o for k in range(3)])  # world axes in the local frame
    out = v.copy()

    def push(points: np.ndarray) -> np.ndarray:
        radial = to_local(points) * [1.0, 0.0, 1.0]
        step = np.linalg.solve(axes.T, radial.T).T  # that direction in world axes
        step /= np.linalg.norm(step, axis=1, keepdims=True).clip(1e-12)
        last = np.full(len(points), -1.0)
        for k in range(31):  # 1 mm steps out to 3 cm: past the ear's outer face
            near = skin_near(points + k * 0.001 * step, cfg.side_gap_m) < cfg.side_gap_m
            last = np.where(near, k * 0.001, last)
        out_by = np.where(last >= 0, last + cfg.side_gap_m, 0.0)
        return points + out_by[:, None] * step

    for it in range(cfg.side_smooth_iters + 1):
        if it % 5 == 0:
            out[moved] = push(out[moved])
        if it < cfg.side_smooth_iters:
            out += 0.5 * w[:, None] * ((adj @ out) / deg[:, None] - out)
    return out


def _compact(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    used = np.unique(faces)
    remap = -np.ones(len(verts), np.int64)
    remap[used] = np.arange(len(used))
    return verts[used], remap[faces], used


def _areas(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    p = verts[faces]
    return 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)


def _edge_rings(faces: np.ndarray, n_verts: int, rings: int) -> np.ndarray:
    """(V,) how many edges each vertex is from the mesh's open boundary (0 on it; ``rings + 1`` beyond)."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    ring = np.full(n_verts, rings + 1)
    ring[np.unique(uniq[counts == 1])] = 0
    adj = sp.coo_matrix((np.ones(len(uniq)), (uniq[:, 0], uniq[:, 1])), shape=(n_verts, n_verts)).tocsr()
    adj = adj + adj.T
    for k in range(1, rings + 1):
        near = np.asarray(adj @ (ring == k - 1).astype(np.float64)).reshape(-1) > 0
        ring[near & (ring > k)] = k
    return ring


def disc_uv(points_local: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(N, 2) UVs in [0, 1] (v up) of points (N, 3) about their head centre (the origin; +y up): Lambert's azimuthal
    equal-area projection centred on the crown, one disc with no seam (u along +x, v along -z: the nape at the top
    of the map, the brow at the bottom), scaled to fill the unit square with a 1 % margin; wound like ``tris``
    seen from outside (mirrored in u if the other way)."""
    d = points_local / np.linalg.norm(points_local, axis=1, keepdims=True).clip(1e-12)
    r = np.sqrt(np.clip(2.0 * (1.0 - d[:, 1]), 0.0, None))  # 2 sin(theta / 2), theta from the crown
    h = np.hypot(d[:, 0], d[:, 2]).clip(1e-12)
    xy = np.stack([r * d[:, 0] / h, -r * d[:, 2] / h], 1)
    xy = 0.49 * xy / max(float(r.max()), 1e-9) + 0.5
    if len(tris) and np.median(uv_signed_area(xy, tris)) < 0:
        xy[:, 0] = 1.0 - xy[:, 0]
    return xy


def _boundary_loops_ordered(tris: np.ndarray) -> list[np.ndarray]:
    """Every open boundary loop of ``tris`` as vertex ids in order, longest first (empty if the mesh is closed)."""
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    key = np.sort(e, axis=1)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    directed = e[counts[inv.reshape(-1)] == 1]
    nxt = dict(zip(directed[:, 0].tolist(), directed[:, 1].tolist(), strict=False))
    loops: list[np.ndarray] = []
    seen: set[int] = set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(np.asarray(loop, np.int64))
    return sorted(loops, key=len, reverse=True)


def tutte_uv(points_local: np.ndarray, tris: np.ndarray) -> np.ndarray | None:
    """(N, 2) UVs in the unit disc (centre 0, v up) of one connected open shell: its longest boundary loop on the
    circle by arc length (starting where :func:`disc_uv` has it, so the nape stays up), every other vertex the
    mean of its neighbours (Tutte's embedding: no triangle folds over when the shell is a disc). None if closed."""
    loops = _boundary_loops_ordered(tris)
    if not loops or len(loops[0]) < 3:
        return None
    loop, holes = loops[0], loops[1:]
    n = len(points_local)
    seg = np.linalg.norm(points_local[np.roll(loop, -1)] - points_local[loop], axis=1)
    # by arc length, but no two boundary vertices closer on the circle than a quarter of the mean step: a tiny
    # boundary edge would make its triangle's UV area vanish once stored as float32
    seg = seg + 0.25 * seg.mean()
    start = np.arctan2(*(disc_uv(points_local, tris)[loop[0]] - 0.5)[::-1])
    ang = start + 2.0 * np.pi * np.concatenate([[0.0], np.cumsum(seg)[:-1]]) / seg.sum()
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    # every other boundary loop (a hole in the shell) is closed for the solve by a fan round a virtual vertex, so
    # the shell is a disc, as Tutte's theorem needs (a free hole's vertices would fold triangles over)
    fans = [np.stack([h, np.full(len(h), n + j)], 1) for j, h in enumerate(holes)]
    e = np.concatenate([e, *fans]) if fans else e
    n_all = n + len(holes)
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_all, n_all)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64)
    fixed = np.zeros(n_all, bool)
    fixed[loop] = True
    uv = np.zeros((n_all, 2))
    uv[loop] = np.stack([np.cos(ang), np.sin(ang)], 1)
    free = np.nonzero(~fixed)[0]
    lap = sp.diags(np.asarray(adj.sum(1)).reshape(-1)) - adj
    a = lap[free][:, free].tocsc()
    rhs = -(lap[free][:, np.nonzero(fixed)[0]] @ uv[fixed])
    import scipy.sparse.linalg as spla

    solve = spla.factorized(a)
    uv[free] = np.stack([solve(rhs[:, 0]), solve(rhs[:, 1])], 1)
    uv = uv[:n]
    pinned = np.zeros(n, bool)
    pinned[loop] = True
    if np.median(uv_signed_area(uv, tris)) < 0:  # wound the other way: mirror before untangling what is left
        uv[:, 0] = -uv[:, 0]
    return untangle_uv(uv, tris, pinned)  # a handle (not a disc) can still fold a few triangles


def shell_uv(points_local: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(N, 2) UVs in [0, 1] (v up) of the shell: each connected piece a disc (:func:`tutte_uv`; a closed piece
    :func:`disc_uv`'s projection), the pieces side by side in a square grid (one piece fills the square, 1 %
    margin), wound like ``tris`` seen from outside (mirrored in u if the other way)."""
    lab = _components(tris, len(points_local)) if len(tris) else np.zeros(0, np.int64)
    pieces = np.unique(lab)
    cols = int(np.ceil(np.sqrt(max(len(pieces), 1))))
    uv = np.zeros((len(points_local), 2))
    for k, c in enumerate(pieces):
        sel = tris[lab == c]
        v, t, used = _compact(points_local, sel)
        disc = tutte_uv(v, t)
        disc = 2.0 * disc_uv(v, t) - 1.0 if disc is None else disc
        if np.median(uv_signed_area(disc, t)) < 0:
            disc[:, 0] = -disc[:, 0]
        cell = np.array([k % cols, cols - 1 - k // cols], np.float64)
        uv[used] = (cell + 0.5 + 0.49 * disc) / cols
    return uv


def untangle_uv(uv: np.ndarray, tris: np.ndarray, pinned: np.ndarray, iters: int = 200) -> np.ndarray:
    """``uv`` (N, 2) with the triangles that wind the wrong way (or not at all) relaxed away: the vertices of each
    such triangle and their neighbours (not ``pinned`` (N,) bool, the open boundary) move to the mean of their
    neighbours, until none is left or ``iters`` rounds."""
    adj = _adjacency(tris, len(uv))
    deg = np.asarray(adj.sum(1)).reshape(-1).clip(1.0)
    uv = uv.copy()
    for _ in range(iters):
        bad = uv_signed_area(uv, tris) <= 1e-12
        if not bad.any():
            break
        sel = np.zeros(len(uv), bool)
        sel[tris[bad].reshape(-1)] = True
        sel |= np.asarray(adj @ sel.astype(np.float64)).reshape(-1) > 0
        sel &= ~pinned
        uv[sel] = (adj @ uv)[sel] / deg[sel, None]
    return uv


def hair_shell(
    verts: np.ndarray,
    faces: np.ndarray,
    skin_distance: Callable,
    in_region: Callable,
    to_local: Callable,
    cfg: HairConfig = HairConfig(),
    is_hair_colour: Callable | None = None,
    centre_t: np.ndarray | None = None,
    skin_near: Callable | None = None,
    skin_inside: Callable | None = None,
) -> tuple[HairShell | None, str]:
    """Cut the hair from the field's surface ``verts`` (V, 3) / ``faces`` (F, 3) (world metres, wound outward):
    ``skin_distance`` points -> (signed distance to the skin (N,), positive outside; the skin's unit normal there
    (N, 3)), ``in_region`` template-frame points (N, 3) -> (N,) bool (where hair may be), ``to_local`` world
    points -> the template's frame centred on the head (origin at the skull's centre, +y up; for the UVs and the
    region); ``is_hair_colour`` world points -> (N,) bool (the field's colour there is the hair's: with it the
    sides and covered ears join the hair, see :class:`HairConfig`), ``centre_t`` the local frame's origin in the
    template's frame (for the sides' and ears' boxes), ``skin_near`` points -> unsigned distance to the skin
    (for the hair over a covered ear; without it no ear is covered), ``skin_inside`` points -> (N,) bool (inside
    the skin: the sign of the reported gaps where the nearest plane's sign is not to be trusted). Returns the
    shell, or None and why there is none."""
    import trimesh

    if len(faces) == 0:
        return None, "the field has no surface"
    mesh = trimesh.Trimesh(verts, faces, process=True)
    trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=-0.53, iterations=cfg.smooth_iters)
    v, f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    dist, _ = skin_distance(v)
    local = to_local(v)
    ok = (dist > cfg.out_m) & in_region(local)
    covered = np.zeros(len(v), bool)
    ears: dict = {}
    hair_src = np.zeros((0, 3))
    if cfg.side_out_m > 0 and is_hair_colour is not None and skin_near is not None:
        tpl = local + (np.zeros(3) if centre_t is None else centre_t)
        ok, covered, ears = _with_sides(v, f, tpl, dist, ok, is_hair_colour, cfg)
        src = v[ok & ~covered]
        hair_src = src[is_hair_colour(src)]  # where the hair over an ear takes its colour (the field's is the ear's)
    f = f[ok[f].all(1)]
    if len(f) == 0:
        return None, f"no field surface more than {1000 * cfg.out_m:.1f} mm outside the skull"
    v, f, used = _compact(v, f)
    covered = covered[used]
    lab = _components(f, len(v))
    area = np.bincount(lab, weights=_areas(v, f))
    keep = np.nonzero(area >= cfg.min_component_m2)[0]
    total = float(area[keep].sum())
    if total < cfg.min_area_m2:
        return None, (
            f"{1e4 * float(area.sum()):.1f} cm^2 of field surface more than {1000 * cfg.out_m:.1f} mm outside the "
            f"skull ({1e4 * total:.1f} in pieces over {1e4 * cfg.min_component_m2:.0f} cm^2): under "
            f"{1e4 * cfg.min_area_m2:.0f} cm^2, a bald head"
        )
    v, f, used = _compact(v, f[np.isin(lab, keep)])
    covered = covered[used]
    if covered.any():
        v = _smooth_over_ears(v, f, covered, skin_near, to_local, cfg)
    if len(f) > cfg.max_triangles:
        import fast_simplification

        v, f = fast_simplification.simplify(v.astype(np.float32), f.astype(np.int32), 1.0 - cfg.max_triangles / len(f))
        v, f = np.asarray(v, np.float64), np.asarray(f, np.int64)
        f = f[_areas(v, f) > 1e-12]
        v, f, _ = _compact(v, f)
        lab = _components(f, len(v))
        area = np.bincount(lab, weights=_areas(v, f))
        v, f, _ = _compact(v, f[np.isin(lab, np.nonzero(area >= cfg.min_component_m2)[0])])
    local = to_local(v)
    if (np.cross(local[f[:, 1]] - local[f[:, 0]], local[f[:, 2]] - local[f[:, 0]]) * local[f].mean(1)).sum() < 0:
        f = f[:, ::-1].copy()  # outward, away from the head's centre
    dist, _ = skin_distance(v)
    ring = _edge_rings(f, len(v), cfg.tuck_rings)
    fade = np.clip(ring / (cfg.tuck_rings + 1.0), 0.0, 1.0)  # 0 on the boundary, 1 from tuck_rings + 1 in
    sample = v.copy()
    if ears:  # over a covered ear the hair's edge hangs free (tucked, it would dive into the ear's folds)
        over = _over_covered_ear(local + (np.zeros(3) if centre_t is None else centre_t), ears, cfg)
        fade = np.where(over, 1.0, fade)
        side = _side_box(local + (np.zeros(3) if centre_t is None else centre_t), cfg) & ~over
        if side.any():  # a side vertex the gap filling or the smoothing took in keeps the field's colour if hair
            side[np.nonzero(side)[0]] = ~is_hair_colour(v[side])
        take = over | side
        if take.any() and len(hair_src):  # else its colour is the nearest hair's, not the field's ear or skin
            sample[take] = hair_src[cKDTree(hair_src).query(v[take])[1]]  # on the field's surface, as any sample
    target = -cfg.tuck_m + fade * (dist + cfg.tuck_m)
    pos = v.copy()
    for _ in range(3):  # along the nearest skin normal, again from where it landed (the nearest face may change)
        now, skin_n = skin_distance(pos)
        pos += np.where(fade < 1.0, target - now, 0.0)[:, None] * skin_n
    after, _ = skin_distance(pos)
    if skin_inside is not None and skin_near is not None and (after < 0).any():
        behind = np.nonzero(after < 0)[0]  # behind the nearest plane: inside, or beside a thin part (an ear)
        after[behind] = np.where(skin_inside(pos[behind]), after[behind], skin_near(pos[behind]))
    uv = shell_uv(local, f)
    signed = uv_signed_area(uv, f)
    flat = signed <= 1e-10
    if flat.any():  # a flap joined to the rest by one vertex collapses to a point of the disc: it goes
        _, f, used = _compact(pos, f[~flat])
        pos, sample, uv, dist, after = pos[used], sample[used], uv[used], dist[used], after[used]
        signed = signed[~flat]
    loops = boundary_loops(f, pos)
    info = {
        "triangles": int(len(f)),
        "vertices": int(len(pos)),
        "components": int(len(np.unique(_components(f, len(pos))))),
        "area_cm2": round(1e4 * float(_areas(pos, f).sum()), 1),
        "max_outside_skull_mm": round(1000 * float(dist.max()), 2),
        "median_outside_skull_mm": round(1000 * float(np.median(dist)), 2),
        "min_to_skin_mm": round(1000 * float(after.min()), 2),
        "boundary_loops": len(loops),
        "boundary_length_cm": round(float(sum(lp["length_cm"] for lp in loops)), 1),
        "flipped_uv_triangles": int((signed <= 0).sum()),
        "dropped_flat_uv_triangles": int(flat.sum()),
        "ears_under_hair": ears,
        "out_mm": 1000 * cfg.out_m,
        "tuck_mm": 1000 * cfg.tuck_m,
    }
    return HairShell(pos, vertex_normals(pos, f), uv, f, sample, info), ""


def skull_region(cfg: HairConfig) -> Callable:
    """template-frame points (N, 3) -> (N,) bool: above the nape's line, above the brows in front of the ear plane,
    not the ears."""

    def fn(local_template: np.ndarray) -> np.ndarray:
        x, y, z = np.asarray(local_template, np.float64).T
        return (y >= cfg.nape_m) & ((z < 0.0) | (y >= cfg.brow_m)) & ~_ear_box(local_template, cfg)

    return fn


def hair_from_field(
    field_sdf: Callable,
    surface_level: float,
    canonical_per_m: float,
    skin_verts: np.ndarray,
    skin_tris: np.ndarray,
    similarity: tuple[float, np.ndarray, np.ndarray],
    cfg: HairConfig = HairConfig(),
    is_hair_colour: Callable | None = None,
) -> tuple[HairShell | None, str]:
    """The hair of a bundle: ``field_sdf`` (torch canonical points (N, 3) -> (N,), the field's ``sdf_at``), its
    ``surface_level``, ``canonical_per_m`` (the bundle's scale), the asset's neutral skin ``skin_verts`` (S, 3)
    world / ``skin_tris`` (wound outward) and the template -> world ``similarity`` (s, R, t). The field is sampled
    over the skin's skull region (above the nape) grown by ``margin_m``."""
    s, rot, t = similarity
    region = skull_region(cfg)

    def to_template(p: np.ndarray) -> np.ndarray:
        return (np.asarray(p, np.float64) - t) @ rot / s

    skull = skin_verts[to_template(skin_verts)[:, 1] >= cfg.nape_m]
    centre_t = to_template(skull).mean(0) * [0.0, 1.0, 1.0]  # on the mid-plane

    def to_local(p: np.ndarray) -> np.ndarray:
        return to_template(p) - centre_t

    def in_region(local: np.ndarray) -> np.ndarray:
        return region(local + centre_t)

    lo, hi = skull.min(0) - cfg.margin_m, skull.max(0) + cfg.margin_m
    res = np.clip(np.ceil((hi - lo) / cfg.voxel_m).astype(int) + 1, 16, 256)
    n = int(res.max())
    vals = sample_grid(field_sdf, lo * canonical_per_m, hi * canonical_per_m, n)
    verts, faces = marching_cubes(vals, surface_level, lo, hi)
    return hair_shell(
        verts,
        faces,
        surface_distance_fn(skin_verts, skin_tris),
        in_region,
        to_local,
        cfg,
        is_hair_colour,
        centre_t,
        surface_near_fn(skin_verts, skin_tris),
        lambda p: winding_numbers(p, skin_verts, skin_tris) > 0.5,
    )
