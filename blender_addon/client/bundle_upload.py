"""A bundle folder sent to an engine that did not build it (``POST /v1/avatars``): its manifest, its radiance field
and what expression renders read (landmarks, the photo's expression, the asset's keys), as one multipart body
streamed from the files, never read whole into memory. Stdlib only (no bpy, no engine import)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..bundle import BundleInvalid, bundle_file, bundle_path, read_json
from .errors import BadInput, EngineError

UPLOAD_KEYS = ("field", "landmarks", "expression")
"""The manifest keys sent besides ``manifest.json`` (``field`` required, the others when the bundle has them)."""
ASSET_KEY = "asset_glb"
"""The asset GLB, sent too when the engine says it takes one (its health's ``max_asset_bytes``)."""
DEFAULT_MAX_FIELD_BYTES = 256 * 2**20
"""The engine's default cap on a field (its ``LIKENESS_MAX_FIELD_BYTES``), for an engine whose health says none."""
CHUNK_BYTES = 1 << 20


class FieldMissing(BadInput):
    """The bundle folder has no radiance field to send (a bundle downloaded from an engine leaves it out)."""

    code = "no_field"


def _label(folder: Path) -> str:
    return f"the bundle folder {folder.name!r}"


def upload_parts(bundle_dir: str | os.PathLike, max_asset_bytes: int = 0) -> list[tuple[str, Path]]:
    """(form part name, file) of what to send for ``bundle_dir``: ``manifest`` and ``field`` always, ``landmarks``
    and ``expression`` when listed and present, ``asset_glb`` (whose keys drive the field under the asset rig) when
    listed, present and at most ``max_asset_bytes`` (0: an engine that takes no asset, so none is sent; a larger
    asset is left out and the engine renders expressions on the proxy rig). :class:`FieldMissing` when there is no
    field; :class:`BadInput` when the folder is not a bundle or names a file outside itself."""
    folder = Path(bundle_dir).expanduser()
    try:
        manifest_file = bundle_path(folder, "manifest.json", "manifest.json")
        manifest = read_json(manifest_file)
        if not isinstance(manifest, dict):
            raise BundleInvalid(f"{_label(folder)} holds a manifest.json that is not a JSON object")
        files = {key: bundle_file(folder, manifest, key, required=False) for key in UPLOAD_KEYS}
        asset = bundle_file(folder, manifest, ASSET_KEY, required=False) if max_asset_bytes > 0 else None
    except BundleInvalid as exc:
        raise BadInput(str(exc), "import the bundle again from a complete bundle folder") from exc
    if files["field"] is None:
        raise FieldMissing(
            f"{_label(folder)} has no radiance field (field.safetensors), so an engine that did not build the avatar "
            "cannot render it; a bundle downloaded from an engine leaves the field out",
            "connect to the engine that built the avatar, or copy field.safetensors from the bundle folder "
            f"likeness wrote into {folder}",
        )
    if asset is not None and asset.is_file() and asset.stat().st_size <= max_asset_bytes:
        files[ASSET_KEY] = asset
    return [("manifest", manifest_file)] + [(key, path) for key, path in files.items() if path is not None]


def check_field_size(parts: list[tuple[str, Path]], max_field_bytes: int, where: str) -> None:
    """:class:`BadInput` (``payload_too_large``) before anything is sent when the field is over the engine's cap."""
    field = dict(parts)["field"]
    size = field.stat().st_size
    if size > max_field_bytes:
        raise BadInput(
            f"the avatar's field.safetensors is {size / 2**20:.0f} MiB; the engine at {where} accepts fields of at "
            f"most {max_field_bytes / 2**20:.0f} MiB",
            f"start that engine with LIKENESS_MAX_FIELD_BYTES={size} or more, or render with the engine that built it",
            code="payload_too_large",
        )


def multipart_stream(parts: list[tuple[str, Path]], boundary: str) -> tuple[Iterator[bytes], int]:
    """The multipart body of ``parts`` as an iterator of chunks (files read ``CHUNK_BYTES`` at a time) and its
    exact length in bytes (sent as Content-Length, so the engine can refuse an oversized body at once)."""
    sized = []
    for name, path in parts:
        filename = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        sized.append((head, path, path.stat().st_size))
    tail = f"--{boundary}--\r\n".encode()
    length = sum(len(head) + size + 2 for head, _, size in sized) + len(tail)

    def chunks() -> Iterator[bytes]:
        for head, path, size in sized:
            yield head
            with open(path, "rb") as fh:
                left = size
                while left:
                    chunk = fh.read(min(CHUNK_BYTES, left))
                    if not chunk:
                        raise EngineError(f"{path.name} got shorter while it was being sent", "try again")
                    left -= len(chunk)
                    yield chunk
            yield b"\r\n"
        yield tail

    return chunks(), length
