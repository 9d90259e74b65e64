"""The skin's levels of detail: level 0 is the template's quads as they are, level k is k Catmull-Clark steps of
it (engine.asset.subdiv), UVs refined linearly on the seam-split mesh. Every subject gets the same levels (they
depend on the template alone); positions and morph target deltas go through the level's one sparse matrix.

Vertex order of a level's seam-split vertices: the previous level's first (the same UVs), then one per seam-split
edge, then one per face; so level 0's 4457 vertices are the first of every level. docs/ASSET.md."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from engine.asset.parts import Part
from engine.asset.snap import SMOOTH, find_surface, smooth_displacement
from engine.asset.subdiv import catmull_clark, linear_refinement
from engine.extract.mesh import vertex_normals

LEVEL_BAND_M = 0.004
"""A subdivided level's face vertices look for the field's surface this far along their normal (either way): the
level-0 skin it comes from is already snapped."""


@dataclass(frozen=True)
class SkinLevel:
    """One level. ``matrix`` (P, S) sparse: the level's P vertices from the skin's S template vertices (in the
    order of ``skin_ids``); ``quads`` (Q, 4) into those P; ``split_quads`` (Q, 4) the same quads into the N
    seam-split vertices, ``split_vertex`` (N,) the welded vertex of each, ``uv`` (N, 2) (v up); ``parent`` (N,)
    the template vertex id of the split vertices that are level 0's, -1 for those the subdivision added."""

    level: int
    matrix: sp.csr_matrix
    quads: np.ndarray
    split_quads: np.ndarray
    split_vertex: np.ndarray
    uv: np.ndarray
    parent: np.ndarray

    @property
    def triangles(self) -> np.ndarray:
        """(2Q, 3) the split quads along their 0-2 diagonal (as the template's are)."""
        q = self.split_quads
        return np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]).astype(np.int64)

    @property
    def welded_triangles(self) -> np.ndarray:
        q = self.quads
        return np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]).astype(np.int64)

    @property
    def edges(self) -> np.ndarray:
        """(E, 2) the welded mesh's edges."""
        q = self.quads
        e = np.concatenate([q[:, [0, 1]], q[:, [1, 2]], q[:, [2, 3]], q[:, [3, 0]]])
        return np.unique(np.sort(e, axis=1), axis=0)


@dataclass(frozen=True)
class SkinMesh:
    """One level of the skin in world metres: ``level`` (engine.asset.lod.SkinLevel), ``neutral``/``posed``
    (P, 3) its welded vertices, ``deltas`` (52, P, 3) the ARKit deltas through the level's matrix, ``info`` what
    the level's snap did (None on level 0), ``outward``: +1 if the quads wind outward (the template's do)."""

    level: SkinLevel
    neutral: np.ndarray
    posed: np.ndarray
    deltas: np.ndarray
    info: dict | None = None
    outward: float = 1.0
    """+1 if the quads wind outward (the template's do), else -1."""

    def normals(self, posed: bool = False) -> np.ndarray:
        """(P, 3) outward unit vertex normals of the neutral (or posed) skin."""
        v = self.posed if posed else self.neutral
        return self.outward * vertex_normals(v, self.level.welded_triangles)


def base_level(skin: Part, skin_ids: np.ndarray) -> SkinLevel:
    """Level 0: the skin part (seam-split, engine.asset.parts) on its S template vertices ``skin_ids`` (sorted)."""
    local = np.searchsorted(skin_ids, skin.template_vertex)
    if not np.array_equal(skin_ids[local], skin.template_vertex):
        raise ValueError("the skin part uses template vertices outside skin_ids")
    quads = local[skin.quads]
    s = len(skin_ids)
    return SkinLevel(0, sp.identity(s, format="csr"), quads, skin.quads.copy(), local, skin.uv.copy(),
                     skin.template_vertex.copy())  # fmt: skip


def refine(level: SkinLevel) -> SkinLevel:
    """The next level: one Catmull-Clark step of the welded mesh, one linear step of the seam-split UVs."""
    n_welded = level.matrix.shape[0]
    cc = catmull_clark(level.quads, n_welded)
    lin = linear_refinement(level.split_quads, len(level.uv))
    # each split edge's point is its welded edge's point; each face's point is the face's
    e_split = level.split_vertex[lin.edges]
    key = np.sort(e_split, axis=1) @ np.array([n_welded, 1])
    edge_of = np.searchsorted(cc.edges @ np.array([n_welded, 1]), key)
    nf = len(level.quads)
    split_vertex = np.concatenate([level.split_vertex, n_welded + edge_of, n_welded + len(cc.edges) + np.arange(nf)])
    if not np.array_equal(split_vertex[lin.quads], cc.quads):
        raise ValueError("the seam-split quads are not the welded quads one for one")
    added = np.full(len(lin.edges) + nf, -1, np.int64)
    return SkinLevel(level.level + 1, (cc.matrix @ level.matrix).tocsr(), cc.quads, lin.quads, split_vertex,
                     lin.matrix @ level.uv, np.concatenate([level.parent, added]))  # fmt: skip


def skin_levels(skin: Part, skin_ids: np.ndarray, levels: int) -> list[SkinLevel]:
    """Levels 0 .. ``levels``."""
    out = [base_level(skin, skin_ids)]
    for _ in range(levels):
        out.append(refine(out[-1]))
    return out


def subdivide_deltas(matrix: sp.csr_matrix, deltas: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """(K, P, 3) morph deltas of a level from the template's (K, S, 3) through its ``matrix``; components of at
    most ``tol`` set to 0 (the GLB keeps only the rows a shape moves)."""
    k, s, _ = deltas.shape
    flat = np.ascontiguousarray(np.transpose(deltas, (1, 0, 2)).reshape(s, 3 * k))
    out = np.asarray(matrix @ flat).reshape(-1, k, 3).transpose(1, 0, 2)
    return np.where(np.abs(out) > tol, out, 0.0)


def snap_level(
    verts: np.ndarray, normals: np.ndarray, weight: np.ndarray, edges: np.ndarray, level: int, sdf_fn: Callable
) -> tuple[np.ndarray, dict]:
    """(P, 3) displacement that brings a subdivided level's face (``verts`` (P, 3) world, unit ``normals``) to
    the field's surface, and what it did. ``weight`` (P,) is level 0's snap weight through the level's matrix
    (the face region, less the cavities and the vertices the untangling pinned); the smoothing weight grows
    4x per level, so its reach in metres stays level 0's (engine.asset.snap.SMOOTH over edges half as long)."""
    w = np.clip(np.asarray(weight, np.float64), 0.0, 1.0)
    t = np.full(len(verts), np.nan)
    look = w > 1e-3
    t[look] = find_surface(verts[look], normals[look], sdf_fn, LEVEL_BAND_M)
    found = np.isfinite(t)
    disp = smooth_displacement(np.nan_to_num(t)[:, None] * normals, np.where(found, w, 0.0), 1.0 - w, edges,
                               SMOOTH * 4.0**level)  # fmt: skip
    moved = np.linalg.norm(disp, axis=1)
    face = w > 0.5
    return disp, {
        "vertices_snapped": int(face.sum()),
        "found_share": round(float(found[look].mean()), 3) if look.any() else 0.0,
        "max_mm": round(1000 * float(moved.max()), 2) if len(moved) else 0.0,
        "mean_snapped_mm": round(1000 * float(moved[face].mean()), 3) if face.any() else 0.0,
    }
