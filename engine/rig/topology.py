"""The face proxy's topology: mediapipe's 468-vertex face mesh (triangles recovered from its tesselation edges),
the named contours the blendshapes are authored on, the left/right mirror map, and the eye-disc fill.

The mesh has four holes: the outline, the mouth (inside the inner lip contour) and the two eyes. The mouth stays
open (upper and lower lips must part); each eye opening is filled with a *disc*: the iris centre landmark, a
virtual ring around it and the eye contour, so points over the eye have a surface to bind to and gaze shapes can
slide the iris inside the opening. Proxy vertex layout (``N_PROXY`` = 502)::

    0..467    mediapipe face mesh            468, 469  iris centres (landmarks 468 right, 473 left)
    470..485  right-eye ring (16)            486..501  left-eye ring (16)
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache

import numpy as np

from engine.face.mesh import (  # noqa: F401 - the rig's topology re-exports them
    MIRROR_LANDMARK,
    connections,
    mesh_triangles,
    orient_outward,
)

N_MESH = 468
N_PROXY = 502
IRIS_CENTRE = {"right": 468, "left": 469}  # proxy indices
IRIS_LANDMARK = {"right": 468, "left": 473}  # mediapipe indices (refine_landmarks)
RING_START = {"right": 470, "left": 486}
EYE_WIDEN = (0.03, 0.05)
"""The proxy's eye contour is mediapipe's, widened by these fractions of the eye's width at the corners (along the
eye) and mid-lid (vertically)."""
RING_FRACTION = 0.45
"""Virtual ring vertices sit this fraction of the way from the iris centre to the eye contour."""

# Named landmarks (mediapipe topology). "right"/"left" are the subject's own sides (left = +X in the world).
MOUTH_CORNER = {"right": 61, "left": 291}
MOUTH_INNER_CORNER = {"right": 78, "left": 308}
UPPER_LIP_TOP, UPPER_LIP_INNER, LOWER_LIP_INNER, LOWER_LIP_BOTTOM = 0, 13, 14, 17
EYE_OUTER = {"right": 33, "left": 263}
EYE_INNER = {"right": 133, "left": 362}
FOREHEAD, CHIN, NOSE_TIP, NASION = 10, 152, 1, 168
FACE_EDGE = {"right": 234, "left": 454}
CHEEK_CENTRE = {"right": 205, "left": 425}
NOSE_ALA = {"right": 64, "left": 294}
SUBNASALE = 2


def _ordered_path(edges, start: int, end: int) -> list[int]:
    """Walk an open polyline given as undirected edges from ``start`` to ``end``."""
    adj = defaultdict(list)
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    path, prev = [start], None
    while path[-1] != end:
        nxt = [n for n in adj[path[-1]] if n != prev]
        prev = path[-1]
        path.append(nxt[0])
    return path


def _split_loop(edges, a: int, b: int) -> tuple[list[int], list[int]]:
    """A closed contour through ``a`` and ``b`` as its two open halves, each from ``a`` to ``b``."""
    adj = defaultdict(list)
    for u, v in edges:
        adj[u].append(v)
        adj[v].append(u)
    halves = []
    for first in adj[a]:
        path = [a, first]
        while path[-1] != b:
            path.append(next(n for n in adj[path[-1]] if n != path[-2]))
        halves.append(path)
    return halves[0], halves[1]


@lru_cache(maxsize=1)
def contours() -> dict[str, list[int]]:
    """Ordered mediapipe index lists. Lips run corner to corner from the subject's right (61/78) to the left
    (291/308); eye lids from the outer to the inner corner; brows from the inner to the outer end."""
    c = connections()
    out: dict[str, list[int]] = {}
    lips = c["FACEMESH_LIPS"]
    outer = [e for e in lips if not ({e[0], e[1]} & {78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81,
                                                       82, 13, 312, 311, 310, 415})]  # fmt: skip
    inner = [e for e in lips if e not in outer]
    for name, edges, (a, b), top, bottom in (
        ("lip_outer", outer, (61, 291), UPPER_LIP_TOP, LOWER_LIP_BOTTOM),
        ("lip_inner", inner, (78, 308), UPPER_LIP_INNER, LOWER_LIP_INNER),
    ):
        h1, h2 = _split_loop(edges, a, b)
        upper, lower = (h1, h2) if top in h1 else (h2, h1)
        assert bottom in lower
        out[f"{name}_upper"], out[f"{name}_lower"] = upper, lower
    for side, key in (("right", "FACEMESH_RIGHT_EYE"), ("left", "FACEMESH_LEFT_EYE")):
        h1, h2 = _split_loop(c[key], EYE_OUTER[side], EYE_INNER[side])
        # the upper lid holds 159 (right) / 386 (left)
        up_marker = 159 if side == "right" else 386
        upper, lower = (h1, h2) if up_marker in h1 else (h2, h1)
        out[f"eye_{side}_upper"], out[f"eye_{side}_lower"] = upper, lower
        out[f"eye_{side}_loop"] = upper + lower[::-1][1:-1]
    brows = {
        "right": ("FACEMESH_RIGHT_EYEBROW", (107, 70), (55, 46)),
        "left": ("FACEMESH_LEFT_EYEBROW", (336, 300), (285, 276)),
    }
    for side, (key, (ua, ub), (la, lb)) in brows.items():
        edges = c[key]
        out[f"brow_{side}_upper"] = _ordered_path([e for e in edges if _on(e, edges, ua)], ua, ub)
        out[f"brow_{side}_lower"] = _ordered_path([e for e in edges if not _on(e, edges, ua)], la, lb)
    out["oval"] = _oval(c["FACEMESH_FACE_OVAL"])
    out["mouth_loop"] = out["lip_inner_upper"] + out["lip_inner_lower"][::-1][1:-1]
    return out


def _on(edge, edges, start) -> bool:
    """Whether ``edge`` lies on the polyline of ``edges`` that contains ``start``."""
    adj = defaultdict(list)
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    seen, stack = {start}, [start]
    while stack:
        v = stack.pop()
        for n in adj[v]:
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return edge[0] in seen


def _oval(edges) -> list[int]:
    adj = defaultdict(list)
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    loop, prev = [FOREHEAD], None
    while True:
        nxt = [n for n in adj[loop[-1]] if n != prev][0]
        if nxt == FOREHEAD:
            return loop
        prev = loop[-1]
        loop.append(nxt)


def mirror_proxy_index() -> np.ndarray:
    """(N_PROXY,) proxy index -> its mirror image."""
    m = np.empty(N_PROXY, dtype=np.int64)
    m[:N_MESH] = MIRROR_LANDMARK[:N_MESH]
    m[IRIS_CENTRE["right"]], m[IRIS_CENTRE["left"]] = IRIS_CENTRE["left"], IRIS_CENTRE["right"]
    # ring k of one eye sits toward contour vertex k of that eye; the mirror contour vertex is its mirror.
    loops = eye_loops()
    for side, other in (("right", "left"), ("left", "right")):
        mirrored = [MIRROR_LANDMARK[v] for v in loops[side]]
        for k, v in enumerate(mirrored):
            m[RING_START[side] + k] = RING_START[other] + loops[other].index(v)
    return m


@lru_cache(maxsize=1)
def eye_loops() -> dict[str, list[int]]:
    c = contours()
    return {side: c[f"eye_{side}_loop"] for side in ("right", "left")}


@lru_cache(maxsize=1)
def disc_triangles() -> np.ndarray:
    """Triangles filling both eye openings: iris centre -> ring fan, ring -> contour strip (unoriented)."""
    tris = []
    for side, loop in eye_loops().items():
        c, r0, n = IRIS_CENTRE[side], RING_START[side], len(loop)
        for k in range(n):
            k2 = (k + 1) % n
            tris.append((c, r0 + k, r0 + k2))
            tris.append((r0 + k, loop[k], loop[k2]))
            tris.append((r0 + k, loop[k2], r0 + k2))
    return np.array(tris, dtype=np.int64)


def proxy_positions(landmarks: np.ndarray) -> np.ndarray:
    """(N_PROXY, 3) proxy vertices from 478 mediapipe landmarks (the 468-point mesh, iris centres, and eye rings
    placed ``RING_FRACTION`` of the way from the iris centre to the eye contour)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    v = np.zeros((N_PROXY, 3))
    v[:N_MESH] = lm[:N_MESH]
    c = contours()
    for side, loop in eye_loops().items():
        # mediapipe's eye contour tends to lie a little inside the lid margins (on the eye white): widen it so the
        # proxy's lids are the real lids, and a closing lid covers all of the eye
        a, b = lm[EYE_OUTER[side]], lm[EYE_INNER[side]]
        ew = float(np.linalg.norm(b - a))
        axis = (b - a) / ew
        for lid, sign in ((c[f"eye_{side}_upper"], 1.0), (c[f"eye_{side}_lower"], -1.0)):
            t = np.clip((lm[lid] - a) @ axis / ew, 0.0, 1.0)
            v[lid, 1] += sign * EYE_WIDEN[1] * ew * np.sin(np.pi * t)
        v[EYE_OUTER[side]] -= EYE_WIDEN[0] * ew * axis
        v[EYE_INNER[side]] += EYE_WIDEN[0] * ew * axis
        contour = v[loop]
        centre = lm[IRIS_LANDMARK[side]] if len(lm) > 470 else contour.mean(0)
        # keep the centre inside the opening (a half-closed eye can put the iris landmark near a lid)
        mid = contour.mean(0)
        centre = mid + 0.6 * (centre - mid)
        v[IRIS_CENTRE[side]] = centre
        v[RING_START[side] : RING_START[side] + len(loop)] = centre + RING_FRACTION * (contour - centre)
    return v


