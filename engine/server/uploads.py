"""A build upload, in memory: parse the multipart body (one image + an options JSON field), sniff the format from
the bytes and read only the image header to enforce the pixel limit. Pixels are decoded later, in the worker."""

from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, parse_options_header

from engine.errors import ImageTooLarge, NotAnImage, UnreadableImage
from engine.io.images import MAX_PIXELS, check_size, sniff_format
from engine.server.errors import ApiError

MAX_PARTS = 4
MAX_OPTIONS_BYTES = 4096


@dataclass(frozen=True)
class Upload:
    image: bytes
    filename: str
    options: dict


@dataclass
class _Part:
    headers: dict
    data: bytearray


def _bad(message: str, hint: str = "send multipart/form-data with a 'file' part and an optional 'options' part"):
    return ApiError(422, "invalid_upload", message, hint)


def safe_name(name: str) -> str:
    """The client's file name reduced to a harmless label: last path component, printable, at most 100 chars."""
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:100] or "photo"


def parse_upload(body: bytes, content_type: str, max_image_bytes: int) -> Upload:
    """Split a multipart body into the image and the options object; every violation is an ApiError."""
    ctype, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary or len(boundary) > 200:
        raise ApiError(
            415, "unsupported_media_type", "the upload must be multipart/form-data", "send the photo as a form file"
        )
    parts: list[_Part] = []
    state = {"field": b"", "value": b""}

    def on_part_begin():
        if len(parts) >= MAX_PARTS:
            raise _bad("too many form parts")
        parts.append(_Part({}, bytearray()))

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        parts[-1].headers[state["field"].decode("latin-1").lower()] = state["value"].decode("latin-1")
        state["field"], state["value"] = b"", b""

    def on_part_data(data, start, end):
        parts[-1].data += data[start:end]

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure is the client's malformed body
        raise _bad("the multipart body could not be parsed") from exc

    files, options = [], None
    for part in parts:
        try:
            _, disp = parse_options_header(part.headers.get("content-disposition", ""))
        except ValueError as exc:  # UnicodeError included
            raise _bad("a form part has a malformed Content-Disposition") from exc
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        if name == "file":
            files.append((safe_name(disp.get(b"filename", b"photo").decode("utf-8", "replace")), bytes(part.data)))
        elif name == "options":
            if options is not None or len(part.data) > MAX_OPTIONS_BYTES:
                raise _bad("send one small 'options' field")
            options = bytes(part.data)
        else:
            raise _bad("unexpected form field: only 'file' and 'options' are accepted")
    if len(files) != 1:
        raise _bad("send exactly one image in the 'file' field")
    filename, image = files[0]
    if len(image) > max_image_bytes:
        raise ApiError(
            413, "payload_too_large", f"the image is larger than {max_image_bytes // 2**20} MiB", "send a smaller photo"
        )
    try:
        opts = json.loads(options.decode("utf-8")) if options and options.strip() else {}
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
        raise ApiError(422, "invalid_options", "options is not valid JSON", 'e.g. {"quality": "draft"}') from exc
    if not isinstance(opts, dict):
        raise ApiError(422, "invalid_options", "options must be a JSON object", 'e.g. {"quality": "draft"}')
    return Upload(image=image, filename=filename, options=opts)


def probe_image(data: bytes, name: str) -> str:
    """The sniffed format of ``data`` after checking its header: allowed format, pixel limit (a decompression
    bomb is an error, not a warning), minimum size. Raises engine InputErrors; decodes no pixels."""
    from PIL import Image

    fmt = sniff_format(data[:32])
    if fmt is None:
        raise NotAnImage(f"{name} is not an image Likeness can read", "use a JPEG, PNG, WebP or HEIC photo")
    if fmt == "heic":
        import pillow_heif

        pillow_heif.register_heif_opener()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with Image.open(io.BytesIO(data), formats=None) as img:
                w, h = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(
            f"{name} is too large to decode safely (more than {MAX_PIXELS // 10**6} megapixels)",
            "scale the photo down or crop it around the face",
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(
            f"{name} could not be read (truncated or corrupt {fmt} file)",
            "open it in an image viewer and save it again as JPEG or PNG",
        ) from exc
    check_size(name, w, h)
    return fmt
