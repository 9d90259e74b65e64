"""What an asset mesh is, measured: boundary loops, non-manifold edges, self-intersections, UV stretch, flipped
and overlapping UVs, atlas use. Pure functions of arrays; scripts/asset_stats.py and the tests call them."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def weld(positions: np.ndarray, tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """(unique positions (M, 3), index (N,) of each input vertex among them): seam-split vertices rejoined."""
    key = np.round(np.asarray(positions, np.float64) / tol).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return np.asarray(positions)[first], inverse.reshape(-1)


def edge_counts(faces: list[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (E, 2) of polygons (each row one face; triangles or quads) and how many faces
    use each."""
    faces = np.asarray(faces)
    k = faces.shape[1]
    e = np.concatenate([faces[:, [i, (i + 1) % k]] for i in range(k)])
    return np.unique(np.sort(e, axis=1), axis=0, return_counts=True)


def boundary_loops(faces: np.ndarray, positions: np.ndarray) -> list[dict]:
    """The mesh's boundary loops: each {"edges": n, "length_cm": perimeter}, longest first."""
    edges, counts = edge_counts(faces)
    bnd = edges[counts == 1]
    if len(bnd) == 0:
        return []
    nbrs: dict[int, list[int]] = {}
    for a, b in bnd:
        nbrs.setdefault(int(a), []).append(int(b))
        nbrs.setdefault(int(b), []).append(int(a))
    seen: set[int] = set()
    loops = []
    for start in nbrs:
        if start in seen:
            continue
        stack, comp = [start], []
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            comp.append(v)
            stack.extend(nbrs[v])
        cs = set(comp)
        le = bnd[np.isin(bnd[:, 0], list(cs))]
        length = float(np.linalg.norm(positions[le[:, 0]] - positions[le[:, 1]], axis=1).sum())
        loops.append({"edges": int(len(le)), "length_cm": round(100.0 * length, 2)})
    return sorted(loops, key=lambda d: -d["length_cm"])


def _segment_hits(p0, p1, a, b, c, eps=1e-9) -> np.ndarray:
    """(N,) True where segment p0->p1 crosses triangle abc strictly inside (Moller-Trumbore), rows paired."""
    d = p1 - p0
    e1, e2 = b - a, c - a
    h = np.cross(d, e2)
    det = (e1 * h).sum(1)
    ok = np.abs(det) > 1e-15
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = p0 - a
    u = inv * (s * h).sum(1)
    q = np.cross(s, e1)
    v = inv * (d * q).sum(1)
    t = inv * (e2 * q).sum(1)
    return ok & (u > eps) & (v > eps) & (u + v < 1 - eps) & (t > eps) & (t < 1 - eps)


