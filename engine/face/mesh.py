"""mediapipe's 468-vertex face mesh as triangles: the connection tables read from the wheel and the triangles
recovered from its tesselation edges. Used by the head proxy (the face's z-buffered depth) and the rig."""

from __future__ import annotations

import importlib.util
import itertools
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.errors import BackendUnavailable

N_MESH = 468


def _connections_module():
    """mediapipe's face-mesh connection tables, loaded from its source file without importing mediapipe (whose
    package import costs seconds)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("mediapipe is not installed", "pip install mediapipe==0.10.14")
    path = Path(list(spec.submodule_search_locations)[0]) / "python" / "solutions" / "face_mesh_connections.py"
    mod_spec = importlib.util.spec_from_file_location("_likeness_face_mesh_connections", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


@lru_cache(maxsize=1)
def connections() -> dict[str, frozenset]:
    """mediapipe's ``FACEMESH_*`` edge sets by name."""
    mod = _connections_module()
    return {k: getattr(mod, k) for k in dir(mod) if k.startswith("FACEMESH_")}


@lru_cache(maxsize=1)
def mesh_triangles() -> np.ndarray:
    """(852, 3) int64 triangles of the 468-vertex mesh, unoriented: the 3-cliques of the tesselation's edge
    graph, less the two spurious cliques (nostril wings) whose edges would otherwise border three triangles."""
    edges = {tuple(sorted(e)) for e in connections()["FACEMESH_TESSELATION"]}
    adj = defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    tris = set()
    for a, b in edges:
        for c in adj[a] & adj[b]:
            tris.add(tuple(sorted((a, b, c))))
    uses = defaultdict(list)
    for t in tris:
        for e in itertools.combinations(t, 2):
            uses[e].append(t)
    # A clique all of whose edges are shared with two other triangles is a hole in the middle of a fan, not a face.
    spurious = {t for t in tris if all(len(uses[e]) == 3 for e in itertools.combinations(t, 2))}
    return np.array(sorted(tris - spurious), dtype=np.int64)


def zbuffer_depth(uv: np.ndarray, z: np.ndarray, triangles: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest depth per pixel of a triangle mesh seen from the camera: ``uv`` (N, 2) vertex positions in pixels
    (pixel centres at +0.5), ``z`` (N,) their depths, ``triangles`` (F, 3). Returns (H, W) with NaN where no
    triangle covers the pixel centre. Depth is interpolated linearly in screen space."""
    h, w = shape
    out = np.full((h, w), np.inf)
    a, b, c = uv[triangles[:, 0]], uv[triangles[:, 1]], uv[triangles[:, 2]]
    za, zb, zc = z[triangles[:, 0]], z[triangles[:, 1]], z[triangles[:, 2]]
    lo = np.floor(np.minimum(np.minimum(a, b), c) - 0.5).astype(int)
    hi = np.ceil(np.maximum(np.maximum(a, b), c) - 0.5).astype(int)
    for i in range(len(triangles)):
        x0, y0 = max(lo[i, 0], 0), max(lo[i, 1], 0)
        x1, y1 = min(hi[i, 0], w - 1), min(hi[i, 1], h - 1)
        if x1 < x0 or y1 < y0:
            continue
        py, px = np.mgrid[y0 : y1 + 1, x0 : x1 + 1] + 0.5
        e0, e1 = b[i] - a[i], c[i] - a[i]
        det = e0[0] * e1[1] - e0[1] * e1[0]
        if abs(det) < 1e-12:
            continue
        dx, dy = px - a[i, 0], py - a[i, 1]
        s = (dx * e1[1] - dy * e1[0]) / det
        t = (e0[0] * dy - e0[1] * dx) / det
        inside = (s >= -1e-9) & (t >= -1e-9) & (s + t <= 1 + 1e-9)
        if not inside.any():
            continue
        depth = za[i] + s * (zb[i] - za[i]) + t * (zc[i] - za[i])
        win = out[y0 : y1 + 1, x0 : x1 + 1]
        np.minimum(win, np.where(inside, depth, np.inf), out=win)
    return np.where(np.isfinite(out), out, np.nan)
