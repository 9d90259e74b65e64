"""A bundle imported by upload (``POST /v1/avatars``): an existing bundle's field and what rendering reads from it,
so that the engine renders avatars it did not build.

The multipart body is streamed part by part into a staging folder in ``avatars/`` (never held whole in memory),
each part capped as it arrives; the field's safetensors header is read from its first bytes (a Likeness field,
floating-point tensors whose offsets tile the data: the file's exact size is known before its data arrives).
The staged folder is then checked as any bundle is (``engine.avatar.load_avatar``: manifest, tensor names, shapes
against the manifest, finite values) and renamed into place as ``avatars/<id>``, the id taken from the parts'
contents, so uploading the same files again returns the same avatar and stores nothing. Any refusal deletes the
staging folder; what is stored already is never touched. A server killed mid-upload leaves only a staging folder,
which the next start sweeps (``Workspace.remove_all_staging``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import threading
from pathlib import Path

from fastapi.concurrency import run_in_threadpool
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from engine import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, __version__
from engine.errors import BundleError
from engine.field.store import FIELD_FORMAT, FIELD_VERSION
from engine.io import swap
from engine.io.bundle import (
    MANIFEST,
    bundle_file,
    bundle_label,
    read_json,
    read_manifest,
    short,
    shown,
    write_json_atomic,
)
from engine.io.manifest import BUNDLE_FILES, OPTIONAL_FILES
from engine.server.errors import ApiError, scrub
from engine.server.workspace import NotFound, Workspace

IMPORT_PARTS: dict[str, str] = {
    "manifest": MANIFEST,
    "field": BUNDLE_FILES["field"],
    "landmarks": BUNDLE_FILES["landmarks"],
    "expression": BUNDLE_FILES["expression"],
    "asset_glb": OPTIONAL_FILES["asset_glb"],
}
"""Form part name -> the file it becomes in the stored bundle: what rendering reads (the field; for an
``expression``, the landmarks and the photo's expression the rig is built from, and the asset GLB whose keys
drive the field under ``rig: asset``)."""
REQUIRED_PARTS = ("manifest", "field")
FLUSH_BYTES = 1 << 20
"""Body bytes gathered before they are handed to the part writer (on a worker thread, off the event loop)."""
ID_SALT = b"likeness-import-v1\n"
MAX_SAFETENSORS_HEADER = 100 << 20
"""safetensors' own limit on the JSON header."""
FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
PARTS_HINT = (
    "send multipart/form-data with the bundle's manifest and field parts (and landmarks, expression, asset_glb)"
)
ASSET_HINT = "send the bundle's asset/head.glb unchanged, as `likeness build` wrote it, or leave it out"
FIELD_HINT = "send the bundle's field.safetensors unchanged, as `likeness build` wrote it"


def _bad(message: str, hint: str = PARTS_HINT) -> ApiError:
    return ApiError(422, "invalid_upload", message, hint)


def _bad_field(message: str, hint: str = FIELD_HINT) -> ApiError:
    return ApiError(422, "bad_field", f"field.safetensors {message}", hint)


def boundary_of(content_type: str) -> bytes:
    """The multipart boundary of a Content-Type header, else 415."""
    ctype, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary or len(boundary) > 200:
        raise ApiError(415, "unsupported_media_type", "the upload must be multipart/form-data", PARTS_HINT)
    return boundary


def field_file_size(header: bytes) -> int:
    """The size in bytes a safetensors file whose JSON header is ``header`` must have (8 + header + data), after
    checking it is a Likeness field: metadata format and version, every tensor floating point with a well-formed
    shape and byte offsets that tile the data. 422 ``bad_field`` otherwise. (Names and shapes against the manifest
    are :func:`engine.avatar.load_field`'s, once the whole file is there.)"""
    try:
        doc = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad_field("is not a safetensors file (its header is not JSON)") from exc
    if not isinstance(doc, dict):
        raise _bad_field("is not a safetensors file (its header is not a JSON object)")
    meta = doc.pop("__metadata__", None)
    meta = meta if isinstance(meta, dict) else {}
    if meta.get("format") != FIELD_FORMAT:
        raise _bad_field(f"is not a Likeness field (format {short(meta.get('format'), 40)})")
    if meta.get("version") != FIELD_VERSION:
        raise _bad_field(
            f"is field format version {short(meta.get('version'), 20)}; this engine reads version {FIELD_VERSION}",
            "render it with the Likeness that built it, or rebuild the avatar",
        )
    spans = []
    for name, info in doc.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        ok = isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)
        ok = ok and isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)
        if not ok or not 0 <= offsets[0] <= offsets[1]:
            raise _bad_field(f"has a malformed header entry for {short(name, 40)}")
        dtype = info.get("dtype")
        if dtype not in FLOAT_DTYPES:
            raise _bad_field(f"tensor {short(name, 40)} is {short(dtype, 20)}, not floating point")
        numel = 1
        for n in shape:
            numel *= n
        if offsets[1] - offsets[0] != numel * FLOAT_DTYPES[dtype]:
            raise _bad_field(f"tensor {short(name, 40)} has byte offsets that do not match its shape")
        spans.append(tuple(offsets))
    end = 0
    for start, stop in sorted(spans):
        if start != end:
            raise _bad_field("has tensors that overlap or leave gaps")
        end = stop
    return 8 + len(header) + end


