"""The per-subject UV layout (``likeness asset --uv-layout subject``, docs/ASSET.md "The UV layout"): the shared
layout's skin islands relaxed on one subject's own head with the re-unwrap's solver and weights
(engine/asset/uvpack.py :func:`reunwrapped`), each island's outer boundary held where the shared layout has it —
same vertices, same vertex order, same seams, islands and packing (nothing can move onto another island), only
the inside of each island (the holes' rims too) moves, so a texture painted on the shared layout lands about
where it should, though not texel for texel. The eyes, teeth and tongue keep the shared UVs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.asset.parts import Part
from engine.asset.unwrap import boundary_loops_uv
from engine.asset.uvpack import REUNWRAP, island_triangles, reunwrapped


def outer_loop(uv: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """The island's outer boundary loop (the one of largest signed area; holes run clockwise)."""

    def area(loop: np.ndarray) -> float:
        x, y = uv[loop, 0], uv[loop, 1]
        return 0.5 * float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum())

    return max(boundary_loops_uv(uv, tris), key=area)


def subject_layout(parts: dict[str, Part], vertices: np.ndarray) -> tuple[dict[str, Part], dict]:
    """``parts`` (with the shared layout's UVs) with their :data:`REUNWRAP` islands relaxed on the subject's
    template-indexed ``vertices`` (V, 3), in the template's frame (metres, +z the face), each island's outer
    boundary fixed; and what was done: per island its triangles and whether the relaxed UVs were kept (an
    island whose result overlaps itself keeps the shared UVs)."""
    out, notes = dict(parts), []
    for name in REUNWRAP:
        part = parts[name]
        uv = part.uv.copy()
        pos = np.asarray(vertices, np.float64)[part.template_vertex]
        for verts, tris in island_triangles(part):
            shared = part.uv[verts]
            q, p3 = shared[tris], pos[verts][tris]
            auv = 0.5 * np.abs(np.cross(q[:, 1] - q[:, 0], q[:, 2] - q[:, 0])).sum()
            a3 = 0.5 * np.linalg.norm(np.cross(p3[:, 1] - p3[:, 0], p3[:, 2] - p3[:, 0]), axis=1).sum()
            # in the island's own density: the target scale 1 (face) is its texels per 3D length
            new = reunwrapped(pos[verts] * np.sqrt(auv / a3), shared, tris, fixed=outer_loop(shared, tris))
            if new is not None:
                uv[verts] = new
            notes.append({"part": name, "triangles": int(len(tris)), "relaxed": new is not None})
        out[name] = replace(part, uv=uv)
    return out, {"islands": notes, "fixed": "each island's outer boundary"}
