"""Wire types of API v1 (pydantic). The OpenAPI document at /v1/openapi.json is generated from these."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.config import DEFAULT_METHOD, RANGES, Quality, UvLayout, preset
from engine.server.jobs import Job

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class ErrorInfo(BaseModel):
    code: str = Field(description="stable, machine-readable, e.g. not_an_image, out_of_memory, cancelled")
    message: str
    hint: str = ""


class ErrorEnvelope(BaseModel):
    error: ErrorInfo


class BuildOptions(BaseModel):
    """The ``options`` form field of POST /v1/builds (a JSON object); omitted keys take these defaults."""

    model_config = ConfigDict(extra="forbid")

    quality: Quality = "standard"
    method: str = Field(
        DEFAULT_METHOD,
        description="fitting method: head-prior (default: the full-head prior; the proxy alone where "
        "it is not prepared) | proxy-init | random-init",
    )
    face_index: int = Field(0, description=f"which face, largest first: {RANGES['face_index'].describe()}")
    focal_35mm: float = Field(0.0, description=f"35 mm-equivalent focal length: {RANGES['focal_35mm'].describe()}")
    uv_layout: UvLayout = Field(
        "shared", description="the artist asset's UVs: shared (one layout for every head) | subject (relaxed on it)"
    )

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        from engine.fit import method_names

        if v not in method_names():
            raise ValueError(f"unknown fitting method {v!r}; choose one of: {', '.join(method_names())}")
        return v

    @field_validator("face_index", "focal_35mm", mode="before")
    @classmethod
    def _in_range(cls, v, info):
        """The CLI's ranges (engine.config.RANGES), so both edges accept and refuse the same values."""
        return RANGES[info.field_name].check(v, info.field_name)

    def build_config(self, device: str):
        return preset(
            self.quality,
            face_index=self.face_index,
            focal_35mm=self.focal_35mm,
            device=device,
            method=self.method,
            uv_layout=self.uv_layout,
        )


class JobOut(BaseModel):
    id: str
    state: JobState
    stage: str | None = Field(description="pipeline stage being run (analyse, proxy, init, fit, ... write)")
    progress: float = Field(ge=0.0, le=1.0)
    eta_s: float | None = Field(description="estimated seconds left while running, else null")
    avatar_id: str | None = Field(description="set once the job succeeded")
    error: ErrorInfo | None
    warnings: list[str] = Field(
        default_factory=list, description="what the build wants the user to know, e.g. several faces in the photo"
    )
    created: str = Field(description="ISO 8601, UTC")
    updated: str = Field(description="ISO 8601, UTC")

    @staticmethod
    def of(job: Job) -> JobOut:
        err = None
        if job.error_code:
            err = ErrorInfo(code=job.error_code, message=job.error_message or "", hint=job.error_hint or "")
        elif job.state == "cancelled":
            err = ErrorInfo(code="cancelled", message="the build was cancelled", hint="submit it again to rebuild")
        return JobOut(
            id=job.id,
            state=job.state,
            stage=job.stage,
            progress=round(min(max(job.progress, 0.0), 1.0), 4),
            eta_s=None if job.eta_s is None else round(job.eta_s, 1),
            avatar_id=job.avatar_id,
            error=err,
            warnings=json.loads(job.warnings) if job.warnings else [],
            created=iso(job.created),
            updated=iso(job.updated),
        )


class JobEnvelope(BaseModel):
    job: JobOut


class Health(BaseModel):
    engine_version: str
    api_version: int
    device: str = Field(description="build device(s), e.g. cpu or cuda:0")
    queue_length: int = Field(description="jobs waiting")
    busy: bool = Field(description="a build is running")
    max_field_bytes: int = Field(description="largest field.safetensors POST /v1/avatars accepts, bytes")
    max_asset_bytes: int = Field(
        default=0, description="largest asset/head.glb POST /v1/avatars accepts (its asset_glb part), bytes"
    )


class AvatarSummary(BaseModel):
    id: str
    created: str
    input_name: str
    quality: str
    metrics: dict


class AvatarEnvelope(BaseModel):
    """The answer of POST /v1/avatars: the imported avatar (201 when stored now, 200 when it already was)."""

    avatar: AvatarSummary


class AvatarList(BaseModel):
    avatars: list[AvatarSummary]


class SkippedAvatar(BaseModel):
    """A folder in avatars/ that is not listed because its bundle cannot be used."""

    id: str
    code: str = Field(description="always bad_bundle")
    message: str = Field(description="one line: what is wrong with it (paths scrubbed)")
    hint: str = ""


