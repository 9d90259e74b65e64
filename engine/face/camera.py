"""Photo camera (intrinsics from EXIF or a documented default), landmark lifting to metric 3D, head pose."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.conventions import Intrinsics, cam2world_cv_to_gl, focal_px_from_35mm
from engine.proxy.canonical import Similarity, umeyama
from engine.proxy.template import TEMPLATE_INDICES, TEMPLATE_XYZ


def photo_intrinsics(width: int, height: int, focal_35mm: float) -> Intrinsics:
    """Pinhole camera of the whole photo: square pixels, principal point at the centre."""
    f = focal_px_from_35mm(focal_35mm, width, height)
    return Intrinsics(f, f, width / 2.0, height / 2.0, width, height)


@dataclass(frozen=True)
class HeadPose:
    """Where the head is. ``to_canonical`` maps cv-camera points to the canonical frame; ``landmarks_cv`` are the
    478 landmarks lifted to metric cv-camera coordinates."""

    to_canonical: Similarity
    landmarks_cv: np.ndarray

    @property
    def scale(self) -> float:
        return float(self.to_canonical.scale)

    def world_from_cv(self) -> np.ndarray:
        """4x4 cv-camera -> world (world = canonical / scale, metric)."""
        s = self.to_canonical
        m = np.eye(4)
        m[:3, :3] = s.rotation
        m[:3, 3] = s.translation / s.scale
        return m

    def cam2world_gl(self) -> np.ndarray:
        return cam2world_cv_to_gl(self.world_from_cv())

    def landmarks_world(self) -> np.ndarray:
        w = self.world_from_cv()
        return self.landmarks_cv @ w[:3, :3].T + w[:3, 3]


def lift_landmarks(points_px: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Landmarks (u, v, z_px) -> metric cv-camera points, scale set by the template face (weak perspective)."""
    sub = points_px[TEMPLATE_INDICES]
    # The template in cv-like axes, fitted orthographically to (u, v, z_px): scale = pixels per metre.
    ortho = umeyama(TEMPLATE_XYZ, sub)
    depth_ref = intr.fx / ortho.scale
    z_ref = sub[:, 2].mean()
    z = depth_ref + (points_px[:, 2] - z_ref) / ortho.scale
    x = (points_px[:, 0] - intr.cx) * z / intr.fx
    y = (points_px[:, 1] - intr.cy) * z / intr.fy
    return np.stack([x, y, z], axis=1)


def estimate_pose(points_px: np.ndarray, intr: Intrinsics) -> HeadPose:
    """Lift the landmarks and fit the canonical similarity (Umeyama) to the template face."""
    lm_cv = lift_landmarks(points_px, intr)
    to_canon = umeyama(lm_cv[TEMPLATE_INDICES], TEMPLATE_XYZ)
    return HeadPose(to_canon, lm_cv)
