"""Bake a colour function into a UV texture, and render mesh maps (silhouette, depth, normals) from a camera."""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from engine.conventions import Intrinsics, project_points
from engine.extract.mesh import vertex_normals
from engine.extract.raster import rasterize


def bake_texture(verts: np.ndarray, faces: np.ndarray, uv: np.ndarray, colour_fn, size: int) -> np.ndarray:
    """(size, size, 3) uint8 texture: ``colour_fn`` (N, 3) world points -> (N, 3) in [0, 1] evaluated at each
    covered texel's surface point; empty texels take the nearest covered texel's colour (no dark seams)."""
    xy = np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], 1)
    fid, bary = rasterize(xy, np.zeros(len(uv)), faces, size, size)
    covered = fid >= 0
    tex = np.zeros((size, size, 3), dtype=np.float32)
    f = fid[covered]
    pts = (bary[covered][:, :, None] * verts[faces[f]]).sum(1)
    tex[covered] = colour_fn(pts)
    if covered.any() and not covered.all():
        _, (iy, ix) = ndi.distance_transform_edt(~covered, return_indices=True)
        tex = tex[iy, ix]
    return (np.clip(tex, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def mesh_maps(verts: np.ndarray, faces: np.ndarray, cam2world_gl: np.ndarray, intr: Intrinsics) -> dict:
    """Seen from a camera: ``mask`` (H, W) bool, ``depth_m`` z-depth (0 where empty) and ``normal_world``
    (H, W, 3) unit normals in the world frame (0 where empty)."""
    xy, z = project_points(verts, cam2world_gl, intr)
    front = z > 1e-6
    fok = front[faces].all(1)
    fid, bary = rasterize(xy, z, faces[fok], intr.width, intr.height)
    mask = fid >= 0
    fsel = faces[fok][fid[mask]]
    b = bary[mask]
    depth = np.zeros((intr.height, intr.width), np.float32)
    depth[mask] = (b * z[fsel]).sum(1)
    vn = vertex_normals(verts, faces)
    nrm = np.zeros((intr.height, intr.width, 3), np.float32)
    n = (b[:, :, None] * vn[fsel]).sum(1)
    nrm[mask] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return {"mask": mask, "depth_m": depth, "normal_world": nrm}
