"""A low-stretch re-unwrap of one UV island: the template's own UVs moved, vertex for vertex and seam for seam,
to the flattening that minimises a conformal energy plus an area term, weighted toward the face.

Per triangle, with J the 3D -> UV Jacobian (2 x 2, in an orthonormal frame of the triangle's plane) and
s1 >= s2 its singular values: ``mips = |J|^2 / det J = s1/s2 + s2/s1`` (2 where the map is conformal; s1/s2 is
the stretch engine/asset/stats.py measures) and ``area = det J / s^2 + s^2 / det J`` (2 where the triangle has
its target scale s, UV length per 3D length). The energy is ``sum(3D area * (wc * mips + wa * area))``, the two
weights per triangle. Both terms are infinite for a flipped triangle and every step stops short of the first
flip, so from the template's flip-free UVs no triangle flips; the island's holes (the eyes' and the mouth's
openings in the head) are filled with triangles of next to no weight, so their rims cannot fold over either.
Minimised by projected Newton (each triangle's 4 x 4 Hessian in J made positive semi-definite; one sparse LU
solve per step; a backtracking line search).

Pure functions of arrays; deterministic (no randomness, a fixed order of operations)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

_H_DET = np.array([[0, 0, 0, 1], [0, 0, -1, 0], [0, -1, 0, 0], [1, 0, 0, 0]], np.float64)
"""The Hessian of det J in J's entries (J00, J01, J10, J11)."""


@dataclass(frozen=True)
class UnwrapWeights:
    """Per triangle (T,): the weight of its conformal term and of its area term (each times its 3D area), and
    its target ``scale`` (UV length per 3D length)."""

    conformal: np.ndarray
    area: np.ndarray
    scale: np.ndarray


def gradient_operator(positions: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3, 2) ``grad`` with J[t, r, c] = sum_k uv[tris[t, k], r] * grad[t, k, c] for any UVs, and (T,) the 3D
    areas. Column c is an axis of an orthonormal frame of each triangle's plane (edge 0-1 first)."""
    p = np.asarray(positions, np.float64)
    e1, e2 = p[tris[:, 1]] - p[tris[:, 0]], p[tris[:, 2]] - p[tris[:, 0]]
    n = np.cross(e1, e2)
    area = 0.5 * np.linalg.norm(n, axis=1)
    a1 = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    a2 = np.cross(n, e1)
    a2 /= np.linalg.norm(a2, axis=1, keepdims=True)
    local = np.stack([np.stack([(e * a1).sum(1), (e * a2).sum(1)], 1) for e in (e1, e2)], 2)  # columns = edges
    inv = np.linalg.inv(local)
    return np.concatenate([-inv.sum(1, keepdims=True), inv], 1), area


