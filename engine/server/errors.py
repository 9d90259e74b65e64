"""Errors at the HTTP edge: ApiError, the one mapping from engine errors to status codes, and path scrubbing."""

from __future__ import annotations

import re

from engine.errors import (
    BackendUnavailable,
    BundleError,
    Cancelled,
    DeviceUnavailable,
    InputError,
    LikenessError,
    OutOfMemory,
)

DEFAULT_HINTS = {
    "bad_input": "check the photo and the options against docs/API.md",
    "not_an_image": "use a JPEG, PNG, WebP or HEIC photo",
    "unreadable_image": "re-save the photo as an ordinary JPEG or PNG and submit that",
    "image_too_large": "scale the photo down (at most 60 megapixels and 50 MB) or crop it around the face",
    "image_too_small": "use a larger photo, at least 96 pixels on each side",
    "bad_aspect_ratio": "crop the photo around the face",
    "no_face": "use a photo in which one face is clearly visible and not covered",
    "face_too_small": "crop the photo closer around the face, or use a higher-resolution photo",
    "bad_face_index": "pass a face_index below the number of faces in the photo (0 is the largest)",
    "bad_bundle": "build the avatar again",
    "bad_field": "send the bundle's field.safetensors unchanged, as likeness build wrote it",
    "unsupported_bundle_version": "upgrade the engine to the Likeness that wrote the bundle",
    "invalid_upload": "see POST /v1/builds and POST /v1/avatars in docs/API.md",
    "insufficient_storage": "free disk space on the engine's machine",
    "bad_output": "choose another output folder",
    "no_gpu": "build on the CPU, or run the server on a machine with a CUDA GPU",
    "cancelled": "submit it again to rebuild",
    "out_of_memory": "retry with quality draft or a smaller image, or when fewer jobs are running",
    "backend_unavailable": "use landmark_backend auto or mediapipe, or put the face-alignment weights on the server",
    "internal": "see the server log",
    "not_found": "check the id or route against GET /v1/avatars and /v1/openapi.json",
    "method_not_allowed": "see /v1/openapi.json for the methods each route takes",
    "bad_request": "send a well-formed HTTP/1.1 request",
    "payload_too_large": "send a smaller body",
    "request_timeout": "send the whole request without pausing; check the network, or retry",
    "busy": "retry in a few seconds",
}
"""The hint of an error whose raiser gave none, by code: every error the API sends carries a hint."""
GENERIC_HINT = "see the error codes in docs/API.md"


def hint_for(code: str, hint: str = "") -> str:
    """``hint``, or the default hint of ``code`` when it is empty (never empty)."""
    return hint or DEFAULT_HINTS.get(code, GENERIC_HINT)


class ApiError(Exception):
    """An error response: status + ``{"error": {"code", "message", "hint"}}``; an empty hint is filled by code."""

    def __init__(self, status: int, code: str, message: str, hint: str = "", headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint_for(code, hint)
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "hint": self.hint}}


_PATH_RE = re.compile(r"(?<![\w.:/])(?:[A-Za-z]:\\|\\\\|/)(?:[^\s'\"()\[\]{}:;,]+[/\\])+([^\s'\"()\[\]{}:;,/\\]*)")


def scrub(text: str) -> str:
    """Replace absolute file paths in ``text`` by their last component (no paths or user names leak out)."""
    return _PATH_RE.sub(lambda m: m.group(1) or "<folder>", text)


def status_of(exc: LikenessError) -> int:
    if isinstance(exc, BundleError):
        return 404
    if isinstance(exc, InputError):
        return 422
    if isinstance(exc, Cancelled):
        return 409
    if isinstance(exc, OutOfMemory | DeviceUnavailable | BackendUnavailable):
        return 503
    return 500


def from_domain(exc: LikenessError) -> ApiError:
    """The one translation of an engine error into an HTTP error."""
    return ApiError(status_of(exc), exc.code, scrub(exc.message), scrub(exc.hint))


def not_found(what: str = "avatar or file") -> ApiError:
    return ApiError(404, "not_found", f"no such {what}", "list avatars with GET /v1/avatars")
