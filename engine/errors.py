"""Domain errors. Raised deep, translated once at the edge (CLI exit code, HTTP status, Blender report)."""

from __future__ import annotations

import sys


class LikenessError(Exception):
    """Base error: ``code`` is stable and machine-readable, ``hint`` tells the user what to do."""

    code = "internal"
    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message}" + (f" ({self.hint})" if self.hint else "")


class InputError(LikenessError):
    """The user's input cannot be used (exit code 2)."""

    code = "bad_input"
    exit_code = 2


class NotAnImage(InputError):
    code = "not_an_image"


class UnreadableImage(InputError):
    code = "unreadable_image"


class ImageTooLarge(InputError):
    code = "image_too_large"


class BadAspectRatio(InputError):
    code = "bad_aspect_ratio"


class ImageTooSmall(InputError):
    code = "image_too_small"


class NoFaceFound(InputError):
    code = "no_face"


class FaceTooSmall(InputError):
    code = "face_too_small"


class FaceIndexError(InputError):
    code = "bad_face_index"


class BundleError(InputError):
    """An avatar bundle is missing, incomplete or of an unknown format."""

    code = "bad_bundle"


class OutputRefused(InputError):
    """The output path holds something that is not a Likeness bundle, or cannot be written (nothing is touched)."""

    code = "bad_output"


class DeviceUnavailable(LikenessError):
    code = "no_gpu"
    exit_code = 2


class Cancelled(LikenessError):
    code = "cancelled"
    exit_code = 130


class OutOfMemory(LikenessError):
    code = "out_of_memory"
    exit_code = 3


class BackendUnavailable(LikenessError):
    """An optional backend (weights or package) is missing or unusable. Callers fall back to the default when
    the backend was only preferred (``auto``) and raise this when the user asked for it (exit code 2)."""

    code = "backend_unavailable"
    exit_code = 2


def classify(
    exc: BaseException, device: str = "cpu", internal_hint: str = "see the server log", what: str = "the build"
) -> LikenessError:
    """Any exception as a domain error, for the edges that translate them (CLI, server, worker): a LikenessError
    as it is, out-of-memory (GPU or system, torch's or Python's) as OutOfMemory (exit code 3), the rest internal.
    ``device``: where the work ran (auto | cpu | cuda[:N]), for the message; ``internal_hint``: what the edge
    tells the user to do about a bug; ``what`` names the work in the message ("the build", "the render")."""
    if isinstance(exc, LikenessError):
        return exc
    torch = sys.modules.get("torch")  # only an exception torch raised can be torch's: never import it here
    gpu_oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    text = str(exc).lower()
    is_oom = isinstance(exc, MemoryError) or (gpu_oom is not None and isinstance(exc, gpu_oom))
    if is_oom or (isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)):
        on_gpu = device.startswith("cuda") or (gpu_oom is not None and isinstance(exc, gpu_oom))
        return OutOfMemory(
            f"{what} ran out of {'GPU' if on_gpu else 'system'} memory",
            "close other GPU programs, try quality draft, or build on a machine with more memory",
        )
    return LikenessError(f"{what} failed unexpectedly ({type(exc).__name__}: {_first_line(exc)})", internal_hint)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no message"