class _Part:
    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.sha = hashlib.sha256()
        self.size = 0

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()


class PartWriter:
    """The parts of one import body written into ``stage`` as they arrive (synchronous: fed from a worker
    thread). Each violation is an :class:`ApiError`; after the first, :meth:`feed` drops what follows."""

    def __init__(
        self, stage: Path, boundary: bytes, max_field_bytes: int, max_json_bytes: int, max_asset_bytes: int = 0
    ) -> None:
        self.stage, self.max_field_bytes, self.max_json_bytes = stage, max_field_bytes, max_json_bytes
        self.max_asset_bytes = max_asset_bytes
        self.done: dict[str, _Part] = {}
        self.part: _Part | None = None
        self.headers: dict[str, str] = {}
        self._field, self._value = b"", b""
        self._head = bytearray()
        self._field_size: int | None = None
        self.error: ApiError | None = None
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": lambda d, s, e: self._add("_field", d[s:e]),
                "on_header_value": lambda d, s, e: self._add("_value", d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._open,
                "on_part_data": self._data,
                "on_part_end": self._end,
            },
        )

    # -- feeding ---------------------------------------------------------------------------------------------

    def feed(self, data: bytes, last: bool = False) -> ApiError | None:
        """Parse the next bytes of the body (``last``: the body ends here); the first error, or None."""
        if self.error is None:
            try:
                self.parser.write(data)
                if last:
                    self.parser.finalize()
                    self._check_complete()
            except ApiError as exc:
                self.error = exc
            except Exception as exc:  # noqa: BLE001 - any parser failure is the client's malformed body
                self.error = _bad("the multipart body could not be parsed")
                self.error.__cause__ = exc
        return self.error

    def close(self) -> None:
        for part in (self.part, *self.done.values()):
            if part is not None and not part.fh.closed:
                part.fh.close()

    def avatar_id(self) -> str:
        """The id of this upload: a hash of every part's name and contents (order and file names ignored)."""
        h = hashlib.sha256(ID_SALT)
        for name in sorted(self.done):
            h.update(f"{name} {self.done[name].size} {self.done[name].sha.hexdigest()}\n".encode())
        return h.hexdigest()[:32]

    # -- parser callbacks ------------------------------------------------------------------------------------

    def _add(self, attr: str, data: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + data)
        if len(self._field) + len(self._value) > 8192:
            raise _bad("a form part's header is too long")

    def _begin(self) -> None:
        self.headers = {}  # (no count of its own: each part must be a different one of IMPORT_PARTS)

    def _header_end(self) -> None:
        self.headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field, self._value = b"", b""

    def _open(self) -> None:
        try:
            _, disp = parse_options_header(self.headers.get("content-disposition", ""))
        except ValueError as exc:  # UnicodeError included
            raise _bad("a form part has a malformed Content-Disposition") from exc
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        if name not in IMPORT_PARTS:
            raise _bad(f"unexpected form part {short(name, 40)}: only {', '.join(IMPORT_PARTS)} are accepted")
        if name in self.done:
            raise _bad(f"the form part {name!r} was sent twice")
        if name == "asset_glb" and self.max_asset_bytes < 1:
            raise _bad("this engine takes no asset_glb part", "leave the asset out")
        path = self.stage / IMPORT_PARTS[name]
        path.parent.mkdir(exist_ok=True)
        self.part = _Part(name, path)

    def _data(self, data: bytes, start: int, end: int) -> None:
        part, chunk = self.part, data[start:end]
        part.size += len(chunk)
        cap = {"field": self.max_field_bytes, "asset_glb": self.max_asset_bytes}.get(part.name, self.max_json_bytes)
        if part.size > cap:
            raise ApiError(
                413,
                "payload_too_large",
                f"{IMPORT_PARTS[part.name]} is larger than this engine accepts ({cap / 2**20:.0f} MiB)",
                {
                    "field": "start the engine with a larger LIKENESS_MAX_FIELD_BYTES, or render with the engine "
                    "that built it",
                    "asset_glb": "start the engine with a larger LIKENESS_MAX_ASSET_BYTES, or leave the asset out",
                }.get(part.name, "send the bundle's own file, unchanged"),
            )
        if part.name == "field" and self._field_size is None:
            self._sniff(chunk)
        part.sha.update(chunk)
        try:
            part.fh.write(chunk)
        except OSError as exc:
            raise ApiError(
                507, "insufficient_storage", "the engine could not store the upload (disk full?)", "free disk space"
            ) from exc

    def _sniff(self, chunk: bytes) -> None:
        """Read the field's safetensors header from its first bytes: from then on its exact size is known."""
        self._head += chunk[: max(0, 8 + MAX_SAFETENSORS_HEADER - len(self._head))]
        if len(self._head) < 8:
            return
        (n,) = struct.unpack("<Q", bytes(self._head[:8]))
        if n < 2 or n > min(MAX_SAFETENSORS_HEADER, self.max_field_bytes):
            raise _bad_field("is not a safetensors file (its header length is out of range)")
        if len(self._head) >= 8 + n:
            self._field_size = field_file_size(bytes(self._head[8 : 8 + n]))
            self._head = bytearray()
            if self._field_size > self.max_field_bytes:
                raise ApiError(
                    413,
                    "payload_too_large",
                    f"field.safetensors is larger than this engine accepts ({self.max_field_bytes / 2**20:.0f} MiB)",
                    "start the engine with a larger LIKENESS_MAX_FIELD_BYTES, or render with the engine that built it",
                )

    def _end(self) -> None:
        part, self.part = self.part, None
        part.close()
        self.done[part.name] = part
        if part.name == "manifest":
            check_uploaded_manifest(self.stage)
        elif part.name == "field":
            if self._field_size is None:
                raise _bad_field("is not a safetensors file (it ends inside its header)")
            if part.size != self._field_size:
                raise _bad_field(
                    f"is truncated: {part.size} of {self._field_size} bytes"
                    if part.size < self._field_size
                    else f"has {part.size - self._field_size} bytes after its last tensor"
                )
        elif part.name == "asset_glb":
            check_glb_header(part.path, part.size)

    def _check_complete(self) -> None:
        if self.part is not None:
            raise _bad("the multipart body ends inside a part")
        missing = [n for n in REQUIRED_PARTS if n not in self.done]
        if missing:
            raise _bad(f"the upload has no {' or '.join(missing)} part")


