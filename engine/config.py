"""Build settings: one frozen, documented dataclass; presets by name. Building one does nothing."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal, get_args

Quality = Literal["draft", "standard", "high"]
Device = Literal["auto", "cpu", "cuda"]
LandmarkBackend = Literal["auto", "mediapipe", "face-alignment"]
UvLayout = Literal["shared", "subject"]
RigSource = Literal["auto", "proxy", "asset"]
QUALITIES: tuple[str, ...] = get_args(Quality)
DEVICES: tuple[str, ...] = get_args(Device)
LANDMARK_BACKENDS: tuple[str, ...] = get_args(LandmarkBackend)
UV_LAYOUTS: tuple[str, ...] = get_args(UvLayout)
"""``shared``: the one layout of every head (engine/asset/uvpack.py; textures transfer exactly); ``subject``: it
relaxed on this head's own snapped skin (engine/asset/uvsubject.py; less stretch, textures transfer roughly)."""
RIG_SOURCES: tuple[str, ...] = get_args(RigSource)
"""Whose shapes move the field under an expression: ``proxy``, the bundle's own rig authored on the face proxy
(docs/RIG.md); ``asset``, the asset's template keys (asset/head.glb) carried onto the proxy, so the neural render
moves as the asset's mesh does (engine/rig/asset_rig.py); ``auto`` (the default everywhere), ``asset`` when the
bundle has an asset and ``proxy`` otherwise."""
DEFAULT_METHOD = "head-prior"


@dataclass(frozen=True)
class Range:
    """The accepted values of one number the user gives (CLI flag, server field): finite, ``lo`` to ``hi``
    inclusive, whole when ``integer``; ``zero`` names what 0 means when 0 is accepted outside the range."""

    lo: float
    hi: float
    unit: str = ""
    integer: bool = False
    zero: str = ""

    def check(self, value: float, name: str) -> float:
        """``value`` if accepted, else ValueError with one line naming ``name`` and the range."""
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (not self.integer or float(value).is_integer())
        if ok and (self.lo <= value <= self.hi or (self.zero and value == 0)):
            return int(value) if self.integer else float(value)
        raise ValueError(f"{name} must be {self.describe()}, not {value!r}")

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        kind = "a whole number" if self.integer else "a number"
        text = f"{kind} from {self.lo:g} to {self.hi:g}{unit}"
        return f"0 ({self.zero}) or {text}" if self.zero else text


RANGES: dict[str, Range] = {
    "face_index": Range(0, 64, integer=True),
    "focal_35mm": Range(8.0, 1200.0, "mm", zero="EXIF or the default"),
    "yaw_deg": Range(-360.0, 360.0, "degrees"),
    "pitch_deg": Range(-89.0, 89.0, "degrees"),
    "distance_m": Range(0.05, 100.0, "m"),
    "fov_deg": Range(1.0, 170.0, "degrees"),
    "focal_mm": Range(1.0, 5000.0, "mm"),
    "render_side_px": Range(1, 8192, "pixels", integer=True),
    "frames": Range(1, 3600, integer=True),
    "fps": Range(1.0, 240.0, "frames per second"),
    "smooth_s": Range(0.0, 10.0, "s"),
    "max_frames": Range(1, 1_000_000, integer=True),
}
"""Every number a user passes, one range each: the CLI's argument types and the server's schema both read these."""


