"""The template's skin as the asset uses it: its vertex ids and topology, which way its faces wind, and which of
its vertices the front sees. Depends on the template alone."""

from __future__ import annotations

import hashlib

import numpy as np

from engine.asset.parts import template_edges
from engine.asset.snap import front_visible
from engine.prior.model import PARTS, HeadPrior


def skin_topology(prior: HeadPrior) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Skin template vertex ids (S,), its triangles and edges in local (0..S-1) indices."""
    ids = np.nonzero(prior.part == PARTS.index("skin"))[0]
    local = np.full(len(prior.vertices), -1)
    local[ids] = np.arange(len(ids))
    quads = local[prior.quads[prior.part[prior.quads[:, 0]] == 0]]
    tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    return ids, tris, template_edges(quads)


def outward_sign(verts: np.ndarray, tris: np.ndarray) -> float:
    """+1 if the triangles wind outward (positive enclosed volume about the centroid), else -1."""
    c = verts.mean(0)
    a, b, d = verts[tris[:, 0]] - c, verts[tris[:, 1]] - c, verts[tris[:, 2]] - c
    return 1.0 if (a * np.cross(b, d)).sum() > 0 else -1.0


_FRONT: dict[str, np.ndarray] = {}
"""template_front's answers in this process, by a digest of the template's vertices."""


def template_front(prior: HeadPrior) -> np.ndarray:
    """(S,) float: which of the skin's template vertices the front sees (engine.asset.snap.front_visible on the
    neutral template; the same for every subject, kept in-process)."""
    ids, tris, _ = skin_topology(prior)
    key = hashlib.sha1(np.ascontiguousarray(prior.vertices[ids], np.float64).tobytes()).hexdigest()
    if key not in _FRONT:
        _FRONT[key] = front_visible(prior.vertices[ids], tris).astype(np.float64)
    return _FRONT[key]
