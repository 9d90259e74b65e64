"""Make the fitted template's skin look like the person at the front: each face vertex moves along its normal to
the field's surface where that is found within a small band, the displacement is smoothed over the template's
edge graph, and the skull, ears and neck keep the template.

Pure functions of arrays and an ``sdf_fn`` (world points (N, 3) -> signed distance (N,) in metres, negative
inside); engine.asset.build makes that callable from a bundle's field."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from engine.asset.measure import intersecting_pairs
from engine.extract.raster import rasterize

BAND_M = 0.015
"""How far along the normal (either way) the field's surface is looked for."""
STEP_M = 0.0005
"""Sampling step of that search (the crossing is then interpolated linearly)."""
HAIR_OUT_M = 0.003
"""Above the brows (template y > BROW_Y_M) the skin may move out by at most this much: more is hair."""
BROW_Y_M = 0.03
SMOOTH = 4.0
"""Weight of the edge term (|d_i - d_j|^2 per template edge) against the data term (1 per snapped vertex)."""
MAX_UNTANGLE = 6
UNTANGLE_RINGS = 2
HIDDEN_TOL_M = 0.003
"""A vertex more than this behind the template's own front surface (seen along -Z) is inside a cavity."""


@dataclass(frozen=True)
class Snap:
    """``displacement`` (V, 3) metres to add to the skin's vertices; ``target`` (V,) the offset along the normal
    found (nan where none), ``weight`` (V,) how much each vertex's target counted (0 = the template is kept or the
    vertex follows its neighbours), ``pinned`` (V,) where the template was kept because the snapped skin
    crossed itself there."""

    displacement: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    pinned: np.ndarray


def smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi`` (``hi < lo`` reverses it), smooth between."""
    t = np.clip((np.asarray(x, np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def face_weight(template_verts: np.ndarray) -> np.ndarray:
    """(V,) 1 on the face in front of the ears, below the hairline and above the neck; 0 on the skull, ears and
    neck. ``template_verts`` in the prior's own neutral frame (origin between the ears at eye height)."""
    x, y, z = np.asarray(template_verts, np.float64).T
    front = smoothstep(z, 0.02, 0.045)
    below_hair = smoothstep(y, 0.07, 0.05)
    above_neck = smoothstep(y, -0.13, -0.11)
    return front * below_hair * above_neck