@dataclass(frozen=True)
class BuildConfig:
    """Everything that changes what a build produces. Units in the field names or docstrings."""

    quality: Quality = "standard"
    """Preset name the other values came from (draft | standard | high)."""
    device: Device = "auto"
    """auto | cpu | cuda. ``cuda`` fails with a clear message when no GPU is present."""
    face_index: int = 0
    """Which face to use when the photo shows several, largest first."""
    landmark_backend: LandmarkBackend = "auto"
    """auto | mediapipe | face-alignment. ``auto`` uses face-alignment only when its weights are local."""
    method: str = DEFAULT_METHOD
    """The fitting method (engine.fit.METHODS): proxy-init (default) | random-init."""
    method_options: dict = field(default_factory=dict)
    """Overrides of the method's own config (learning rates, loss weights...; engine.fit), e.g. for ablations."""
    focal_35mm: float = 0.0
    """Override the 35 mm-equivalent focal length; 0 reads EXIF, else ``default_focal_35mm``."""
    default_focal_35mm: float = 50.0
    """Focal length assumed when the photo carries no EXIF focal length (35 mm equivalent, on the diagonal)."""
    work_res: int = 512
    """Side of the square face crop the field is fitted to, pixels."""
    crop_scale: float = 3.2
    """Side of the crop as a multiple of the face width."""
    grid_res: int = 128
    """Resolution of the density (SDF) grid, voxels per side."""
    plane_res: int = 256
    """Resolution of each triplane of the learned colour, texels per side."""
    plane_channels: int = 8
    """Feature channels per triplane."""
    init_steps: int = 120
    """Steps distilling the projected-photo colour into the learned colour before fitting."""
    iterations: int = 300
    """Fitting steps."""
    rays_per_step: int = 4096
    """Rays per fitting step."""
    edge_ray_frac: float = 0.2
    """Share of each step's rays drawn from the matte's edge band (3 px either side of its 0.5 contour), where
    the outline and the colours that meet the background are fitted."""
    n_coarse: int = 48
    """Coarse samples per ray (uniform inside the field's box, wide density)."""
    n_fine: int = 12
    """Fine samples per ray, importance-sampled near the surface."""
    mc_res: int = 256
    """Marching-cubes resolution, cells per side."""
    max_faces: int = 60000
    """Face budget of the extracted mesh."""
    texture_size: int = 2048
    """Side of the baked colour texture, texels."""
    uv_layout: UvLayout = "shared"
    """UV layout of the artist asset (asset/): shared | subject (:data:`UV_LAYOUTS`, docs/ASSET.md "The UV layout")."""
    turntable_frames: int = 36
    """Frames in the turntable."""
    turntable_size: int = 384
    """Side of a turntable frame, pixels."""
    turntable_pitch_deg: float = 5.0
    """Camera elevation of the turntable, degrees."""
    seed: int = 0
    """Random seed of the fitting."""

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise ValueError(f"quality must be one of {QUALITIES}, not {self.quality!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, not {self.device!r}")
        if self.landmark_backend not in LANDMARK_BACKENDS:
            raise ValueError(f"unknown landmark backend {self.landmark_backend!r}")
        if self.uv_layout not in UV_LAYOUTS:
            raise ValueError(f"uv_layout must be one of {', '.join(UV_LAYOUTS)}, not {self.uv_layout!r}")
        if not isinstance(self.method, str) or not isinstance(self.method_options, dict):
            raise ValueError("method must be a name and method_options a mapping")
        RANGES["face_index"].check(self.face_index, "face_index")
        RANGES["focal_35mm"].check(self.focal_35mm, "focal_35mm")
        for name in ("work_res", "grid_res", "plane_res", "mc_res", "texture_size", "turntable_size"):
            if getattr(self, name) < 16:
                raise ValueError(f"{name} must be at least 16")
        if self.iterations < 0 or self.init_steps < 0 or self.rays_per_step < 64:
            raise ValueError("iterations and init_steps must be >= 0 and rays_per_step >= 64")
        if not 0.0 <= self.edge_ray_frac <= 0.5:
            raise ValueError("edge_ray_frac must be between 0 and 0.5")
        if self.max_faces < 1000:
            raise ValueError("max_faces must be at least 1000")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> BuildConfig:
        names = {f.name for f in fields(BuildConfig)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown build options: {sorted(unknown)}")
        return BuildConfig(**d)


_PRESETS = {
    "draft": dict(
        work_res=256,
        grid_res=96,
        plane_res=128,
        iterations=150,
        rays_per_step=2048,
        n_coarse=40,
        n_fine=10,
        mc_res=160,
        edge_ray_frac=0.0,
        max_faces=30000,
        texture_size=1024,
        turntable_frames=24,
        turntable_size=256,
    ),
    "standard": dict(),
    "high": dict(
        work_res=768,
        grid_res=192,
        plane_res=384,
        iterations=1500,
        rays_per_step=8192,
        n_coarse=64,
        n_fine=16,
        mc_res=320,
        texture_size=4096,
        turntable_frames=72,
        turntable_size=512,
    ),
}


TINY_OVERRIDES: dict = {
    "iterations": 10,
    "init_steps": 5,
    "grid_res": 48,
    "plane_res": 32,
    "mc_res": 64,
    "texture_size": 256,
    "turntable_frames": 8,
    "turntable_size": 64,
    "work_res": 128,
    "max_faces": 2000,
    "rays_per_step": 512,
}
"""Overrides of the draft preset that run every stage in seconds on two CPU cores: for tests, smoke runs and
benchmarks of everything around a build (the numbers a tiny build scores mean nothing)."""


def preset(quality: Quality = "standard", **overrides) -> BuildConfig:
    """The config of a named preset with ``overrides`` applied."""
    if quality not in _PRESETS:
        raise ValueError(f"quality must be one of {QUALITIES}, not {quality!r}")
    return replace(BuildConfig(quality=quality, **_PRESETS[quality]), **overrides)
