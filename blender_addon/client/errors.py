"""Typed errors for the engine's HTTP API. The body ``{"error": {"code", "message", "hint"}}`` maps to a class by
``code`` (falling back on the HTTP status); ``str(error)`` is one plain-words line an artist can act on."""

from __future__ import annotations


class EngineError(Exception):
    code = "engine_error"

    def __init__(self, message: str, hint: str = "", *, code: str | None = None, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.status = status
        if code:
            self.code = code

    def __str__(self) -> str:
        return self.message + (f" ({self.hint})" if self.hint else "")


class EngineUnreachable(EngineError):
    """No engine answers at the address (not started, crashed, wrong URL, timeout)."""

    code = "engine_unreachable"


class EngineIncompatible(EngineError):
    """The engine speaks another API version than this add-on."""

    code = "incompatible_api"


class Unauthorized(EngineError):
    code = "unauthorized"


class NotFound(EngineError):
    code = "not_found"


class BadInput(EngineError):
    """The engine refused the input (not an image, no face found, face too small, too large, ...)."""

    code = "bad_input"


class DestinationRefused(EngineError):
    """The download folder holds something that is not a Likeness bundle; nothing was replaced."""

    code = "bad_output"


class JobFailed(EngineError):
    code = "job_failed"


class Cancelled(EngineError):
    code = "cancelled"


_BY_STATUS = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    400: BadInput,
    413: BadInput,
    415: BadInput,
    422: BadInput,
}
_BY_CODE = {"unauthorized": Unauthorized, "forbidden": Unauthorized, "not_found": NotFound, "cancelled": Cancelled}


def error_from_body(status: int, body: dict | None, fallback: str) -> EngineError:
    """The typed error for an HTTP error answer (``body`` is the decoded JSON, or None)."""
    err = (body or {}).get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = {}
    code = str(err.get("code") or "")
    message = str(err.get("message") or fallback)
    hint = str(err.get("hint") or "")
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or EngineError
    if cls is EngineError and 400 <= status < 500:
        cls = BadInput
    return cls(message, hint, code=code or None, status=status)


def error_from_job(job_error) -> EngineError:
    """A failed job's ``error`` field (``{"code", "message", "hint"}`` or a string) as a typed error."""
    if isinstance(job_error, dict):
        code = str(job_error.get("code") or "job_failed")
        cls = _BY_CODE.get(code, JobFailed)
        return cls(str(job_error.get("message") or "the build failed"), str(job_error.get("hint") or ""), code=code)
    return JobFailed(str(job_error or "the build failed"))
