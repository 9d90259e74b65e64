"""THE coordinate frames, units and camera conventions of Likeness. Every conversion is named by direction.

Frames (all right-handed, all lengths in metres unless a name says otherwise):

* **cv camera** -- the photo camera in OpenCV axes: +X right, +Y down, +Z forward (into the scene).
  Pixel (u, v) has its origin at the *top-left corner* of the image; the centre of pixel (i, j) is
  (i + 0.5, j + 0.5). Intrinsics ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels.
* **gl camera** -- the same camera in OpenGL / glTF / Blender camera axes: +X right, +Y up, looking down -Z.
  Every ``cam2world`` that leaves the engine (manifest, HTTP API, Blender) is a 4x4 gl-camera-to-world matrix.
* **world** -- the avatar's frame: origin at the head centre (between the ears), +Y up, the subject looks
  toward +Z, +X is the subject's own left. This is glTF's convention (an asset's front faces +Z), so the GLB
  needs no extra node transform. Metres.
* **canonical** -- the frame the radiance field lives in: ``x_canon = scale * x_world``. ``scale`` normalises the
  subject's face to the project's template face (:mod:`engine.proxy.template`); the rigid part of the
  Portrait-NeRF canonical transform is the world frame itself. Stored in the manifest as a similarity
  ``x_canon = s * R @ x_cv + t`` from the photo's cv camera.
* **Blender** -- Z up, the head faces -Y: ``(x, y, z)_world -> (x, -z, y)_blender`` (what glTF-Blender-IO does).

Depth maps are **z-depth** (distance along the camera's optical axis), in metres, not distance along the ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# gl camera axes expressed in cv camera axes (and back: the matrix is its own inverse).
CV_FROM_GL = np.diag([1.0, -1.0, -1.0, 1.0])

WORLD_TO_BLENDER = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])

CONVENTIONS_DOC = {
    "world": "metres, +Y up, subject looks toward +Z, +X is the subject's left (glTF)",
    "cam2world": "4x4, OpenGL/Blender camera axes (+X right, +Y up, looks down -Z) to world",
    "pixels": "origin at the top-left image corner, pixel centres at +0.5",
    "intrinsics": "fx, fy, cx, cy in pixels of the image the camera belongs to",
    "depth": "z-depth along the optical axis in metres; 0 or inf where there is no surface",
    "canonical": "x_canon = s * R @ x_cv + t; world = canonical / s",
    "blender": "(x, y, z)_world -> (x, -z, y)_blender",
}


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of an image ``width`` x ``height``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, factor: float) -> Intrinsics:
        """The same camera for an image resized by ``factor`` (pixel-corner convention keeps cx*factor)."""
        return Intrinsics(
            self.fx * factor,
            self.fy * factor,
            self.cx * factor,
            self.cy * factor,
            int(round(self.width * factor)),
            int(round(self.height * factor)),
        )

    def cropped(self, x0: float, y0: float, width: int, height: int) -> Intrinsics:
        """The camera of the sub-image whose top-left corner is pixel (x0, y0)."""
        return Intrinsics(self.fx, self.fy, self.cx - x0, self.cy - y0, width, height)

    def fov_y_deg(self) -> float:
        return float(np.degrees(2.0 * np.arctan(self.height / (2.0 * self.fy))))

    def pixels(self, points_cv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (u, v), each (N,), of cv-camera points (N, 3); points at or behind the camera plane
        (z <= 1e-6) are projected as if at z = 1 (callers test z themselves where it matters)."""
        p = np.asarray(points_cv)
        z = np.where(p[:, 2] > 1e-6, p[:, 2], 1.0)
        return self.fx * p[:, 0] / z + self.cx, self.fy * p[:, 1] / z + self.cy

    def to_dict(self) -> dict:
        return {
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "width": self.width,
            "height": self.height,
        }

    @staticmethod
    def from_dict(d: dict) -> Intrinsics:
        return Intrinsics(
            float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]), int(d["height"])
        )

    @staticmethod
    def from_fov(fov_y_deg: float, width: int, height: int) -> Intrinsics:
        f = 0.5 * height / np.tan(np.radians(fov_y_deg) / 2.0)
        return Intrinsics(f, f, width / 2.0, height / 2.0, width, height)


def focal_px_from_35mm(focal_35mm: float, width: int, height: int) -> float:
    """Focal length in pixels from a 35 mm-equivalent focal length (defined on the image diagonal)."""
    diag_px = float(np.hypot(width, height))
    return focal_35mm * diag_px / float(np.hypot(36.0, 24.0))


def cam2world_cv_to_gl(cam2world_cv: np.ndarray) -> np.ndarray:
    return np.asarray(cam2world_cv, dtype=np.float64) @ CV_FROM_GL


def cam2world_gl_to_cv(cam2world_gl: np.ndarray) -> np.ndarray:
    return np.asarray(cam2world_gl, dtype=np.float64) @ CV_FROM_GL


def engine_to_blender_matrix() -> np.ndarray:
    """4x4 that maps engine world points to Blender world points."""
    return WORLD_TO_BLENDER.copy()


def blender_to_engine_matrix() -> np.ndarray:
    return WORLD_TO_BLENDER.T.copy()


def look_at_gl(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """gl cam2world for a camera at ``eye`` looking at ``target`` (world)."""
    eye = np.asarray(eye, dtype=np.float64)
    fwd = np.asarray(target, dtype=np.float64) - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-8:
        right = np.cross(fwd, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    true_up = np.cross(right, fwd)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, true_up, -fwd, eye
    return m


def orbit_camera_gl(yaw_deg: float, pitch_deg: float, distance_m: float, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """gl cam2world on a sphere around ``target``. yaw 0 / pitch 0 looks at the face from the front (+Z);
    positive yaw moves the camera toward the subject's left (+X), positive pitch moves it up."""
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    target = np.asarray(target, dtype=np.float64)
    offset = distance_m * np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    return look_at_gl(target + offset, target)


def project_points(points_world: np.ndarray, cam2world_gl: np.ndarray, intr: Intrinsics):
    """World points (N, 3) -> pixel coordinates (N, 2) and z-depth (N,) in metres."""
    w2c = np.linalg.inv(cam2world_gl_to_cv(cam2world_gl))
    pc = points_world @ w2c[:3, :3].T + w2c[:3, 3]
    z = pc[:, 2]
    uv = np.stack([intr.fx * pc[:, 0] / z + intr.cx, intr.fy * pc[:, 1] / z + intr.cy], axis=1)
    return uv, z
