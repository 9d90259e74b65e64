"""An artist-friendly head unwrap: spherical around the head centre, face in the middle of the map, the seam
straight down the back of the head. Vertices on the seam are split so no triangle wraps around."""

from __future__ import annotations

import numpy as np


def spherical_unwrap(verts: np.ndarray, faces: np.ndarray, centre=(0.0, 0.0, 0.0)):
    """UVs for a world-frame head mesh (+Y up, face toward +Z). Returns new ``verts`` (V', 3), ``faces`` and
    ``uv`` (V', 2) in [0, 1] with OpenGL's origin (bottom-left), and ``source`` (V',) the original index."""
    p = verts - np.asarray(centre)
    phi = np.arctan2(p[:, 0], p[:, 2])  # 0 at the face, +-pi at the back
    theta = np.arccos(np.clip(p[:, 1] / np.maximum(np.linalg.norm(p, axis=1), 1e-12), -1.0, 1.0))
    fphi = phi[faces]
    wraps = (fphi.max(1) - fphi.min(1)) > np.pi
    source = np.arange(len(verts))
    new_phi = phi.copy()
    faces = faces.copy()
    if wraps.any():
        # Duplicate the negative-phi corners of wrapping faces and move them past +pi.
        wf = np.nonzero(wraps)[0]
        corners = faces[wf]
        neg = phi[corners] < 0
        dup_src = np.unique(corners[neg])
        dup_idx = len(verts) + np.arange(len(dup_src))
        lookup = dict(zip(dup_src.tolist(), dup_idx.tolist(), strict=True))
        for k in range(3):
            col = corners[:, k]
            m = neg[:, k]
            col[m] = [lookup[c] for c in col[m].tolist()]
        faces[wf] = corners
        source = np.concatenate([source, dup_src])
        new_phi = np.concatenate([phi, phi[dup_src] + 2.0 * np.pi])
        theta = np.concatenate([theta, theta[dup_src]])
        # a corner whose every face wraps now has no face left: drop it (the OBJ would carry a loose vertex,
        # and readers that skip unreferenced vertices would shift every index after it)
        used = np.zeros(len(source), bool)
        used[faces.ravel()] = True
        if not used.all():
            remap = np.cumsum(used) - 1
            faces, source, new_phi, theta = remap[faces], source[used], new_phi[used], theta[used]
    u = (new_phi + np.pi) / (2.0 * np.pi)
    # Keep the face at u = 0.5 and fit the split seam corners (u slightly > 1) into the map.
    u = 0.5 + (u - 0.5) / max(1.0, 2.0 * float(np.abs(u - 0.5).max()))
    v = 1.0 - theta / np.pi
    return verts[source], faces, np.stack([u, v], 1), source