def check_glb_header(path: Path, size: int) -> None:
    """422 ``bad_asset`` unless the uploaded asset starts as a glTF 2.0 binary whose stated length is its size."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    magic, version, length = struct.unpack("<III", head) if len(head) == 12 else (0, 0, 0)
    if magic != 0x46546C67 or version != 2:
        raise ApiError(422, "bad_asset", "asset/head.glb is not a glTF 2.0 binary (GLB)", ASSET_HINT)
    if length != size:
        raise ApiError(422, "bad_asset", f"asset/head.glb says it is {length} bytes but {size} arrived", ASSET_HINT)


def check_uploaded_manifest(stage: Path) -> dict:
    """The uploaded ``manifest.json`` (in ``stage``) as an object of this format and a version this engine reads:
    an older version is read like a bundle on disk; a newer one is 422 ``unsupported_bundle_version``."""
    try:
        manifest = read_json(stage / MANIFEST)
    except BundleError as exc:
        message = _clean(exc.message.replace(shown(stage / MANIFEST), "the uploaded manifest.json"), stage)
        raise ApiError(422, "bad_bundle", message, "send the manifest.json of a bundle folder, unchanged") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise ApiError(
            422,
            "bad_bundle",
            f"the uploaded manifest.json is not a Likeness avatar manifest (format {short(fmt, 40)})",
            "send the manifest.json of a bundle folder",
        )
    version = manifest.get("format_version")
    if type(version) is not int or version < 1:
        raise ApiError(
            422,
            "bad_bundle",
            f"the uploaded manifest's format_version {short(version, 20)} is not a bundle format version "
            "(a whole number from 1)",
            "send the manifest.json of a bundle folder, unchanged",
        )
    if version > BUNDLE_FORMAT_VERSION:
        raise ApiError(
            422,
            "unsupported_bundle_version",
            f"the bundle is format version {version}; this engine (Likeness {__version__}) reads versions "
            f"1 to {BUNDLE_FORMAT_VERSION}",
            "upgrade the engine to the Likeness that wrote the bundle, or render it with the engine that built it",
        )
    return manifest


def _clean(text: str, stage: Path) -> str:
    """A BundleError's text about the staging folder, as the client sees it: 'the uploaded bundle'."""
    for name in (bundle_label(stage), shown(stage), str(stage)):
        text = text.replace(name, "the uploaded bundle")
    return scrub(text)


