"""Load a user's photo safely: sniff the format, enforce size limits, apply EXIF orientation, read the focal."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from engine.errors import ImageTooLarge, ImageTooSmall, NotAnImage, UnreadableImage

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 60_000_000
MIN_SIDE = 96

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


def load_photo_bytes(data: bytes, name: str = "photo") -> Photo:
    """Decode ``data`` into a :class:`Photo`, refusing anything unsafe or unusable with a specific error."""
    if len(data) > MAX_FILE_BYTES:
        raise ImageTooLarge(f"{name} is {len(data) / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB")
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
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageTooLarge(f"{name} has {w * h / 1e6:.0f} megapixels; the limit is {MAX_PIXELS // 10**6}")
            focal = _exif_focal_35mm(img)
            img.load()
            img = ImageOps.exif_transpose(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(
            f"{name} is too large to decode safely (more than {MAX_PIXELS // 10**6} megapixels)"
        ) from exc
    except ImageTooLarge:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"{name} could not be decoded (truncated or corrupt {fmt} file)") from exc
    if min(img.size) < MIN_SIDE:
        raise ImageTooSmall(f"{name} is {img.size[0]}x{img.size[1]} pixels; it needs at least {MIN_SIDE} on each side")
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    return Photo(rgb=rgb, format=fmt, sha256=hashlib.sha256(data).hexdigest(), n_bytes=len(data), focal_35mm=focal)


def load_photo(path: str | os.PathLike) -> Photo:
    """Read and decode the photo at ``path`` (see :func:`load_photo_bytes`)."""
    path = os.fspath(path)
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise ImageTooLarge(f"{name} is {size / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB")
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError as exc:
        raise UnreadableImage(f"{name}: no such file") from exc
    except IsADirectoryError as exc:
        raise UnreadableImage(f"{name} is a folder, not an image") from exc
    except PermissionError as exc:
        raise UnreadableImage(f"{name} cannot be read (permission denied)") from exc
    return load_photo_bytes(data, name)


def demo_photo() -> Photo:
    """The bundled demo portrait: ``skimage.data.astronaut()`` (public domain, NASA)."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG")
    return load_photo_bytes(buf.getvalue(), "astronaut.png")