def landmarks_from_proxy(v: np.ndarray, iterations: int = 3) -> np.ndarray:
    """(478, 3) mediapipe landmarks whose :func:`proxy_positions` is proxy ``v`` (N_PROXY, 3): the inverse of the
    eye widening, and each iris ring collapsed onto its centre (what the proxy keeps of it)."""
    v = np.asarray(v, dtype=np.float64)
    lm = np.zeros((478, 3))
    lm[:N_MESH] = v[:N_MESH]
    c = contours()
    for side in ("right", "left"):
        a_p, b_p = v[EYE_OUTER[side]], v[EYE_INNER[side]]
        ew = float(np.linalg.norm(b_p - a_p)) / (1.0 + 2.0 * EYE_WIDEN[0])
        axis = (b_p - a_p) / np.linalg.norm(b_p - a_p)
        a, b = a_p + EYE_WIDEN[0] * ew * axis, b_p - EYE_WIDEN[0] * ew * axis
        lm[EYE_OUTER[side]], lm[EYE_INNER[side]] = a, b
        for lid, sign in ((c[f"eye_{side}_upper"][1:-1], 1.0), (c[f"eye_{side}_lower"][1:-1], -1.0)):
            x = v[lid].copy()
            for _ in range(iterations):  # the offset depends (slightly) on where the landmark itself is
                t = np.clip((x - a) @ axis / ew, 0.0, 1.0)
                x = v[lid].copy()
                x[:, 1] -= sign * EYE_WIDEN[1] * ew * np.sin(np.pi * t)
            lm[lid] = x
        loop = eye_loops()[side]
        mid = lm[loop].mean(0)
        lm[IRIS_LANDMARK[side] : IRIS_LANDMARK[side] + 5] = mid + (v[IRIS_CENTRE[side]] - mid) / 0.6
    return lm


@lru_cache(maxsize=1)
def proxy_edges() -> np.ndarray:
    """(E, 2) unique undirected edges of the mesh part (the eye discs excluded)."""
    t = mesh_triangles()
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    return np.unique(np.sort(e, 1), axis=0)


def oriented_triangles(vertices: np.ndarray) -> np.ndarray:
    """All proxy triangles (mesh + eye discs), wound so their normals point out of the face (toward the camera
    side of the head centre), for proxy ``vertices`` (N_PROXY, 3) in the world frame."""
    return orient_outward(np.concatenate([mesh_triangles(), disc_triangles()]), vertices)
