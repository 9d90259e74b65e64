"""An artist-friendly head unwrap: spherical around the head centre, face in the middle of the map, the seam
straight down the back of the head. Vertices on the seam are split so no triangle wraps around.

Below ``body_below`` (the chin's height) a second chart, cylindrical about the vertical axis through the centre:
seen from the head's centre the underside of the chin, the neck and the shoulders lie on the same rays, so one
spherical chart folds them onto each other (12-20 % of a bust's area flipped in UV, the chest baked with the
neck's skin); around a vertical axis they do not. The head chart takes the map's top, the body chart its bottom,
each in proportion to its area, and the vertices on the cut between them are split as on the back seam. Where
the two charts fold more of the surface than the one (long hair hanging below the chin folds in the cylinder),
the one spherical chart is kept. Measured (share of the area mirrored in UV, one chart -> the better of the two):
draft demo 0.120 -> 0.080, template-a 0.196 -> 0.153, interfaces_057 (long hair) 0.092 kept."""

from __future__ import annotations

import numpy as np

BODY_SHARE = (0.15, 0.5)
"""The body chart's share of the map's height is its share of the surface's area, within these bounds."""
CHART_GAP = 0.01
"""Empty map height between the two charts (texels of one chart do not bleed into the other)."""


def spherical_unwrap(verts: np.ndarray, faces: np.ndarray, centre=(0.0, 0.0, 0.0), body_below: float | None = None):
    """UVs for a world-frame head mesh (+Y up, face toward +Z). Returns new ``verts`` (V', 3), ``faces`` and
    ``uv`` (V', 2) in [0, 1] with OpenGL's origin (bottom-left), and ``source`` (V',) the original index.
    ``body_below``: the height (world y) below which triangles go to the cylindrical body chart; None: one
    spherical chart."""
    verts, faces = np.asarray(verts), np.asarray(faces)
    body = np.zeros(len(faces), bool)
    if body_below is not None:
        body = verts[faces][:, :, 1].mean(1) < body_below
    one = _unwrap_chart(verts, faces, centre, cylinder=False)
    if not body.any() or body.all():
        return one
    # Split the vertices the two charts share, then unwrap each chart on its own.
    v_h, f_h, uv_h, src_h = _unwrap_chart(verts, faces[~body], centre, cylinder=False)
    v_b, f_b, uv_b, src_b = _unwrap_chart(verts, faces[body], centre, cylinder=True)
    area = _areas(verts, faces)
    share = float(np.clip(area[body].sum() / max(area.sum(), 1e-12), *BODY_SHARE))
    uv_b = uv_b * [1.0, share - 0.5 * CHART_GAP]
    uv_h = uv_h * [1.0, 1.0 - share - 0.5 * CHART_GAP] + [0.0, share + 0.5 * CHART_GAP]
    all_faces = np.empty_like(faces)  # the triangles in their original order
    all_faces[~body], all_faces[body] = f_h, f_b + len(v_h)
    two = (np.concatenate([v_h, v_b]), all_faces, np.concatenate([uv_h, uv_b]), np.concatenate([src_h, src_b]))
    # Long hair hanging below the chin folds in the cylinder as the neck does in the sphere: keep the better.
    return two if folded_area(*two[:3]) < folded_area(*one[:3]) else one


def folded_area(verts: np.ndarray, faces: np.ndarray, uv: np.ndarray) -> float:
    """The share of the surface's area whose triangles are mirrored in UV (against the layout's majority)."""
    a = uv[faces]
    s = (a[:, 1, 0] - a[:, 0, 0]) * (a[:, 2, 1] - a[:, 0, 1]) - (a[:, 2, 0] - a[:, 0, 0]) * (a[:, 1, 1] - a[:, 0, 1])
    area = _areas(verts, faces)
    return float(area[np.sign(s) != np.sign(np.median(s))].sum() / max(area.sum(), 1e-30))


def _areas(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    e1, e2 = verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]]
    return 0.5 * np.linalg.norm(np.cross(e1, e2), axis=1)


def _unwrap_chart(verts: np.ndarray, faces: np.ndarray, centre, cylinder: bool):
    """One chart of only the vertices ``faces`` use: spherical about ``centre`` (v from the polar angle) or
    cylindrical about the vertical axis through it (v from the height, scaled as the mean radius scales u)."""
    used0 = np.unique(faces)
    remap0 = np.full(len(verts), -1, np.int64)
    remap0[used0] = np.arange(len(used0))
    orig = used0
    verts, faces = verts[used0], remap0[faces]
    p = verts - np.asarray(centre)
    phi = np.arctan2(p[:, 0], p[:, 2])  # 0 at the face, +-pi at the back
    if cylinder:
        theta = -p[:, 1]  # height, top first; normalised below
    else:
        theta = np.arccos(np.clip(p[:, 1] / np.maximum(np.linalg.norm(p, axis=1), 1e-12), -1.0, 1.0))
    fphi = phi[faces]
    wraps = (fphi.max(1) - fphi.min(1)) > np.pi
    source = np.arange(len(verts))
    new_phi = phi.copy()
    faces = faces.copy()
    if wraps.any():
        # Duplicate the negative-phi corners of wrapping faces and move them past +pi.
        wf = np.nonzero(wraps)[0]
        corners = faces[wf]
        neg = phi[corners] < 0
        dup_src = np.unique(corners[neg])
        dup_idx = len(verts) + np.arange(len(dup_src))
        lookup = dict(zip(dup_src.tolist(), dup_idx.tolist(), strict=True))
        for k in range(3):
            col = corners[:, k]
            m = neg[:, k]
            col[m] = [lookup[c] for c in col[m].tolist()]
        faces[wf] = corners
        source = np.concatenate([source, dup_src])
        new_phi = np.concatenate([phi, phi[dup_src] + 2.0 * np.pi])
        theta = np.concatenate([theta, theta[dup_src]])
        # a corner whose every face wraps now has no face left: drop it (the OBJ would carry a loose vertex,
        # and readers that skip unreferenced vertices would shift every index after it)
        used = np.zeros(len(source), bool)
        used[faces.ravel()] = True
        if not used.all():
            remap = np.cumsum(used) - 1
            faces, source, new_phi, theta = remap[faces], source[used], new_phi[used], theta[used]
    u = (new_phi + np.pi) / (2.0 * np.pi)
    # Keep the face at u = 0.5 and fit the split seam corners (u slightly > 1) into the map.
    u = 0.5 + (u - 0.5) / max(1.0, 2.0 * float(np.abs(u - 0.5).max()))
    if cylinder:
        lo, hi = float(theta.min()), float(theta.max())
        v = 1.0 - (theta - lo) / max(hi - lo, 1e-12)
    else:
        v = 1.0 - theta / np.pi
    return verts[source], faces, np.stack([u, v], 1), orig[source]