def _candidate_pairs(lo: np.ndarray, hi: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of boxes (N, 3) ``lo``..``hi`` that share a cell of a uniform grid of side ``cell`` and whose
    boxes overlap: every overlapping pair, each once."""
    a = np.floor(lo / cell).astype(np.int64)
    b = np.floor(hi / cell).astype(np.int64)
    span = b - a + 1
    per = span.prod(1)
    box = np.repeat(np.arange(len(lo)), per)
    k = np.arange(len(box)) - np.repeat(np.cumsum(per) - per, per)  # which of its cells, 0..per-1
    sx, sy = span[box, 0], span[box, 1]
    cells = a[box] + np.stack([k % sx, (k // sx) % sy, k // (sx * sy)], 1)
    cells -= cells.min(0)
    dims = cells.max(0) + 1
    key = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    order = np.argsort(key, kind="stable")
    key, box = key[order], box[order]
    start = np.r_[0, np.nonzero(np.diff(key))[0] + 1]
    size = np.diff(np.r_[start, len(key)])
    # each entry pairs with the entries after it in its cell's run
    later = np.repeat(start + size, size) - np.arange(len(key)) - 1
    ii = np.repeat(np.arange(len(key)), later)
    jj = ii + 1 + (np.arange(len(ii)) - np.repeat(np.cumsum(later) - later, later))
    i, j = box[ii], box[jj]
    i, j = np.minimum(i, j), np.maximum(i, j)
    keep = i != j
    pair = np.unique(i[keep] * len(lo) + j[keep])
    i, j = pair // len(lo), pair % len(lo)
    overlap = np.all((lo[i] <= hi[j]) & (lo[j] <= hi[i]), axis=1)
    return i[overlap], j[overlap]


def _crossing(pa, ta, ii, pb, tb, jj) -> np.ndarray:
    """(P,) True where triangle ``ta[ii]`` of ``pa`` and ``tb[jj]`` of ``pb`` cross: an edge of one pierces the
    other."""
    hit = np.zeros(len(ii), bool)
    for t1, t2, p1, p2, i1, i2 in ((ta, tb, pa, pb, ii, jj), (tb, ta, pb, pa, jj, ii)):
        a, b, c = (p2[t2[i2, k]] for k in range(3))
        for k in range(3):
            hit |= _segment_hits(p1[t1[i1, k]], p1[t1[i1, (k + 1) % 3]], a, b, c)
    return hit


def intersecting_pairs(verts: np.ndarray, tris: np.ndarray, other: tuple | None = None) -> np.ndarray:
    """(P, 2) pairs of triangles that cross each other (sharing no vertex), sorted. With ``other`` = (verts2,
    tris2): pairs (i in tris, j in tris2) between two meshes instead.

    Only triangles whose bounding boxes overlap are tested, found with a uniform grid of about one triangle's
    size; :func:`intersecting_pairs_reference` is the slow twin (tests compare them)."""
    va = np.asarray(verts, np.float64)
    tris = np.asarray(tris, np.int64)
    vb, tb = (va, tris) if other is None else (np.asarray(other[0], np.float64), np.asarray(other[1], np.int64))
    pa, pb = va[tris], vb[tb]
    lo, hi = np.concatenate([pa.min(1), pb.min(1)]), np.concatenate([pa.max(1), pb.max(1)])
    if len(lo) == 0:
        return np.zeros((0, 2), np.int64)
    cell = max(float(np.median((hi - lo).max(1))), 1e-9)
    i, j = _candidate_pairs(lo, hi, cell)
    na = len(tris)
    if other is None:
        i, j = i[j < na], j[j < na]
        shared = (tris[i][:, :, None] == tris[j][:, None, :]).any((1, 2))
        i, j = i[~shared], j[~shared]
    else:
        cross = (i < na) & (j >= na)
        i, j = i[cross], j[cross] - na
    hit = _crossing(va, tris, i, vb, tb, j)
    out = np.stack([i[hit], j[hit]], 1)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def intersecting_pairs_reference(verts: np.ndarray, tris: np.ndarray, other: tuple | None = None) -> np.ndarray:
    """:func:`intersecting_pairs` the slow, obvious way: every pair of triangles whose bounding spheres meet
    (a k-d tree over the centroids at the largest radius), sorted."""
    va = np.asarray(verts, np.float64)
    vb, tb = (va, tris) if other is None else (np.asarray(other[0], np.float64), other[1])
    ca, cb = va[tris].mean(1), vb[tb].mean(1)
    ra = np.linalg.norm(va[tris] - ca[:, None], axis=2).max(1)
    rb = np.linalg.norm(vb[tb] - cb[:, None], axis=2).max(1)
    ka, kb = cKDTree(ca), cKDTree(cb)
    found = ka.query_ball_tree(kb, r=float(ra.max() + rb.max()))
    ii = np.repeat(np.arange(len(found)), [len(f) for f in found])
    jj = np.concatenate([np.asarray(f, np.int64) for f in found]) if len(ii) else np.zeros(0, np.int64)
    if other is None:
        keep = ii < jj
        ii, jj = ii[keep], jj[keep]
        shared = (tris[ii][:, :, None] == tris[jj][:, None, :]).any((1, 2))
        ii, jj = ii[~shared], jj[~shared]
    close = np.linalg.norm(ca[ii] - cb[jj], axis=1) <= ra[ii] + rb[jj]
    ii, jj = ii[close], jj[close]
    hit = _crossing(va, tris, ii, vb, tb, jj)
    out = np.stack([ii[hit], jj[hit]], 1)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def winding_numbers(points: np.ndarray, verts: np.ndarray, tris: np.ndarray, chunk: int = 64) -> np.ndarray:
    """(N,) generalized winding number of ``points`` (N, 3) about the triangle mesh ``verts`` / ``tris`` (wound
    outward): ~1 inside, ~0 outside, in between only near an opening (a neck cut) -- an inside test that needs no
    watertight mesh and no sign of a nearest plane (which flips on a thin part such as an ear). Van Oosterom and
    Strackee's solid angle of each triangle, summed over 4 pi."""
    a0, b0, c0 = (verts[tris[:, k]] for k in range(3))
    out = np.zeros(len(points))
    for i in range(0, len(points), chunk):
        p = np.asarray(points[i : i + chunk], np.float64)[:, None, :]
        a, b, c = a0[None] - p, b0[None] - p, c0[None] - p
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        num = np.einsum("pfk,pfk->pf", a, np.cross(b, c))
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out[i : i + chunk] = 2.0 * np.arctan2(num, den).sum(1) / (4.0 * np.pi)
    return out


def uv_stretch(positions: np.ndarray, uv: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle: the ratio of the singular values (>= 1) of the 3D -> UV map's Jacobian, and the 3D area."""
    p, t = positions[tris], uv[tris]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    area = 0.5 * np.linalg.norm(np.cross(e1, e2), axis=1)
    n1 = e1 / np.linalg.norm(e1, axis=1, keepdims=True).clip(1e-15)
    n2 = np.cross(np.cross(e1, e2), e1)
    n2 /= np.linalg.norm(n2, axis=1, keepdims=True).clip(1e-15)
    # (F, 2, 2): the two edges (columns) in an orthonormal frame of the triangle's plane
    local = np.stack([np.stack([(e * n1).sum(1), (e * n2).sum(1)], 1) for e in (e1, e2)], 2)
    duv = np.stack([t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]], 2)  # (F, 2, 2) columns = edges
    ok = np.abs(np.linalg.det(local)) > 1e-18
    jac = np.zeros((len(tris), 2, 2))
    jac[ok] = duv[ok] @ np.linalg.inv(local[ok])
    s = np.linalg.svd(jac, compute_uv=False)
    ratio = np.where(s[:, 1] > 1e-12, s[:, 0] / np.maximum(s[:, 1], 1e-12), np.inf)
    return ratio, area


def uv_signed_area(uv: np.ndarray, tris: np.ndarray) -> np.ndarray:
    t = uv[tris]
    a, b = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    return 0.5 * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])