def front_visible(verts: np.ndarray, tris: np.ndarray, pixel_m: float = 0.0005) -> np.ndarray:
    """(V,) True where a vertex is on the surface seen from the front (orthographic along -Z): False inside the
    eye sockets, the mouth and the nostrils, and under the jaw."""
    v = np.asarray(verts, np.float64)
    lo = v[:, :2].min(0) - 2 * pixel_m
    xy = (v[:, :2] - lo) / pixel_m
    xy[:, 1] = xy[:, 1].max() - xy[:, 1]
    w, h = int(np.ceil(xy[:, 0].max())) + 2, int(np.ceil(xy[:, 1].max())) + 2
    fid, bary = rasterize(xy, -v[:, 2], tris, w, h)
    zbuf = np.full((h, w), -np.inf)
    hit = fid >= 0
    zbuf[hit] = (bary[hit] * v[tris[fid[hit]], 2]).sum(1)
    # the front at a vertex: the highest z in its pixel and the 8 around (robust at steep sides)
    pad = np.pad(zbuf, 1, constant_values=-np.inf)
    near = np.max([pad[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)
    px = np.clip(xy.astype(np.int64), 0, [w - 1, h - 1])
    return v[:, 2] >= near[px[:, 1], px[:, 0]] - HIDDEN_TOL_M


def find_surface(points: np.ndarray, normals: np.ndarray, sdf_fn: Callable, band_m: float = BAND_M) -> np.ndarray:
    """(N,) signed offset t along each unit normal to the nearest inside-to-outside crossing of ``sdf_fn`` within
    ``[-band_m, band_m]``; nan where there is none."""
    ts = np.arange(-band_m, band_m + 0.5 * STEP_M, STEP_M)
    pts = points[:, None, :] + ts[None, :, None] * normals[:, None, :]
    d = np.asarray(sdf_fn(pts.reshape(-1, 3)), np.float64).reshape(len(points), len(ts))
    cross = (d[:, :-1] < 0.0) & (d[:, 1:] >= 0.0)
    frac = d[:, :-1] / np.where(cross, d[:, :-1] - d[:, 1:], 1.0)
    t_cross = np.where(cross, ts[:-1] + frac * STEP_M, np.inf)
    best = np.argmin(np.abs(t_cross), axis=1)
    t = t_cross[np.arange(len(points)), best]
    return np.where(np.isfinite(t), t, np.nan)


def graph_laplacian(n: int, edges: np.ndarray) -> sp.csr_matrix:
    """(n, n) combinatorial Laplacian L = D - A of an undirected edge list (E, 2)."""
    i, j = edges[:, 0], edges[:, 1]
    a = sp.coo_matrix((np.ones(len(edges)), (i, j)), shape=(n, n))
    a = (a + a.T).tocsr()
    return (sp.diags(np.asarray(a.sum(1)).ravel()) - a).tocsr()


def smooth_displacement(
    target: np.ndarray, weight: np.ndarray, anchor: np.ndarray, edges: np.ndarray, smooth: float = SMOOTH
) -> np.ndarray:
    """(V, C) minimiser of sum_i weight_i |d_i - target_i|^2 + anchor_i |d_i|^2 + smooth sum_edges |d_i - d_j|^2.
    ``target`` (V, C) (ignored where weight is 0)."""
    n = len(target)
    lhs = sp.diags(weight + anchor + 1e-9) + smooth * graph_laplacian(n, edges)
    rhs = np.nan_to_num(target) * weight[:, None]
    solve = spla.factorized(lhs.tocsc())
    return np.stack([solve(rhs[:, c]) for c in range(rhs.shape[1])], 1)


def snap_skin(
    verts: np.ndarray,
    normals: np.ndarray,
    template_verts: np.ndarray,
    tris: np.ndarray,
    edges: np.ndarray,
    sdf_fn: Callable,
) -> Snap:
    """Where the face's skin (``verts`` (V, 3) world, unit ``normals``) should move to meet the field's surface.
    ``template_verts`` (V, 3) the same vertices on the neutral template (decides the face region and the
    cavities), ``tris`` and ``edges`` the skin's template topology."""
    region = face_weight(template_verts)
    visible = front_visible(template_verts, tris)
    t = np.full(len(verts), np.nan)
    look = (region > 0) & visible
    t[look] = find_surface(verts[look], normals[look], sdf_fn)
    hairy = template_verts[:, 1] > BROW_Y_M
    t[hairy & (t > HAIR_OUT_M)] = np.nan  # the field's surface out there is hair, not skin
    found = np.isfinite(t)
    weight = np.where(found & visible, region, 0.0)
    # Cavity vertices (not visible) are free: they follow their neighbours. The rest are held by the template
    # as the face region fades out.
    anchor = np.where(visible, 1.0 - region, 0.0) + np.where(visible & ~found, region, 0.0) * 0.1
    target = np.nan_to_num(t)[:, None] * normals
    disp = smooth_displacement(target, weight, anchor, edges)
    pinned = np.zeros(len(verts), bool)
    for _ in range(MAX_UNTANGLE):
        # Where the snapped skin crosses itself (lips that meet, a lid over its fold), the template is kept
        # there and two rings around, and the rest solved again.
        pairs = intersecting_pairs(verts + disp, tris)
        if len(pairs) == 0:
            break
        bad = np.zeros(len(verts), bool)
        bad[np.unique(tris[pairs.reshape(-1)])] = True
        for _ in range(UNTANGLE_RINGS):
            bad[edges[bad[edges[:, 0]], 1]] = True
            bad[edges[bad[edges[:, 1]], 0]] = True
        pinned |= bad
        weight = np.where(pinned, 0.0, weight)
        anchor = np.where(pinned, 1.0, anchor)
        disp = smooth_displacement(target, weight, anchor, edges)
    return Snap(disp, t, weight, pinned)
