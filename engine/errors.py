"""Domain errors. Raised deep, translated once at the edge (CLI exit code, HTTP status, Blender report)."""

from __future__ import annotations


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
