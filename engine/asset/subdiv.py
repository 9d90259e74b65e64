"""Catmull-Clark subdivision of a quad mesh as a sparse linear operator, with the boundary rules, and the linear
(face-varying) refinement its UVs take.

One step turns V vertices, E edges and F quads into V + E + F vertices (the old vertices' new positions first, then
one per edge, then one per face, in edge and face order) and 4F quads (face f's four are 4f .. 4f + 3, each
starting at one of its corners, same winding). Positions: face point = the mean of the corners; edge point =
(ends + the two face points) / 4 inside, the midpoint on the boundary; vertex point = ((n - 2) S + mean of the n
neighbours + mean of the n face points) / n inside, 3/4 S + 1/8 of each boundary neighbour on the boundary (the
boundary polygon is refined as a cubic B-spline on its own: the neck cut stays a curve of the boundary alone), and
a corner (a boundary vertex of one face) stays where it is. UVs are refined linearly (edge point = midpoint, face
point = mean, old vertices keep theirs) on the seam-split mesh, so seams stay seams. Subdivision is linear in the
positions: the same matrix maps any per-vertex quantity (morph target deltas included).

Pure functions of index arrays; ``catmull_clark_reference`` is the slow, obvious twin the tests compare with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Refinement:
    """One subdivision step. ``matrix`` (V + E + F, V) sparse: new vertices from old; ``quads`` (4F, 4) the new
    quads; ``edges`` (E, 2) the old mesh's edges (sorted pairs) in the order of the edge points."""

    matrix: sp.csr_matrix
    quads: np.ndarray
    edges: np.ndarray


def quad_edges(quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E, 2) the unique undirected edges (sorted pairs, sorted) of a quad mesh, and (F, 4) the edge index of each
    face's side k (corner k to corner k + 1)."""
    q = np.asarray(quads, np.int64)
    sides = np.stack([q, np.roll(q, -1, axis=1)], -1).reshape(-1, 2)
    edges, inverse = np.unique(np.sort(sides, axis=1), axis=0, return_inverse=True)
    return edges, inverse.reshape(-1, 4)


def _refined_quads(quads: np.ndarray, face_edge: np.ndarray, n_vertices: int, n_edges: int) -> np.ndarray:
    """(4F, 4): face f's sub-quad k is (corner k, edge point of side k, face point, edge point of side k - 1)."""
    f = len(quads)
    ep = n_vertices + face_edge
    fp = np.broadcast_to((n_vertices + n_edges + np.arange(f))[:, None], (f, 4))
    return np.stack([quads, ep, fp, np.roll(ep, 1, axis=1)], -1).reshape(-1, 4)


def _coo(rows: list, cols: list, vals: list, shape: tuple[int, int]) -> sp.csr_matrix:
    r, c, v = (np.concatenate(x) for x in (rows, cols, vals))
    return sp.coo_matrix((v, (r, c)), shape=shape).tocsr()  # duplicates are summed


def catmull_clark(quads: np.ndarray, n_vertices: int) -> Refinement:
    """One Catmull-Clark step of a manifold quad mesh (``quads`` (F, 4) into ``n_vertices``), with boundary
    rules (module docstring). ValueError on an edge with more than two faces."""
    q = np.asarray(quads, np.int64)
    nv, nf = n_vertices, len(q)
    edges, face_edge = quad_edges(q)
    ne = len(edges)
    faces_per_edge = np.bincount(face_edge.reshape(-1), minlength=ne)
    if (faces_per_edge > 2).any():
        raise ValueError(f"{int((faces_per_edge > 2).sum())} edges have more than two faces: not a manifold mesh")
    boundary = faces_per_edge == 1
    rows, cols, vals = [], [], []
    # face points: the mean of the corners
    fp_rows = nv + ne + np.arange(nf)
    rows.append(np.repeat(fp_rows, 4))
    cols.append(q.reshape(-1))
    vals.append(np.full(4 * nf, 0.25))
    # edge points: ends / 4 + each adjacent face's corners / 16 inside; the midpoint on the boundary
    ends_w = np.where(boundary, 0.5, 0.25)
    for k in range(2):
        rows.append(nv + np.arange(ne))
        cols.append(edges[:, k])
        vals.append(ends_w)
    inner_face = ~boundary[face_edge]  # (F, 4): this side is an interior edge
    e_of, f_of = face_edge[inner_face], np.nonzero(inner_face)[0]
    rows.append(np.repeat(nv + e_of, 4))
    cols.append(q[f_of].reshape(-1))
    vals.append(np.full(4 * len(e_of), 1.0 / 16.0))
    # vertex points
    valence = np.bincount(edges.reshape(-1), minlength=nv).astype(np.float64)
    n_boundary = np.bincount(edges[boundary].reshape(-1), minlength=nv)
    faces_at = np.bincount(q.reshape(-1), minlength=nv)
    on_boundary = n_boundary > 0
    corner = on_boundary & ((n_boundary != 2) | (faces_at == 1))
    crease = on_boundary & ~corner
    inner = ~on_boundary & (valence > 0)
    n = np.where(valence > 0, valence, 1.0)
    self_w = np.where(inner, (n - 2.0) / n, np.where(crease, 0.75, 1.0))
    rows.append(np.arange(nv))
    cols.append(np.arange(nv))
    vals.append(np.where(valence > 0, self_w, 1.0))
    for a, b in ((0, 1), (1, 0)):  # each edge's far end, for the vertex at its near end
        v, w = edges[:, a], edges[:, b]
        use = inner[v]
        rows.append(v[use])
        cols.append(w[use])
        vals.append(1.0 / n[v[use]] ** 2)
        use = crease[v] & boundary
        rows.append(v[use])
        cols.append(w[use])
        vals.append(np.full(int(use.sum()), 0.125))
    # an interior vertex's face points: 1 / n^2 of each, i.e. 1 / (4 n^2) of each corner of each face around it
    v_rep = np.repeat(q.reshape(-1), 4)  # the vertex at corner (f, k), once per corner of f
    c_rep = np.repeat(q, 4, axis=0).reshape(-1)
    use = inner[v_rep]
    rows.append(v_rep[use])
    cols.append(c_rep[use])
    vals.append(0.25 / n[v_rep[use]] ** 2)
    matrix = _coo(rows, cols, vals, (nv + ne + nf, nv))
    return Refinement(matrix, _refined_quads(q, face_edge, nv, ne), edges)


