"""THE frames and camera conventions on the Blender side: engine world <-> Blender world, intrinsics <-> camera.

A copy of the few conversions the add-on needs from ``engine/conventions.py`` (Blender's Python has neither
``engine`` nor ``torch``); ``tests/test_addon_conventions.py`` checks the two agree. Pure Python, no bpy.

* engine world: metres, +Y up, the subject looks toward +Z, +X is the subject's left (glTF).
* Blender world: metres, +Z up, the head faces -Y: ``(x, y, z)_engine -> (x, -z, y)_blender``.
* ``cam2world``: 4x4, camera axes of OpenGL = Blender cameras (+X right, +Y up, looking down -Z), so converting a
  camera pose only changes the world side: ``cam2world_blender = WORLD_TO_BLENDER @ cam2world_engine``.
* intrinsics ``{fx, fy, cx, cy, width, height}`` in pixels, origin at the top-left image corner (pixel centres at
  +0.5). Blender's view plane uses the same corner convention, so no half-pixel shift is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Matrix4 = list[list[float]]

WORLD_TO_BLENDER: Matrix4 = [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
BLENDER_TO_WORLD: Matrix4 = [list(row) for row in zip(*WORLD_TO_BLENDER, strict=True)]

DEFAULT_SENSOR_WIDTH_MM = 36.0


def matmul4(a: Matrix4, b: Matrix4) -> Matrix4:
    return [[sum(a[i][k] * b[k][j] for k in range(4)) for j in range(4)] for i in range(4)]


def as_matrix4(m) -> Matrix4:
    """Any 4x4 nested sequence (list, tuple, numpy, mathutils.Matrix) -> list of 4 float rows."""
    rows = [[float(v) for v in row] for row in m]
    if len(rows) != 4 or any(len(r) != 4 for r in rows):
        raise ValueError("expected a 4x4 matrix")
    return rows


def engine_to_blender_point(p) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in p)
    return (x, -z, y)


def blender_to_engine_point(p) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in p)
    return (x, z, -y)


def cam2world_engine_to_blender(cam2world) -> Matrix4:
    """gl-camera-to-engine-world -> Blender camera ``matrix_world`` (camera axes are the same in both)."""
    return matmul4(WORLD_TO_BLENDER, as_matrix4(cam2world))


def cam2world_blender_to_engine(matrix_world) -> Matrix4:
    """Blender camera ``matrix_world`` (scale ignored) -> gl-camera-to-engine-world, as the engine API wants."""
    m = as_matrix4(matrix_world)
    for j in range(3):  # drop any object scale so the rotation part is orthonormal
        n = math.sqrt(sum(m[i][j] ** 2 for i in range(3))) or 1.0
        for i in range(3):
            m[i][j] /= n
    return matmul4(BLENDER_TO_WORLD, m)


def transform_blender_to_engine(matrix) -> Matrix4:
    """A transform of Blender world points (4x4, e.g. a bone's rest -> posed skinning matrix) as the same transform
    of engine world points: ``BLENDER_TO_WORLD @ m @ WORLD_TO_BLENDER``."""
    return matmul4(matmul4(BLENDER_TO_WORLD, as_matrix4(matrix)), WORLD_TO_BLENDER)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of an image ``width`` x ``height`` (same fields as the engine's)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @staticmethod
    def from_dict(d: dict) -> Intrinsics:
        return Intrinsics(
            float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]), int(d["height"])
        )

    def to_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width": self.width, "height": self.height}

    def cropped_resized(self, x0: float, y0: float, side: float, size: int) -> Intrinsics:
        """The camera of the square crop ``[x0, y0, side]`` (photo pixels) resized to ``size`` x ``size``."""
        k = size / side
        return Intrinsics(self.fx * k, self.fy * k, (self.cx - x0) * k, (self.cy - y0) * k, size, size)

    def project(self, point_cam_gl) -> tuple[float, float]:
        """A point in gl camera axes (metres, in front: z < 0) -> pixel (u, v) from the top-left corner."""
        x, y, z = (float(v) for v in point_cam_gl)
        return (self.fx * x / -z + self.cx, self.fy * -y / -z + self.cy)


@dataclass(frozen=True)
class CameraParams:
    """What a Blender camera needs to reproduce an :class:`Intrinsics`: data fields plus the scene's render size.

    ``lens_mm`` against ``sensor_width_mm`` with ``sensor_fit`` HORIZONTAL; ``shift_x``/``shift_y`` in units of
    the image width (Blender's convention for a horizontal fit); ``pixel_aspect_*`` carry ``fx != fy``.
    """

    lens_mm: float
    sensor_width_mm: float
    sensor_fit: str
    shift_x: float
    shift_y: float
    resolution_x: int
    resolution_y: int
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0


def camera_params_from_intrinsics(intr: Intrinsics, sensor_width_mm: float = DEFAULT_SENSOR_WIDTH_MM) -> CameraParams:
    """Intrinsics -> Blender camera + render settings whose frame is exactly the image (horizontal sensor fit)."""
    w, h = intr.width, intr.height
    ycor = intr.fx / intr.fy  # Blender's pixel_aspect_y / pixel_aspect_x
    asp_x, asp_y = (1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0)
    return CameraParams(
        lens_mm=intr.fx * sensor_width_mm / w,
        sensor_width_mm=sensor_width_mm,
        sensor_fit="HORIZONTAL",
        shift_x=(w / 2.0 - intr.cx) / w,
        shift_y=(intr.cy - h / 2.0) * ycor / w,
        resolution_x=w,
        resolution_y=h,
        pixel_aspect_x=asp_x,
        pixel_aspect_y=asp_y,
    )


def intrinsics_from_camera_params(
    lens_mm: float,
    sensor_width_mm: float,
    sensor_height_mm: float,
    sensor_fit: str,
    shift_x: float,
    shift_y: float,
    resolution_x: int,
    resolution_y: int,
    pixel_aspect_x: float = 1.0,
    pixel_aspect_y: float = 1.0,
) -> Intrinsics:
    """Any Blender perspective camera (AUTO, HORIZONTAL or VERTICAL fit) at a render size -> pixel intrinsics.

    Mirrors Blender's ``BKE_camera_params_compute_viewplane``: AUTO fits ``sensor_width`` to the larger side.
    """
    w, h = int(resolution_x), int(resolution_y)
    ycor = pixel_aspect_y / pixel_aspect_x
    fit = sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if pixel_aspect_x * w >= pixel_aspect_y * h else "VERTICAL"
        sensor = sensor_width_mm
    else:
        sensor = sensor_height_mm if fit == "VERTICAL" else sensor_width_mm
    viewfac = w if fit == "HORIZONTAL" else ycor * h
    fx = lens_mm / sensor * viewfac
    return Intrinsics(
        fx=fx,
        fy=fx / ycor,
        cx=w / 2.0 - shift_x * viewfac,
        cy=h / 2.0 + shift_y * viewfac / ycor,
        width=w,
        height=h,
    )


def dolly_lens_mm(lens0_mm: float, subject_depth0_m: float, moved_back_m: float) -> float:
    """Focal length that keeps a subject at z-depth ``subject_depth0_m`` the same size after the camera moved back
    along its optical axis by ``moved_back_m`` (negative = closer): image size ~ lens / depth (dolly zoom)."""
    depth = subject_depth0_m + moved_back_m
    if depth <= 0.0:
        raise ValueError("the camera would pass the subject")
    return lens0_mm * depth / subject_depth0_m


def dolly_move_for_lens(lens0_mm: float, subject_depth0_m: float, lens1_mm: float) -> float:
    """Inverse of :func:`dolly_lens_mm`: how far back (metres) the camera moves when the lens goes to ``lens1_mm``."""
    return subject_depth0_m * (lens1_mm / lens0_mm - 1.0)


def orbit_offset_blender(distance_m: float, yaw_deg: float, pitch_deg: float) -> tuple[float, float, float]:
    """Camera offset from the orbit centre in Blender axes. Yaw 0 / pitch 0 is in front of the face (-Y);
    positive yaw moves toward the subject's left (+X), positive pitch moves up (+Z) -- the engine's orbit."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    ex = distance_m * math.sin(yaw) * math.cos(pitch)
    ey = distance_m * math.sin(pitch)
    ez = distance_m * math.cos(yaw) * math.cos(pitch)
    return engine_to_blender_point((ex, ey, ez))