def jacobians(uv: np.ndarray, tris: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """(T, 4) each triangle's 3D -> UV Jacobian, entries (J00, J01, J10, J11)."""
    return np.einsum("tkr,tkc->trc", uv[tris], grad).reshape(-1, 4)


class Energy:
    """The energy of the module docstring over ``tris`` (T, 3) of ``n`` vertices, each triangle's rest shape
    given by its ``grad`` and ``area`` (:func:`gradient_operator`): value, gradient and projected Hessian in the
    UVs (flattened (2N,): u0, v0, u1, v1, ...)."""

    def __init__(self, n: int, tris: np.ndarray, grad: np.ndarray, area: np.ndarray, weights: UnwrapWeights):
        self.tris = np.asarray(tris, np.int64)
        self.n = n
        self.grad = grad
        self.wc = area * np.asarray(weights.conformal, np.float64)
        self.wa = area * np.asarray(weights.area, np.float64)
        self.s2 = np.asarray(weights.scale, np.float64) ** 2
        # dJ/du per triangle: J's entry r * 2 + c against the triangle's UV entry k * 2 + r
        m = np.zeros((len(self.tris), 4, 6))
        for r in range(2):
            for c in range(2):
                m[:, r * 2 + c, r::2] = self.grad[:, :, c]
        self.m, self.mt = m, np.ascontiguousarray(m.transpose(0, 2, 1))
        self.dof = (2 * self.tris[:, :, None] + np.arange(2)).reshape(-1, 6)
        self.rows = np.repeat(self.dof, 6, axis=1).ravel()
        self.cols = np.tile(self.dof, (1, 6)).ravel()

    def _terms(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        j = jacobians(uv.reshape(-1, 2), self.tris, self.grad)
        det = j[:, 0] * j[:, 3] - j[:, 1] * j[:, 2]
        return j, det, (j * j).sum(1)

    def per_triangle(self, uv: np.ndarray) -> np.ndarray:
        """(T,) each triangle's weighted energy (inf where flipped or degenerate)."""
        j, det, fro = self._terms(uv)
        with np.errstate(divide="ignore", invalid="ignore"):
            e = self.wc * fro / det + self.wa * (det / self.s2 + self.s2 / det)
        return np.where(det > 0, e, np.inf)

    def value(self, uv: np.ndarray) -> float:
        return float(self.per_triangle(uv).sum())

    def derivatives(self, uv: np.ndarray) -> tuple[float, np.ndarray, sp.csc_matrix]:
        """(energy, gradient (2N,), Hessian (2N, 2N) with each triangle's part projected to PSD)."""
        j, det, fro = self._terms(uv)
        wc, wa, s2 = self.wc, self.wa, self.s2
        gd = np.stack([j[:, 3], -j[:, 2], -j[:, 1], j[:, 0]], 1)  # d det / dJ
        k_gd = -wc * fro / det**2 + wa * (1 / s2 - s2 / det**2)  # the gradient's and the Hessian's factor of it
        de = (2 * wc / det)[:, None] * j + k_gd[:, None] * gd
        he = (
            (2 * wc / det)[:, None, None] * np.eye(4)
            - (2 * wc / det**2)[:, None, None] * (j[:, :, None] * gd[:, None, :] + gd[:, :, None] * j[:, None, :])
            + (2 * (wc * fro + wa * s2) / det**3)[:, None, None] * gd[:, :, None] * gd[:, None, :]
            + k_gd[:, None, None] * _H_DET
        )
        val, vec = np.linalg.eigh(he)
        he = (vec * np.maximum(val, 0.0)[:, None, :]) @ vec.transpose(0, 2, 1)
        g6 = (self.mt @ de[:, :, None])[:, :, 0]
        h6 = self.mt @ he @ self.m
        g = np.bincount(self.dof.ravel(), g6.ravel(), minlength=2 * self.n)
        h = sp.csc_matrix((h6.ravel(), (self.rows, self.cols)), shape=(2 * self.n, 2 * self.n))
        e = wc * fro / det + wa * (det / s2 + s2 / det)
        return float(e.sum()), g, h

    def max_step(self, uv: np.ndarray, duv: np.ndarray) -> float:
        """The largest step along ``duv`` (at most 1) that leaves every triangle unflipped, with a margin: 0.8 of
        the first root of det J(uv + step * duv), a quadratic in step."""
        j = jacobians(uv.reshape(-1, 2), self.tris, self.grad)
        d = jacobians(duv.reshape(-1, 2), self.tris, self.grad)
        c0 = j[:, 0] * j[:, 3] - j[:, 1] * j[:, 2]
        c1 = j[:, 0] * d[:, 3] + d[:, 0] * j[:, 3] - j[:, 1] * d[:, 2] - d[:, 1] * j[:, 2]
        c2 = d[:, 0] * d[:, 3] - d[:, 1] * d[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            sq = np.sqrt(np.where(c1 * c1 >= 4 * c2 * c0, c1 * c1 - 4 * c2 * c0, np.nan))
            roots = np.concatenate([(-c1 - sq) / (2 * c2), (-c1 + sq) / (2 * c2), np.where(c2 == 0, -c0 / c1, np.nan)])
        roots = roots[np.isfinite(roots) & (roots > 0)]
        return min(1.0, 0.8 * float(roots.min())) if len(roots) else 1.0


def boundary_loops_uv(uv: np.ndarray, tris: np.ndarray) -> list[np.ndarray]:
    """The island's boundary loops as vertex cycles, each in the direction its (counter-clockwise) triangles give
    it: the outer loop counter-clockwise, holes clockwise."""
    directed = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    key = {(int(a), int(b)) for a, b in directed}
    nxt = {int(a): int(b) for a, b in directed if (int(b), int(a)) not in key}
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(np.asarray(loop, np.int64))
    return loops


def _signed_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum())


def ear_clip(poly: np.ndarray) -> np.ndarray:
    """(n - 2, 3) a triangulation of the simple counter-clockwise polygon ``poly`` (n, 2), as indices into it,
    every triangle counter-clockwise: each step cuts the best-shaped ear (area / perimeter^2) with no other
    vertex inside or on it."""
    idx = list(range(len(poly)))
    out = []
    while len(idx) > 3:
        p = poly[idx]
        a, b, c = np.roll(p, 1, axis=0), p, np.roll(p, -1, axis=0)
        area = 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
        perim = (np.linalg.norm(b - a, axis=1) + np.linalg.norm(c - b, axis=1) + np.linalg.norm(a - c, axis=1)) ** 2
        quality = np.where(area > 0, area / np.maximum(perim, 1e-300), -np.inf)
        for k in np.argsort(-quality, kind="stable"):
            if not np.isfinite(quality[k]):
                raise ValueError("the polygon has no ear (not simple, or not counter-clockwise)")
            others = np.delete(p, [(k - 1) % len(p), k, (k + 1) % len(p)], axis=0)
            if not _inside_or_on(others, a[k], b[k], c[k]).any():
                break
        n = len(idx)
        out.append((idx[(k - 1) % n], idx[k], idx[(k + 1) % n]))
        del idx[k]
    out.append(tuple(idx))
    out = np.asarray(out, np.int64)
    a, b, c = poly[out[:, 0]], poly[out[:, 1]], poly[out[:, 2]]
    if (((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])) <= 0).any():
        raise ValueError("the polygon's last ear is degenerate")
    return out


def _inside_or_on(q: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    def cross(o, p):
        return (p[0] - o[0]) * (q[:, 1] - o[1]) - (p[1] - o[1]) * (q[:, 0] - o[0])

    return (cross(a, b) >= 0) & (cross(b, c) >= 0) & (cross(c, a) >= 0)


def hole_fill(uv: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(H, 3) triangles (counter-clockwise in ``uv``) that fill every hole of the island: with them kept unflipped
    the holes' rims cannot fold over themselves or over the island."""
    fill = []
    for loop in boundary_loops_uv(uv, tris):
        if len(loop) >= 3 and _signed_area(uv[loop]) < 0:  # a hole: its rim runs clockwise
            ring = loop[::-1]
            fill.append(ring[ear_clip(uv[ring])])
    return np.concatenate(fill) if fill else np.zeros((0, 3), np.int64)


FILL_WEIGHT = 1e-3
"""Weight of the hole-filling triangles (rest shape: their shape in the starting UVs): a barrier against folding,
next to nothing otherwise."""


def unwrap(
    positions: np.ndarray,
    uv: np.ndarray,
    tris: np.ndarray,
    weights: UnwrapWeights,
    iterations: int = 60,
    fixed: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """(K, 2) the island's new UVs (UV length = ``scale`` x 3D length where a triangle is at its target) and the
    Newton steps taken: ``positions`` (K, 3), ``uv`` (K, 2) a flip-free start (counter-clockwise triangles),
    ``tris`` (T, 3), ``fixed`` vertex indices that keep their start UVs (none by default). The holes are filled
    (:func:`hole_fill`) for the solve. Stops when a step lowers the energy by less than 1e-7 of it, or after
    ``iterations``."""
    uv = np.asarray(uv, np.float64)
    tris = np.asarray(tris, np.int64)
    grad, area = gradient_operator(positions, tris)
    fill = hole_fill(uv, tris)
    fgrad, farea = gradient_operator(np.c_[uv, np.zeros(len(uv))], fill)
    w = UnwrapWeights(
        np.r_[weights.conformal, np.full(len(fill), FILL_WEIGHT)],
        np.r_[weights.area, np.zeros(len(fill))],
        np.r_[weights.scale, np.ones(len(fill))],
    )
    en = Energy(len(uv), np.r_[tris, fill], np.r_[grad, fgrad], np.r_[area, farea], w)
    u = uv.reshape(-1).copy()
    if not np.isfinite(en.value(u)):
        raise ValueError("the starting UVs have flipped or degenerate triangles")
    free = np.ones(len(u), bool)
    if fixed is not None:
        free[(2 * np.asarray(fixed, np.int64)[:, None] + np.arange(2)).ravel()] = False
    steps = 0
    while steps < iterations:
        steps += 1
        f, g, h = en.derivatives(u)
        # rotation and translation leave the energy unchanged: a small diagonal term makes the step unique
        reg = 1e-8 * float(h.diagonal().mean()) + 1e-30
        if fixed is None:
            du = -spla.splu(h + reg * sp.identity(len(u), format="csc")).solve(g)
        else:  # the fixed vertices' rows and columns out: they do not move
            du = np.zeros_like(u)
            hf = sp.csc_matrix(h[free][:, free]) + reg * sp.identity(int(free.sum()), format="csc")
            du[free] = -spla.splu(hf).solve(g[free])
        step, slope = en.max_step(u, du), float(g @ du)
        while step > 1e-10 and en.value(u + step * du) > f + 1e-4 * step * slope:
            step *= 0.5
        if step <= 1e-10:
            break
        fn = en.value(u + step * du)
        u = u + step * du
        if f - fn <= 1e-7 * f:
            break
    return u.reshape(-1, 2), steps


def boundary_crossings(uv: np.ndarray, tris: np.ndarray) -> int:
    """How many pairs of the island's boundary edges (edges of one triangle) cross in UV, sharing no vertex: with
    no flipped triangle, 0 means the island does not overlap itself."""
    e = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    edges, count = np.unique(e, axis=0, return_counts=True)
    b = edges[count == 1]
    i, j = np.triu_indices(len(b), 1)
    keep = (b[i][:, :, None] != b[j][:, None, :]).all((1, 2))
    i, j = i[keep], j[keep]
    p, q, r, s = uv[b[i, 0]], uv[b[i, 1]], uv[b[j, 0]], uv[b[j, 1]]

    def side(a, b_, c):
        return np.sign((b_[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b_[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))

    cross = (side(p, q, r) * side(p, q, s) < 0) & (side(r, s, p) * side(r, s, q) < 0)
    return int(cross.sum())