def linear_refinement(quads: np.ndarray, n_vertices: int) -> Refinement:
    """One step of the same refinement with linear rules (edge point = midpoint, face point = mean, old vertices
    kept): for UVs on the seam-split mesh, whose quads are the position mesh's one for one."""
    q = np.asarray(quads, np.int64)
    nv, nf = n_vertices, len(q)
    edges, face_edge = quad_edges(q)
    ne = len(edges)
    rows = [np.arange(nv), np.repeat(nv + np.arange(ne), 2), np.repeat(nv + ne + np.arange(nf), 4)]
    cols = [np.arange(nv), edges.reshape(-1), q.reshape(-1)]
    vals = [np.ones(nv), np.full(2 * ne, 0.5), np.full(4 * nf, 0.25)]
    return Refinement(_coo(rows, cols, vals, (nv + ne + nf, nv)), _refined_quads(q, face_edge, nv, ne), edges)


def catmull_clark_reference(verts: np.ndarray, quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same step written out vertex by vertex (slow; for tests): new vertices (V + E + F, 3) and quads."""
    v = np.asarray(verts, np.float64)
    q = [tuple(int(i) for i in f) for f in quads]
    edge_faces: dict[tuple[int, int], list[int]] = {}
    for fi, f in enumerate(q):
        for k in range(4):
            edge_faces.setdefault(tuple(sorted((f[k], f[(k + 1) % 4]))), []).append(fi)
    edges = sorted(edge_faces)
    face_pt = [v[list(f)].mean(0) for f in q]
    edge_pt = []
    for e in edges:
        fs = edge_faces[e]
        mid = (v[e[0]] + v[e[1]]) / 2
        edge_pt.append(mid if len(fs) == 1 else (v[e[0]] + v[e[1]] + face_pt[fs[0]] + face_pt[fs[1]]) / 4)
    new_v = []
    for i in range(len(v)):
        my_edges = [e for e in edges if i in e]
        my_faces = [fi for fi, f in enumerate(q) if i in f]
        bnd = [e for e in my_edges if len(edge_faces[e]) == 1]
        if not my_edges:
            new_v.append(v[i])
        elif bnd:
            if len(bnd) == 2 and len(my_faces) > 1:
                others = [e[0] if e[1] == i else e[1] for e in bnd]
                new_v.append(0.75 * v[i] + 0.125 * (v[others[0]] + v[others[1]]))
            else:
                new_v.append(v[i])
        else:
            nn = len(my_edges)
            qm = np.mean([face_pt[fi] for fi in my_faces], 0)
            rm = np.mean([(v[e[0]] + v[e[1]]) / 2 for e in my_edges], 0)
            new_v.append((qm + 2 * rm + (nn - 3) * v[i]) / nn)
    index = {e: len(v) + k for k, e in enumerate(edges)}
    new_q = []
    for fi, f in enumerate(q):
        fp = len(v) + len(edges) + fi
        for k in range(4):
            e_next, e_prev = tuple(sorted((f[k], f[(k + 1) % 4]))), tuple(sorted((f[k - 1], f[k])))
            new_q.append((f[k], index[e_next], fp, index[e_prev]))
    return np.array(new_v + edge_pt + face_pt), np.array(new_q)
