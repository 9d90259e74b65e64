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


class ApiError(Exception):
    """An error response: status + ``{"error": {"code", "message", "hint"}}``."""

    def __init__(self, status: int, code: str, message: str, hint: str = "", headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
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
