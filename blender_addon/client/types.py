"""Wire types of the engine API v1, as frozen dataclasses built from its JSON (unknown keys are ignored)."""

from __future__ import annotations

from dataclasses import dataclass, field

API_VERSION = 1
QUALITIES = ("draft", "standard", "high")
UV_LAYOUTS = ("shared", "subject")
TERMINAL_STATES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Health:
    engine_version: str
    api_version: int
    device: str
    queue_length: int = 0
    busy: bool = False
    max_field_bytes: int = 0
    """The largest field.safetensors the engine imports (0: an engine that does not say)."""
    max_asset_bytes: int = 0
    """The largest asset/head.glb the engine imports (0: an engine that takes none)."""

    @staticmethod
    def from_dict(d: dict) -> Health:
        return Health(
            engine_version=str(d.get("engine_version", "?")),
            api_version=int(d.get("api_version", 0)),
            device=str(d.get("device", "?")),
            queue_length=int(d.get("queue_length") or 0),
            busy=bool(d.get("busy", False)),
            max_field_bytes=int(d.get("max_field_bytes") or 0),
            max_asset_bytes=int(d.get("max_asset_bytes") or 0),
        )


@dataclass(frozen=True)
class BuildOptions:
    """What ``POST /v1/builds`` takes besides the photo. ``focal_35mm`` 0 = EXIF or the engine's default."""

    quality: str = "standard"
    face_index: int = 0
    focal_35mm: float = 0.0
    uv_layout: str = "shared"
    """The artist asset's UVs: shared (one layout for every head) | subject (relaxed on this head)."""

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise ValueError(f"quality must be one of {', '.join(QUALITIES)}")
        if self.uv_layout not in UV_LAYOUTS:
            raise ValueError(f"uv_layout must be one of {', '.join(UV_LAYOUTS)}")
        if self.face_index < 0:
            raise ValueError("face_index must be >= 0")
        if self.focal_35mm < 0:
            raise ValueError("focal_35mm must be >= 0")

    def to_dict(self) -> dict:
        d = {"quality": self.quality, "face_index": self.face_index}
        if self.focal_35mm > 0:
            d["focal_35mm"] = self.focal_35mm
        if self.uv_layout != "shared":  # sent only when asked: an engine before the option refuses unknown keys
            d["uv_layout"] = self.uv_layout
        return d


@dataclass(frozen=True)
class Job:
    id: str
    state: str
    stage: str = ""
    progress: float = 0.0
    eta_s: float | None = None
    avatar_id: str | None = None
    error: dict | str | None = None
    warnings: tuple[str, ...] = ()
    created: str = ""
    updated: str = ""

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @staticmethod
    def from_dict(d: dict) -> Job:
        eta = d.get("eta_s")
        return Job(
            id=str(d["id"]),
            state=str(d.get("state", "queued")),
            stage=str(d.get("stage") or ""),
            progress=float(d.get("progress") or 0.0),
            eta_s=None if eta is None else float(eta),
            avatar_id=d.get("avatar_id"),
            error=d.get("error"),
            warnings=tuple(str(w) for w in d.get("warnings") or () if isinstance(d.get("warnings"), list)),
            created=str(d.get("created") or ""),
            updated=str(d.get("updated") or ""),
        )


@dataclass(frozen=True)
class AvatarSummary:
    id: str
    created: str = ""
    input_name: str = ""
    quality: str = ""
    metrics: dict = field(default_factory=dict)

    @staticmethod
    def from_dict(d: dict) -> AvatarSummary:
        return AvatarSummary(
            id=str(d["id"]),
            created=str(d.get("created") or ""),
            input_name=str(d.get("input_name") or ""),
            quality=str(d.get("quality") or ""),
            metrics=dict(d.get("metrics") or {}),
        )


def format_eta(eta_s: float | None) -> str:
    """``eta_s`` seconds as a short human string: '', '45 s', '3 min'."""
    if eta_s is None or eta_s < 0:
        return ""
    if eta_s < 90:
        return f"{eta_s:.0f} s"
    return f"{eta_s / 60:.0f} min"
