"""Load a user's photo safely: sniff the format, enforce size limits, apply EXIF orientation, read the focal."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from engine.errors import BadAspectRatio, ImageTooLarge, ImageTooSmall, NotAnImage, UnreadableImage

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 60_000_000
MIN_SIDE = 96
MAX_ASPECT = 8.0
"""Longest side / shortest side. Past it a photo is a strip or a panorama: native image code (OpenCV's remap
takes sides under 32 767 px) and the face detector are not handed it."""

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
)


def sniff_format(head: bytes) -> str | None:
    """The image format from the first bytes, or None: jpeg | png | webp | heic."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif"):
        return "heic" if head[8:12] != b"avif" else None
    return None


@dataclass(frozen=True)
class Photo:
    """An RGB photo, upright, as uint8 (H, W, 3), with what the file said about its camera."""

    rgb: np.ndarray
    format: str
    sha256: str
    n_bytes: int
    focal_35mm: float | None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def _exif_focal_35mm(img: Image.Image) -> float | None:
    try:
        exif = img.getexif()
        sub = exif.get_ifd(0x8769)
    except Exception:  # noqa: BLE001 - broken EXIF is common and never fatal
        return None
    value = sub.get(0xA405) or exif.get(0xA405)  # FocalLengthIn35mmFilm
    try:
        value = float(value) if value else None
    except (TypeError, ValueError):
        return None
    return value if value and 8.0 <= value <= 1200.0 else None


def check_size(name: str, w: int, h: int) -> None:
    """Refuse a photo of ``w`` x ``h`` pixels that is too large, too small or too long and thin (one line)."""
    if w * h > MAX_PIXELS:
        raise ImageTooLarge(
            f"{name} has {w * h / 1e6:.0f} megapixels; the limit is {MAX_PIXELS // 10**6}",
            "scale the photo down or crop it around the face",
        )
    if min(w, h) < MIN_SIDE:
        raise ImageTooSmall(
            f"{name} is {w}x{h} pixels; it needs at least {MIN_SIDE} on each side", "use a larger photo of the face"
        )
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise BadAspectRatio(
            f"{name} is {w}x{h} pixels, {max(w, h) / min(w, h):.0f} times longer than it is wide; Likeness takes "
            f"photos up to {MAX_ASPECT:.0f}:1",
            "crop the photo around the face",
        )


def _rgb_u8(img: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8. 16-bit and 32-bit integer greys are scaled to 8 bits (Pillow's own conversion clips them
    at 255, which turns a 16-bit portrait white)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = np.asarray(img).astype(np.float64)
        top = 65535.0 if img.mode != "I" or grey.max(initial=0) <= 65535 else float(grey.max())
        grey = np.clip(np.round(grey * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def load_photo_bytes(data: bytes, name: str = "photo") -> Photo:
    """Decode ``data`` into a :class:`Photo`, refusing anything unsafe or unusable with a specific error."""
    if len(data) > MAX_FILE_BYTES:
        raise ImageTooLarge(
            f"{name} is {len(data) / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB",
            "save it as a JPEG of at most 50 MB",
        )
    fmt = sniff_format(data[:32])
    if fmt is None:
        raise NotAnImage(f"{name} is not an image Likeness can read", "use a JPEG, PNG, WebP or HEIC photo")
    if fmt == "heic":
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
        except ImportError as exc:  # pragma: no cover - pillow-heif is a dependency
            raise NotAnImage(f"{name} is HEIC but pillow-heif is not installed", "pip install pillow-heif") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            img = Image.open(io.BytesIO(data))
            check_size(name, *img.size)
            focal = _exif_focal_35mm(img)
            img.load()
            img = ImageOps.exif_transpose(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(
            f"{name} is too large to decode safely (more than {MAX_PIXELS // 10**6} megapixels)",
            "scale the photo down or crop it around the face",
        ) from exc
    except (ImageTooLarge, ImageTooSmall, BadAspectRatio):
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(
            f"{name} could not be decoded (truncated or corrupt {fmt} file)",
            "open it in an image viewer and save it again as JPEG or PNG",
        ) from exc
    check_size(name, *img.size)  # again: EXIF orientation may have turned it
    rgb = _rgb_u8(img)
    return Photo(rgb=rgb, format=fmt, sha256=hashlib.sha256(data).hexdigest(), n_bytes=len(data), focal_35mm=focal)


def load_photo(path: str | os.PathLike, name: str | None = None) -> Photo:
    """Read and decode the photo at ``path`` (see :func:`load_photo_bytes`); errors call it ``name`` (default: the
    file's name)."""
    path = os.fspath(path)
    name = name or os.path.basename(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise ImageTooLarge(
                f"{name} is {size / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB",
                "save it as a JPEG of at most 50 MB",
            )
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError as exc:
        raise UnreadableImage(f"{name}: no such file", "check the path") from exc
    except IsADirectoryError as exc:
        raise UnreadableImage(f"{name} is a folder, not an image", "give the path of one photo") from exc
    except PermissionError as exc:
        raise UnreadableImage(f"{name} cannot be read (permission denied)", "check the file's permissions") from exc
    return load_photo_bytes(data, name)


def demo_photo() -> Photo:
    """The bundled demo portrait: ``skimage.data.astronaut()`` (public domain, NASA)."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG")
    return load_photo_bytes(buf.getvalue(), "astronaut.png")
