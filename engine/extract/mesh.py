"""Marching cubes on a density/SDF callable, then clean-up: largest component, Taubin smoothing, decimation."""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components

log = logging.getLogger("likeness")


def sample_grid(fn, lo: np.ndarray, hi: np.ndarray, res: int, chunk: int = 2_000_000) -> np.ndarray:
    """Evaluate ``fn`` (torch (N, 3) -> (N,)) on a res^3 lattice spanning [lo, hi]; returns array [x, y, z]."""
    axes = [torch.linspace(float(lo[i]), float(hi[i]), res) for i in range(3)]
    out = np.empty(res**3, dtype=np.float32)
    gx, gy, gz = torch.meshgrid(*axes, indexing="ij")
    pts = torch.stack([gx, gy, gz], -1).reshape(-1, 3)
    with torch.no_grad():
        for i in range(0, len(pts), chunk):
            out[i : i + chunk] = fn(pts[i : i + chunk]).cpu().numpy()
    return out.reshape(res, res, res)


def marching_cubes(values: np.ndarray, level: float, lo: np.ndarray, hi: np.ndarray):
    """Iso-surface of ``values`` [x, y, z] at ``level`` (inside = below level), vertices in [lo, hi] space;
    triangles wound counter-clockwise seen from outside."""
    import mcubes

    verts, faces = mcubes.marching_cubes(-values, -level)
    res = np.array(values.shape, dtype=np.float64) - 1.0
    verts = lo + verts * (hi - lo) / res
    return verts, faces.astype(np.int64)


def largest_component(verts: np.ndarray, faces: np.ndarray):
    """Keep the connected piece with the most faces."""
    if len(faces) == 0:
        return verts, faces
    n = len(verts)
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    adj = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(adj, directed=False)
    face_lab = labels[faces[:, 0]]
    keep_lab = np.bincount(face_lab).argmax()
    f = faces[face_lab == keep_lab]
    used = np.unique(f)
    remap = -np.ones(n, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return verts[used], remap[f]


def clean_mesh(verts: np.ndarray, faces: np.ndarray, max_faces: int, smooth_iters: int = 8):
    """Largest component, Taubin smoothing (no shrinkage), decimation to ``max_faces``."""
    import trimesh

    verts, faces = largest_component(verts, faces)
    mesh = trimesh.Trimesh(verts, faces, process=True)
    trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=-0.53, iterations=smooth_iters)
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    if len(f) > max_faces:
        import fast_simplification

        v, f = fast_simplification.simplify(v.astype(np.float32), f.astype(np.int32), 1.0 - max_faces / len(f))
        v, f = largest_component(np.asarray(v, np.float64), np.asarray(f, np.int64))
    # Drop zero-area triangles the decimator can leave behind.
    area2 = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    f = f[area2 > 1e-14]
    return largest_component(v, f)


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3)."""
    fn = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    # A vertex whose faces cancel out (degenerate fans) points away from the centroid instead of nowhere.
    radial = verts - verts.mean(0)
    vn = np.where(norm > 1e-12, vn, radial)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    vn = np.where(norm > 1e-12, vn, np.array([0.0, 1.0, 0.0]))
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
