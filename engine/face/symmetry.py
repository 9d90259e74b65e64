"""Landmarks the photo does not see, completed from their mirror partners.

mediapipe regresses all 478 landmarks from one view, so on a turned face the far jaw, far cheek and far temple
are guesses: on the Lee Perry-Smith scan photographed at ±45° of yaw the landmarks replaced here lie 4.9-5.9 mm
from the truth as mediapipe places them and 3.9-5.2 mm as their mirrored partners place them (docs/FIDELITY.md,
"Unseen landmarks"; at ±15-30° the two are within 1 mm either way). The field's far side is itself
filled from the mirrored photo (engine.field.model), so the bundle's landmarks, the rig anchored on them and the
rendered head agree only if the landmarks are completed the same way.

A landmark is replaced by its mirror partner (x -> -x in the world frame, where the face is symmetric about x = 0)
only where the photo sees it at a grazing angle *and* sees its partner clearly better — a point the photo shows
keeps its own position, so a one-sided expression on the visible side survives.
"""

from __future__ import annotations

import numpy as np

from engine.face.mesh import MIRROR_LANDMARK, N_MESH, mesh_triangles, mirror_image, orient_outward

GRAZING_COS = (0.4, 0.2)
"""cos(angle between the landmark's normal and its ray to the photo camera): at or above 0.4 (66°) the landmark
keeps its own position; at or below 0.2 (78°) it may be replaced fully."""
PARTNER_ADVANTAGE = (0.1, 0.3)
"""How much more head-on (in cos) the partner must be seen: the same ramp as the colour's mirrored view."""


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def landmark_normals(points: np.ndarray) -> np.ndarray:
    """Unit outward normals (468, 3) of mediapipe's face mesh at ``points`` (>= 468, 3), world frame."""
    p = np.asarray(points, dtype=np.float64)[:N_MESH]
    t = orient_outward(mesh_triangles(), p)
    fn = np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]])
    n = np.zeros_like(p)
    for k in range(3):
        np.add.at(n, t[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def photo_cos(points: np.ndarray, camera_centre: np.ndarray, symmetric: bool = False) -> np.ndarray:
    """(468,) cosine between each landmark's normal and its direction to the camera centre (world frame).
    ``symmetric``: average each normal with its partner's mirrored normal (mediapipe's triangulation is not quite
    mirror-symmetric), so a symmetric face seen from the front gives partners equal cosines."""
    p = np.asarray(points, dtype=np.float64)[:N_MESH]
    n = landmark_normals(p)
    if symmetric:
        n = n + mirror_image(n)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    to_cam = np.asarray(camera_centre, dtype=np.float64)[None, :] - p
    to_cam /= np.maximum(np.linalg.norm(to_cam, axis=1, keepdims=True), 1e-12)
    return (n * to_cam).sum(1)


def symmetrised(points: np.ndarray) -> np.ndarray:
    """(468, 3) mean of the face mesh and its mirror image about x = 0."""
    p = np.asarray(points, dtype=np.float64)[:N_MESH]
    return 0.5 * (p + mirror_image(p))


def mirror_weights(points: np.ndarray, camera_centre: np.ndarray) -> np.ndarray:
    """(468,) in [0, 1]: how much of each landmark's position comes from its mirror partner."""
    partner = MIRROR_LANDMARK[:N_MESH]
    # Visibility is judged on the symmetrised face, so a landmark and its partner differ only by where the camera
    # is: an asymmetric expression cannot tilt the local normals into a replacement.
    cos = photo_cos(symmetrised(points), camera_centre, symmetric=True)
    hidden = 1.0 - _ramp(cos, GRAZING_COS[1], GRAZING_COS[0])
    return hidden * _ramp(cos[partner] - cos, *PARTNER_ADVANTAGE)


def complete_unseen(points: np.ndarray, camera_centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(478, 3) world landmarks with the unseen ones blended toward their mirrored partners, and the (468,)
    weights used. The iris points (468-477) are kept."""
    p = np.asarray(points, dtype=np.float64)
    w = mirror_weights(p, camera_centre)
    out = p.copy()
    out[:N_MESH] = (1.0 - w)[:, None] * p[:N_MESH] + w[:, None] * mirror_image(p[:N_MESH])
    return out, w