def uv_coverage(uv: np.ndarray, tris: np.ndarray, size: int = 1024) -> np.ndarray:
    """(size, size) how many triangles cover each texel centre (strictly inside), v up -> row 0 at v = 1."""
    xy = np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], 1)[tris]
    count = np.zeros(size * size, np.int32)
    lo = np.clip(np.floor(xy.min(1) - 0.5).astype(int), 0, size - 1)
    hi = np.clip(np.ceil(xy.max(1) - 0.5).astype(int), 0, size - 1)
    for f in range(len(tris)):
        ys, xs = np.mgrid[lo[f, 1] : hi[f, 1] + 1, lo[f, 0] : hi[f, 0] + 1]
        cx, cy = xs.ravel() + 0.5, ys.ravel() + 0.5
        a, b, c = xy[f]
        den = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
        if abs(den) < 1e-12:
            continue
        w0 = ((b[1] - c[1]) * (cx - c[0]) + (c[0] - b[0]) * (cy - c[1])) / den
        w1 = ((c[1] - a[1]) * (cx - c[0]) + (a[0] - c[0]) * (cy - c[1])) / den
        inside = (w0 > 1e-9) & (w1 > 1e-9) & (1 - w0 - w1 > 1e-9)
        np.add.at(count, (ys.ravel() * size + xs.ravel())[inside], 1)
    return count.reshape(size, size)
