"""Seams the template's UVs lack: a UV island that is a deep cup (the eye sockets behind the eyeballs: 2.7 rim
radii deep, ten times the area of the disc their rim spans) cannot be flattened in one piece without stretching
(its best flattening keeps p95 stretch 1.69 with the face's weights). Cutting it into pieces from rim to bottom, as
an artist would, lets each piece lie nearly flat (three pieces: p95 1.25 on the sockets, docs/ASSET.md).

The cut is made on the template (the same for every subject): each deep cup's bottom (the vertex farthest from its
rim along the quads' edges) is joined to :data:`CUP_PIECES` rim vertices evenly spaced round the rim by shortest
paths along quad edges that meet only there, and the vertices on those paths are split, one copy per piece round
them; the copies keep the original's UV (so the start of the re-unwrap stays flip-free) and are appended after the
part's vertices, in the order of the first quad that uses them: the vertices before them keep their order.

Pure functions of arrays; deterministic."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra

from engine.asset.unwrap import boundary_loops_uv

CUP_RATIO = 6.0
"""An island is a deep cup when its 3D area is more than this many times the disc its rim spans (pi r^2, r the
rim's mean distance from its centroid): a hemisphere is 2, the inside of the mouth 3.5, each eye socket 9.8."""
CUP_PIECES = 3
"""Pieces a deep cup is cut into (two: the sockets' p95 stretch 1.30; three: 1.25)."""


def _quad_edges(quads: np.ndarray) -> np.ndarray:
    e = np.concatenate([quads[:, [0, 1]], quads[:, [1, 2]], quads[:, [2, 3]], quads[:, [3, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def _islands(quads: np.ndarray, n: int) -> np.ndarray:
    """(n,) the UV island (connected component over the quads) of each vertex."""
    e = _quad_edges(quads)
    graph = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def cup_cuts(positions: np.ndarray, uv: np.ndarray, quads: np.ndarray) -> list[tuple[int, int]]:
    """The edges (sorted vertex pairs into ``positions``) to cut: for each island of ``quads`` with one boundary
    loop whose area exceeds :data:`CUP_RATIO` times its rim's disc, :data:`CUP_PIECES` shortest edge paths from
    its rim to its bottom."""
    positions = np.asarray(positions, np.float64)
    label = _islands(quads, len(positions))
    cuts: set[tuple[int, int]] = set()
    for island in np.unique(label[quads[:, 0]]):
        q = quads[label[quads[:, 0]] == island]
        tris = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
        loops = boundary_loops_uv(uv, tris)
        if len(loops) != 1:
            continue
        rim = loops[0]
        p = positions[tris]
        area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1).sum()
        radius = np.linalg.norm(positions[rim] - positions[rim].mean(0), axis=1).mean()
        if area <= CUP_RATIO * np.pi * radius**2:
            continue
        e = _quad_edges(q)
        w = np.linalg.norm(positions[e[:, 0]] - positions[e[:, 1]], axis=1)
        n = len(positions)
        graph = sp.coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
        graph = graph + graph.T
        from_rim = dijkstra(graph, indices=rim, min_only=True)
        from_rim[~np.isfinite(from_rim)] = -1.0
        bottom = int(np.argmax(from_rim))
        for k in range(CUP_PIECES):  # each path avoids the earlier ones' vertices: they meet only at the bottom
            _, pred = dijkstra(graph, indices=bottom, return_predecessors=True)
            v = int(rim[(k * len(rim)) // CUP_PIECES])
            path = [v]
            while v != bottom:
                u = int(pred[v])
                if u < 0:
                    raise ValueError("a cup's rim is cut off from its bottom by the earlier cuts")
                cuts.add((min(u, v), max(u, v)))
                path.append(u)
                v = u
            keep = np.ones(n)
            keep[path[:-1]] = 0.0
            # and keeps away from them: edges near a cut cost more (up to 5x within about half the rim radius)
            mid = 0.5 * (positions[e[:, 0]] + positions[e[:, 1]])
            near = np.linalg.norm(mid[:, None] - positions[path][None], axis=2).min(1)
            w = w * (1.0 + 4.0 * np.exp(-near / (0.5 * radius)))
            graph = sp.coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
            graph = sp.diags(keep) @ (graph + graph.T) @ sp.diags(keep)
    return sorted(cuts)


def _edges_at(quad: np.ndarray, v: int) -> set[tuple[int, int]]:
    """The two edges (sorted pairs) of ``quad`` at its corner ``v``."""
    row = [int(x) for x in quad]
    i = row.index(v)
    a, b = row[i - 1], row[(i + 1) % 4]
    return {(min(v, a), max(v, a)), (min(v, b), max(v, b))}


def _groups_round(quads: np.ndarray, v: int, cut: set[tuple[int, int]]) -> list[list[int]]:
    """The quads round vertex ``v`` in groups joined across its edges not in ``cut``, by their lowest quad."""
    fan = [int(f) for f in np.nonzero((quads == v).any(1))[0]]
    parent = {f: f for f in fan}

    def find(f: int) -> int:
        while parent[f] != f:
            f = parent[f]
        return f

    for i, f in enumerate(fan):
        for g in fan[i + 1 :]:
            if (_edges_at(quads[f], v) & _edges_at(quads[g], v)) - cut:
                parent[find(f)] = find(g)
    groups: dict[int, list[int]] = {}
    for f in fan:
        groups.setdefault(find(f), []).append(f)
    return sorted(groups.values(), key=min)


def split_along(quads: np.ndarray, cuts: list[tuple[int, int]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(quads with the cut vertices split, (M,) the original vertex of each of the M new ones, numbered from n):
    round each vertex on a cut the quads fall into groups joined across its uncut edges; the group with the
    lowest quad index keeps the vertex, each other gets a copy."""
    cut = set(cuts)
    out = np.array(quads, np.int64, copy=True)
    source: list[int] = []
    for v in sorted({x for edge in cut for x in edge}):
        for group in _groups_round(quads, v, cut)[1:]:
            new = n + len(source)
            source.append(v)
            for f in group:
                out[f][quads[f] == v] = new
    return out, np.asarray(source, np.int64)


def with_cup_seams(part, positions: np.ndarray):
    """``part`` (engine.asset.parts.Part) with its deep cups cut (:func:`cup_cuts` on ``positions`` (N, 3), the
    template's positions of the part's vertices): the same quads, the cut vertices' copies appended."""
    cuts = cup_cuts(positions, part.uv, part.quads)
    if not cuts:
        return part
    quads, source = split_along(part.quads, cuts, len(part.uv))
    return replace(
        part,
        template_vertex=np.r_[part.template_vertex, part.template_vertex[source]],
        uv=np.r_[part.uv, part.uv[source]],
        quads=quads,
    )
