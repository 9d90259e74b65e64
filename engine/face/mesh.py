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

# mediapipe index -> its mirror image (x -> -x); an involution. Derived once by optimal assignment of a frontal
# face's mirrored landmarks and checked against the tesselation (it maps all but 6 of 1322 edges onto edges; the
# 6 are diagonal flips in mediapipe's own mesh). Iris points pair inner<->inner, outer<->outer.
MIRROR_LANDMARK = np.array([
    0, 1, 2, 248, 4, 5, 6, 249, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 250, 251, 252, 253, 254, 255, 256, 257,
    258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271, 272, 273, 274, 275, 276, 277, 278, 279, 280,
    281, 282, 283, 284, 285, 286, 287, 288, 289, 290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303,
    304, 305, 306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 322, 323, 94, 324, 325,
    326, 327, 328, 329, 330, 331, 332, 333, 334, 335, 336, 337, 338, 339, 340, 341, 342, 343, 344, 345, 346, 347, 348,
    349, 350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 360, 361, 362, 363, 364, 365, 366, 367, 368, 369, 370, 371,
    372, 373, 374, 375, 376, 377, 378, 379, 151, 152, 380, 381, 382, 383, 384, 385, 386, 387, 388, 389, 390, 164, 391,
    392, 393, 168, 394, 395, 396, 397, 398, 399, 175, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412,
    413, 414, 415, 416, 417, 418, 195, 419, 197, 420, 199, 200, 421, 422, 423, 424, 425, 426, 427, 428, 429, 430, 431,
    432, 433, 434, 435, 436, 437, 438, 439, 440, 441, 442, 443, 444, 445, 446, 447, 448, 449, 450, 451, 452, 453, 454,
    455, 456, 457, 458, 459, 460, 461, 462, 463, 464, 465, 466, 467, 3, 7, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
    60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88,
    89, 90, 91, 92, 93, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114,
    115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137,
    138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162,
    163, 165, 166, 167, 169, 170, 171, 172, 173, 174, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188,
    189, 190, 191, 192, 193, 194, 196, 198, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215,
    216, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238,
    239, 240, 241, 242, 243, 244, 245, 246, 247, 473, 476, 475, 474, 477, 468, 471, 470, 469, 472,
], dtype=np.int64)  # fmt: skip

FLIP_X = np.array([-1.0, 1.0, 1.0])
"""x -> -x: the world frame's mirror (the face is symmetric about x = 0)."""
HEAD_CENTRE = np.array([0.0, 0.0, -0.02])
"""A point a little behind the head centre in the world frame: every face normal points away from it."""


def mirror_image(a: np.ndarray) -> np.ndarray:
    """(468, 3) mirror image of per-landmark vectors (positions or normals): landmark i takes the x-flipped value
    of its mirror partner."""
    return np.asarray(a)[MIRROR_LANDMARK[:N_MESH]] * FLIP_X


def orient_outward(triangles: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """``triangles`` (T, 3) wound so their normals point out of the face (away from :data:`HEAD_CENTRE`), for
    ``vertices`` (V, 3) in the world frame."""
    a, b, c = vertices[triangles[:, 0]], vertices[triangles[:, 1]], vertices[triangles[:, 2]]
    n = np.cross(b - a, c - a)
    flip = ((n * ((a + b + c) / 3.0 - HEAD_CENTRE)).sum(1)) < 0
    t = triangles.copy()
    t[flip] = t[flip][:, [0, 2, 1]]
    return t


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
