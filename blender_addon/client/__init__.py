"""The engine's HTTP API from the add-on's side: stdlib only, never imports bpy (unit-tested with plain pytest)."""

from .api import EngineClient
from .bundle_upload import FieldMissing
from .errors import (
    BadInput,
    Cancelled,
    DestinationRefused,
    EngineError,
    EngineIncompatible,
    EngineUnreachable,
    JobFailed,
    NotFound,
    Unauthorized,
)
from .local import LocalEngine
from .types import API_VERSION, QUALITIES, AvatarSummary, BuildOptions, Health, Job, format_eta

__all__ = [
    "API_VERSION",
    "QUALITIES",
    "AvatarSummary",
    "BadInput",
    "BuildOptions",
    "Cancelled",
    "DestinationRefused",
    "EngineClient",
    "EngineError",
    "EngineIncompatible",
    "EngineUnreachable",
    "FieldMissing",
    "Health",
    "Job",
    "JobFailed",
    "LocalEngine",
    "NotFound",
    "Unauthorized",
    "format_eta",
]