class AvatarListing(AvatarList):
    """``avatars`` as before, plus the folders left out (an empty list when every bundle is fine)."""

    skipped: list[SkippedAvatar] = Field(default_factory=list)


class IntrinsicsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    fx: float = Field(gt=0.0, le=1e6, description="pixels")
    fy: float = Field(gt=0.0, le=1e6, description="pixels")
    cx: float = Field(ge=-1e6, le=1e6, description="pixels, from the top-left image corner")
    cy: float = Field(ge=-1e6, le=1e6, description="pixels, from the top-left image corner")
    width: int = Field(ge=RANGES["render_side_px"].lo, le=RANGES["render_side_px"].hi, description="pixels")
    height: int = Field(ge=RANGES["render_side_px"].lo, le=RANGES["render_side_px"].hi, description="pixels")


class RenderRequest(BaseModel):
    """A camera in the engine's conventions: ``cam2world`` maps OpenGL/Blender camera axes (+X right, +Y up,
    looking down -Z) to the avatar's world (metres, +Y up, face toward +Z)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    cam2world: list[list[float]] = Field(min_length=4, max_length=4, description="4x4 row-major, last row 0 0 0 1")
    intrinsics: IntrinsicsIn
    expression: dict[str, float] | None = Field(
        default=None,
        max_length=64,
        description="ARKit-52 blendshape weights 0..1, e.g. {jawOpen: 0.8}; names left out are 0, so {} is the "
        "neutral face. Absent or null: the face as photographed (the field as fitted, no expression warp)",
    )
    rig: Literal["auto", "proxy", "asset"] = Field(
        default="auto",
        description="whose shapes move the field under 'expression': asset (the asset's template keys, so the render "
        "moves as asset/head.glb does), proxy (the bundle's own rig), auto (asset when the avatar has one, else "
        "proxy). Ignored without an expression or turned eye bones",
    )
    pose: dict[Literal["neck", "head", "eye_L", "eye_R"], list[list[float]]] | None = Field(
        default=None,
        description="the asset armature's neck, head and eye bones, each a 4x4 row-major rigid transform rest -> "
        "posed in the avatar's world (a glTF skin's joint matrix times its inverse bind matrix; the head's includes "
        "the neck's, an eye's the head's); the field follows the neck and head as the asset's skin does (docs/RIG.md "
        "'Head rotation'). An eye bone that turns from the head's direction (at most 50 degrees) is the eyeball's "
        "whole gaze, in place of the eyeLook keys' eyeball motion (the lids keep the keys'); it needs rig 'asset' "
        "(or 'auto' on an avatar with an asset). Absent: the rest pose",
    )
    output: Literal["png", "depth_exr"] = "png"

    @field_validator("pose")
    @classmethod
    def _pose(cls, pose):
        from engine.errors import InputError
        from engine.rig.pose import check_pose

        try:
            check_pose(pose)
        except InputError as exc:
            raise ValueError(exc.message) from exc
        return pose

    @field_validator("cam2world")
    @classmethod
    def _matrix(cls, m: list[list[float]]) -> list[list[float]]:
        if any(len(row) != 4 for row in m):
            raise ValueError("cam2world must be 4x4")
        if any(abs(v) > 1e4 for row in m for v in row):
            raise ValueError("cam2world has values beyond 10 km")
        if max(abs(a - b) for a, b in zip(m[3], (0.0, 0.0, 0.0, 1.0), strict=True)) > 1e-6:
            raise ValueError("the last row of cam2world must be 0 0 0 1")
        cols = [[m[r][c] for r in range(3)] for c in range(3)]
        for i in range(3):
            for j in range(3):
                dot = sum(a * b for a, b in zip(cols[i], cols[j], strict=True))
                if abs(dot - (1.0 if i == j else 0.0)) > 2e-3:
                    raise ValueError("the rotation of cam2world must be orthonormal (no scale or shear)")
        (a, b, c), (d, e, f), (g, h, k) = (row[:3] for row in m[:3])
        if a * (e * k - f * h) - b * (d * k - f * g) + c * (d * h - e * g) <= 0.0:
            raise ValueError("the rotation of cam2world must be right-handed")
        return m

    @field_validator("expression")
    @classmethod
    def _weights(cls, w: dict[str, float] | None) -> dict[str, float] | None:
        for name, v in (w or {}).items():
            if not (1 <= len(name) <= 64 and name.replace("_", "").isalnum() and name.isascii()):
                raise ValueError("expression names are ARKit blendshape names such as jawOpen")
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"the weight of {name} must be between 0 and 1")
        return w


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
