"""Ground-truth datasets on disk: the camera grid, and reading/writing ``cameras.json`` + images.

Layout of a dataset folder::

    cameras.json            cameras (gl cam2world in the GT frame, intrinsics), settings, file names
    <view>.png              RGB over the background colour (what the engine is given / scored against)
    <view>_mask.png         silhouette: Blender's alpha > 0.5
    <view>_depth.exr        z-depth in metres of the same mesh (channel Z, 0 where empty)

The GT frame has the engine world's axes (metres, +Y up, face toward +Z, +X the subject's left) with its origin
at the head's centre; it differs from a bundle's world by a similarity (see :mod:`harness.align`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.conventions import Intrinsics, focal_px_from_35mm, orbit_camera_gl

FORMAT = "likeness-groundtruth"
FORMAT_VERSION = 1


def view_name(yaw_deg: float, pitch_deg: float) -> str:
    return f"yaw{yaw_deg:+03.0f}_pitch{pitch_deg:+03.0f}"


def grid(yaw_max: float, yaw_step: float, pitch_max: float, pitch_step: float) -> list[tuple[float, float]]:
    """(yaw, pitch) pairs covering [-yaw_max, yaw_max] x [-pitch_max, pitch_max], both including 0."""

    def axis(m, s):
        if m <= 0 or s <= 0:
            return [0.0]
        k = int(np.floor(m / s + 1e-9))
        return [float(i * s) for i in range(-k, k + 1)]

    return [(y, p) for p in axis(pitch_max, pitch_step) for y in axis(yaw_max, yaw_step)]


FULL_YAWS = (0.0, 30.0, -30.0, 60.0, -60.0, 90.0, -90.0, 120.0, -120.0, 150.0, -150.0, 180.0)
"""Yaws of the full-circle grid at pitch 0 (180 once: +180 and -180 are the same camera)."""
FULL_PITCHES = (20.0, -20.0)
"""Pitches of the full-circle grid, at yaw 0."""


def full_grid() -> list[tuple[float, float]]:
    """(yaw, pitch) pairs all the way round the head (issue 13): yaw 0, +-30, +-60, +-90, +-120, +-150 and 180
    at pitch 0, plus pitch +-20 at yaw 0."""
    return [(y, 0.0) for y in FULL_YAWS] + [(0.0, p) for p in FULL_PITCHES]


def turntable_grid(frames: int, pitch_deg: float = 0.0) -> list[tuple[float, float]]:
    """(yaw, pitch) of an engine-style turntable: ``frames`` yaws 360/frames apart starting at the face
    (engine.pipeline.render_turntable), yaws written in (-180, 180]."""
    out = []
    for i in range(frames):
        y = 360.0 * i / frames
        out.append((y - 360.0 if y > 180.0 else y, float(pitch_deg)))
    return out


def yaw_bucket(yaw_deg: float) -> float:
    """|yaw| folded into [0, 180] (so -150 and 210 both land in the 150 bucket)."""
    y = abs(((float(yaw_deg) + 180.0) % 360.0) - 180.0)
    return 180.0 if abs(y - 180.0) < 1e-9 else y


def focal_35mm_of(intr: Intrinsics) -> float:
    """35 mm-equivalent focal length (on the diagonal) of a camera: what the engine must be told."""
    return float(intr.fx * np.hypot(36.0, 24.0) / np.hypot(intr.width, intr.height))


def intrinsics_for(fov_y_deg: float | None, focal_35mm: float | None, size: int) -> Intrinsics:
    """Square image camera from a vertical field of view, or else a 35 mm-equivalent focal length."""
    if fov_y_deg:
        return Intrinsics.from_fov(fov_y_deg, size, size)
    f = focal_px_from_35mm(focal_35mm or 50.0, size, size)
    return Intrinsics(f, f, size / 2.0, size / 2.0, size, size)


def camera(yaw_deg: float, pitch_deg: float, distance_m: float, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """gl cam2world in the GT frame, orbiting ``target`` (the engine's orbit convention)."""
    return orbit_camera_gl(yaw_deg, pitch_deg, distance_m, target)


@dataclass
class GTView:
    name: str
    yaw_deg: float
    pitch_deg: float
    cam2world: np.ndarray
    intr: Intrinsics
    rgb: np.ndarray
    """(H, W, 3) float32 in [0, 1], over the background."""
    mask: np.ndarray
    """(H, W) bool."""
    depth_m: np.ndarray
    """(H, W) float32 z-depth, 0 where empty."""


@dataclass
class GTDataset:
    root: Path
    meta: dict
    views: dict[str, GTView]

    @property
    def input_name(self) -> str:
        return self.meta["input_view"]

    @property
    def input(self) -> GTView:
        return self.views[self.input_name]

    @property
    def background(self) -> np.ndarray:
        return np.asarray(self.meta["background_rgb"], np.float32)

    def photo_path(self, name: str | None = None) -> Path:
        return self.root / self.meta["views"][name or self.input_name]["rgb"]

    def novel(self) -> list[GTView]:
        return [v for k, v in self.views.items() if k != self.input_name]


def load_dataset(root: str | Path, only: list[str] | None = None) -> GTDataset:
    from PIL import Image

    from engine.io.exr import read_exr_depth

    root = Path(root)
    meta = json.loads((root / "cameras.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{root} is not a {FORMAT} dataset")
    views = {}
    for name, v in meta["views"].items():
        if only is not None and name not in only:
            continue
        rgb = np.asarray(Image.open(root / v["rgb"]).convert("RGB"), np.float32) / 255.0
        mask = np.asarray(Image.open(root / v["mask"]).convert("L")) > 127
        depth = read_exr_depth(str(root / v["depth"]))
        views[name] = GTView(
            name,
            float(v["yaw_deg"]),
            float(v["pitch_deg"]),
            np.array(v["cam2world"], np.float64),
            Intrinsics.from_dict(v["intrinsics"]),
            rgb,
            mask,
            depth,
        )
    return GTDataset(root, meta, views)
