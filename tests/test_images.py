"""Photo loading: formats, EXIF orientation and focal, and every refusal with its specific error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.errors import ImageTooLarge, ImageTooSmall, NotAnImage, UnreadableImage
from engine.io.images import load_photo, load_photo_bytes, sniff_format


def _encode(rgb, fmt, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,name", [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")])
def test_formats_decode(astronaut_rgb, fmt, name):
    photo = load_photo_bytes(_encode(astronaut_rgb, fmt), "x")
    assert photo.format == name
    assert photo.rgb.shape == astronaut_rgb.shape


def test_heic_decodes(astronaut_rgb):
    pillow_heif = pytest.importorskip("pillow_heif")
    heif = pillow_heif.from_bytes(mode="RGB", size=(512, 512), data=astronaut_rgb.tobytes())
    buf = io.BytesIO()
    try:
        heif.save(buf, quality=90)
    except Exception as exc:  # noqa: BLE001 - some builds ship without an HEVC encoder
        pytest.skip(f"this pillow-heif cannot encode HEIC ({exc})")
    photo = load_photo_bytes(buf.getvalue(), "x.heic")
    assert photo.format == "heic" and photo.rgb.shape == (512, 512, 3)


def test_exif_orientation_and_focal(astronaut_rgb):
    img = Image.fromarray(astronaut_rgb[:, :300])  # 512 tall, 300 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    exif.get_ifd(0x8769)[0xA405] = 85
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    photo = load_photo_bytes(buf.getvalue(), "x.jpg")
    assert photo.rgb.shape[:2] == (300, 512)
    assert photo.focal_35mm == 85.0


def test_not_an_image():
    with pytest.raises(NotAnImage, match="not an image"):
        load_photo_bytes(b"hello, this is text" * 10, "notes.txt")
    assert sniff_format(b"GIF89a....") is None


def test_truncated(astronaut_rgb):
    data = _encode(astronaut_rgb, "PNG")
    with pytest.raises(UnreadableImage, match="truncated or corrupt"):
        load_photo_bytes(data[: len(data) // 3], "cut.png")


def test_too_small():
    with pytest.raises(ImageTooSmall, match="at least"):
        load_photo_bytes(_encode(np.zeros((50, 80, 3), np.uint8), "PNG"), "tiny.png")


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb shape)."""

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb():
    with pytest.raises(ImageTooLarge, match="megapixels"):
        load_photo_bytes(_png_claiming(20000, 20000), "bomb.png")


def test_file_too_large(tmp_path):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as fh:
        fh.truncate(51 * 1024 * 1024)
    with pytest.raises(ImageTooLarge, match="MB"):
        load_photo(big)


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableImage, match="no such file"):
        load_photo(tmp_path / "nope.jpg")


def test_16_bit_grey_portrait_decodes_and_shows_its_face(astronaut_rgb):
    from engine.face.landmarks import choose_face

    grey8 = np.asarray(Image.fromarray(astronaut_rgb).convert("L"))
    grey16 = grey8.astype(np.uint16) * 257
    photo = load_photo_bytes(_encode(grey16, "PNG"), "grey16.png")
    assert photo.rgb.dtype == np.uint8 and photo.rgb.shape == (*grey8.shape, 3)
    assert np.abs(photo.rgb[..., 0].astype(int) - grey8).max() <= 1, "scaled, not clipped to white"
    face, n_faces, _ = choose_face(photo.rgb)
    assert n_faces == 1 and face.size_px > 96


@pytest.mark.parametrize("size", [(96, 40000), (34000, 1700), (1000, 120)])
def test_strips_and_panoramas_are_refused_before_decoding(size):
    from engine.errors import BadAspectRatio

    w, h = size
    data = _encode(np.zeros((h, w), np.uint8), "PNG")
    with pytest.raises(BadAspectRatio) as exc:
        load_photo_bytes(data, "strip.png")
    assert f"{w}x{h}" in exc.value.one_line() and "\n" not in exc.value.one_line() and exc.value.hint
