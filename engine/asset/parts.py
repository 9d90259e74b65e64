"""The head prior's template split into the asset's parts (skin, eyes, teeth, tongue), each with its vertices
split where the UV layout has a seam (glTF has one UV per vertex), and a map back to template vertex ids.

Every subject gets the same parts with the same vertex order: only positions change."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.asset.seams import with_cup_seams
from engine.prior.model import PARTS, HeadPrior

ASSET_PARTS = ("skin", "eye_L", "eye_R", "teeth_upper", "teeth_lower", "tongue")
"""The asset's meshes, in the order of the GLB's nodes."""
CUT_PARTS = ("skin",)
"""Parts whose deep cups (the eye sockets) get seams the template lacks (engine/asset/seams.py)."""


@dataclass(frozen=True)
class Part:
    """One part of the template. ``template_vertex`` (N,) template vertex id of each of the part's (seam-split)
    vertices, ``uv`` (N, 2) their UVs (v up, as the prior stores them), ``quads`` (Q, 4) into those N vertices
    (the template's own quads, same winding), ``template_quads`` (Q, 4) the same quads in template vertex ids."""

    name: str
    template_vertex: np.ndarray
    uv: np.ndarray
    quads: np.ndarray
    template_quads: np.ndarray

    @property
    def triangles(self) -> np.ndarray:
        """(2Q, 3) the quads split along their 0-2 diagonal, as HeadPrior.triangles does."""
        q = self.quads
        return np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]).astype(np.int64)

    @property
    def template_triangles(self) -> np.ndarray:
        q = self.template_quads
        return np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]).astype(np.int64)


def split_parts(prior: HeadPrior) -> dict[str, Part]:
    """The template's parts by name (:data:`ASSET_PARTS`), each split at its UV seams (the template's, and for
    :data:`CUT_PARTS` the deep cups' cuts, whose vertex copies come after the others)."""
    part_of_quad = prior.part[prior.quads[:, 0]]
    out = {}
    for name in ASSET_PARTS:
        sel = part_of_quad == PARTS.index(name)
        tq, tuv = prior.quads[sel], prior.quad_uv[sel]
        pairs = np.stack([tq.reshape(-1), tuv.reshape(-1)], 1)
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        part = Part(
            name=name,
            template_vertex=uniq[:, 0].astype(np.int64),
            uv=prior.uv[uniq[:, 1]].astype(np.float64),
            quads=inverse.reshape(-1, 4).astype(np.int64),
            template_quads=tq.astype(np.int64),
        )
        out[name] = with_cup_seams(part, prior.vertices[part.template_vertex]) if name in CUT_PARTS else part
    return out


def template_edges(quads: np.ndarray) -> np.ndarray:
    """(E, 2) unique undirected edges (sorted pairs) of a quad mesh."""
    e = np.concatenate([quads[:, [0, 1]], quads[:, [1, 2]], quads[:, [2, 3]], quads[:, [3, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)