def check_staged(stage: Path) -> None:
    """Everything rendering reads from the staged bundle, checked as for a bundle on disk; 422 with the one-line
    reason otherwise (``bad_field`` when it is the field)."""
    from engine.avatar import load_avatar
    from engine.io.bundle import read_landmarks_world

    try:
        manifest = read_manifest(stage)
        load_avatar(stage, device="cpu")
        if bundle_file(stage, manifest, "landmarks", required=False) is not None:
            read_landmarks_world(stage, manifest)
        expression = bundle_file(stage, manifest, "expression", required=False)
        if expression is not None:
            try:
                from engine.rig.rig import read_expression
            except ImportError:  # an engine without the rig: it refuses expressions anyway
                read_expression = None
            if read_expression is not None:
                read_expression(expression)
    except BundleError as exc:
        message = _clean(exc.message, stage)
        code = "bad_field" if "files.field" in exc.message else "bad_bundle"
        hint = FIELD_HINT if code == "bad_field" else "send the files of one bundle folder, unchanged"
        raise ApiError(422, code, message, hint) from exc
    if bundle_file(stage, manifest, "asset_glb", required=False) is not None:
        check_staged_asset(stage)


def check_staged_asset(stage: Path) -> None:
    """The staged asset GLB's keys bound to the staged face proxy, as ``rig: asset`` renders will (so a GLB that
    cannot drive the field is refused now, not at the first render): 422 ``bad_asset`` otherwise."""
    from engine.avatar import load_avatar
    from engine.rig.asset_rig import asset_rig_for_avatar

    try:
        asset_rig_for_avatar(load_avatar(stage, device="cpu"))
    except BundleError as exc:
        raise ApiError(422, "bad_asset", _clean(exc.message, stage), ASSET_HINT) from exc


class Importer:
    """Receives import uploads into ``ws`` (one per request; the final rename is serialised)."""

    def __init__(self, ws: Workspace, max_field_bytes: int, max_json_bytes: int, max_asset_bytes: int = 0) -> None:
        self.ws, self.max_field_bytes, self.max_json_bytes = ws, max_field_bytes, max_json_bytes
        self.max_asset_bytes = max_asset_bytes
        self.lock = threading.Lock()

    def _stored(self, avatar_id: str) -> bool:
        try:
            self.ws.manifest(avatar_id)
        except (NotFound, BundleError):
            return False
        return True

    async def receive(self, request: Request) -> tuple[str, bool]:
        """(avatar id, created): stream the body into a staging folder, check it, move it into place. The whole
        body is always read before the answer, so a client still sending gets the error, not a broken pipe."""
        boundary = boundary_of(request.headers.get("content-type", ""))
        stage = swap.leftover_path(self.ws.avatars / "import", "staging")
        stage.mkdir()
        writer = PartWriter(stage, boundary, self.max_field_bytes, self.max_json_bytes, self.max_asset_bytes)
        try:
            pending = bytearray()
            async for chunk in request.stream():
                if writer.error is not None:
                    continue  # drain: answer once the client has sent everything
                pending += chunk
                if len(pending) >= FLUSH_BYTES:
                    await run_in_threadpool(writer.feed, bytes(pending))
                    pending.clear()
            error = await run_in_threadpool(writer.feed, bytes(pending), True)
            if error is not None:
                raise error
            return await run_in_threadpool(self._store, writer, stage)
        except ClientDisconnect as exc:
            raise ApiError(400, "bad_request", "the upload ended before its last byte", "send the whole body") from exc
        finally:
            writer.close()
            shutil.rmtree(stage, ignore_errors=True)

    def _store(self, writer: PartWriter, stage: Path) -> tuple[str, bool]:
        avatar_id = writer.avatar_id()
        if self._stored(avatar_id):
            return avatar_id, False
        manifest = read_json(stage / MANIFEST)
        kept = [name for name in IMPORT_PARTS if name in writer.done and name != "manifest"]
        manifest["files"] = {name: IMPORT_PARTS[name] for name in kept}
        manifest["imported"] = {
            "parts": {n: {"bytes": p.size, "sha256": p.sha.hexdigest()} for n, p in sorted(writer.done.items())}
        }
        write_json_atomic(stage / MANIFEST, manifest)
        check_staged(stage)
        with self.lock:
            if self._stored(avatar_id):  # the same upload, finished first by another request
                return avatar_id, False
            final = self.ws.avatar_dir(avatar_id)
            if os.path.lexists(final):
                swap.swap_into_place(stage, final)  # a folder of that id whose bundle is unusable: replaced whole
            else:
                os.replace(stage, final)
        return avatar_id, True
