"""POST /v1/avatars against a real ``likeness serve`` process (no mocks) with an empty store: a bundle the engine did
not build (the session's draft bundle) is uploaded, then renders through the API as it does in-process through
engine.avatar.load_avatar; the same upload again is the same avatar and stores nothing; a truncated, pickled or
misshapen field, an oversized body or field, and a manifest of a future format version are refused with a JSON
4xx, and the store is left exactly as it was."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import select
import socket
import struct
import time

import numpy as np
import pytest
from PIL import Image
from test_server_harness import ServerProcess, photo_camera

from engine import BUNDLE_FORMAT_VERSION

pytestmark = pytest.mark.slow  # a real server process (make quick skips it)

SIZE = 64
EXPRESSION = {"jawOpen": 0.6, "eyeBlinkLeft": 1.0}


@pytest.fixture(scope="module")
def field_size(bundle_dir) -> int:
    return (bundle_dir / "field.safetensors").stat().st_size


@pytest.fixture(scope="module")
def server(tmp_path_factory, field_size):
    """An engine with an empty store and a field cap 1 MiB above the bundle's field (so an oversized field is cheap
    to send)."""
    srv = ServerProcess(
        tmp_path_factory.mktemp("import") / "ws", extra_env={"LIKENESS_MAX_FIELD_BYTES": str(field_size + 2**20)}
    )
    srv.start()
    yield srv
    srv.stop()


def parts(bundle, **replace) -> dict:
    """The form parts the add-on sends for ``bundle`` (``name=bytes`` replaces one, ``name=None`` leaves it out)."""
    files = {"manifest": "manifest.json", "field": "field.safetensors"}
    files.update(landmarks="landmarks.json", expression="expression.json")
    out = {name: (file, (bundle / file).read_bytes()) for name, file in files.items()}
    for name, data in replace.items():
        if data is None:
            out.pop(name)
        else:
            out[name] = (files.get(name, name), data)
    return out


def store(srv) -> dict:
    """Every entry under avatars/ (hidden ones included) with its size and modification time."""
    root = srv.workspace / "avatars"
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def assert_error(r, status: int, code: str, srv) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["hint"], err
    assert str(srv.workspace) not in r.text and "Traceback" not in r.text and ".staging-" not in r.text, r.text
    return err


@pytest.fixture(scope="module")
def uploaded(server, bundle_dir) -> str:
    with server.client(timeout=300.0) as c:
        assert c.get("/v1/health").json()["max_field_bytes"] > 0
        r = c.post("/v1/avatars", files=parts(bundle_dir))
    assert r.status_code == 201, r.text
    return r.json()["avatar"]["id"]


def _png(r) -> np.ndarray:
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    return np.asarray(Image.open(io.BytesIO(r.content)), np.int16)


def test_an_uploaded_bundle_renders_as_the_bundle_does_in_process(server, uploaded, bundle_dir):
    from engine.avatar import load_avatar
    from engine.conventions import Intrinsics
    from engine.extract.export import rgba_u8
    from engine.rig import deform_for_avatar

    with server.client(timeout=600.0) as c:
        assert uploaded in [a["id"] for a in c.get("/v1/avatars").json()["avatars"]]
        manifest = c.get(f"/v1/avatars/{uploaded}").json()
        assert manifest["files"] == {
            "field": "field.safetensors",
            "landmarks": "landmarks.json",
            "expression": "expression.json",
        }
        field = c.get(f"/v1/avatars/{uploaded}/files/field").content
        cam = photo_camera(manifest, SIZE)
        url = f"/v1/avatars/{uploaded}/render"
        served = _png(c.post(url, json=cam))
        served_expr = _png(c.post(url, json={**cam, "expression": EXPRESSION}))
    assert hashlib.sha256(field).digest() == hashlib.sha256((bundle_dir / "field.safetensors").read_bytes()).digest()

    avatar = load_avatar(bundle_dir)
    c2w, intr = np.array(cam["cam2world"], dtype=np.float64), Intrinsics.from_dict(cam["intrinsics"])
    local = rgba_u8(avatar.render(c2w, intr)).astype(np.int16)
    local_expr = rgba_u8(avatar.render(c2w, intr, deform=deform_for_avatar(avatar, EXPRESSION))).astype(np.int16)
    for name, a, b in (("as photographed", served, local), ("expression", served_expr, local_expr)):
        diff = np.abs(a - b)
        print(f"{name}: served vs in-process render, max |diff| {diff.max()}, mean {diff.mean():.4f} (of 255)")
        assert diff.max() <= 2 and diff.mean() < 0.05, name
    assert (local[..., 3] > 128).mean() > 0.3, "the head should fill the frame"
    assert np.abs(served_expr - served)[..., :3].max(-1).mean() > 0.5, "the expression must change the render"


def test_the_same_upload_twice_is_one_avatar_and_stores_nothing(server, uploaded, bundle_dir):
    before = store(server)
    with server.client(timeout=300.0) as c:
        r = c.post("/v1/avatars", files=dict(reversed(parts(bundle_dir).items())))  # part order does not matter
        listed = [a["id"] for a in c.get("/v1/avatars").json()["avatars"]]
    assert r.status_code == 200 and r.json()["avatar"]["id"] == uploaded, r.text
    assert listed == [uploaded]
    assert store(server) == before


def _misshapen_field(field: bytes) -> bytes:
    """The bundle's own field with its SDF grid cut to 4 voxels a side (the manifest says otherwise)."""
    from safetensors.torch import load, save

    state = load(field)
    state["sdf"] = state["sdf"][..., :4, :4, :4].contiguous()
    return save(state, metadata={"format": "likeness-field", "version": "1"})


def _integer_field() -> bytes:
    meta = {"format": "likeness-field", "version": "1"}
    header = json.dumps({"__metadata__": meta, "sdf": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 16


@pytest.mark.parametrize(
    ("variant", "status", "code", "says"),
    [
        ("truncated", 422, "bad_field", "truncated"),
        ("pickle", 422, "bad_field", "not a safetensors file"),
        ("misshapen", 422, "bad_field", "tensor 'sdf' has shape"),
        ("integer", 422, "bad_field", "not floating point"),
        ("oversized", 413, "payload_too_large", "larger than this engine accepts"),
        ("future_version", 422, "unsupported_bundle_version", f"reads versions 1 to {BUNDLE_FORMAT_VERSION}"),
        ("string_version", 422, "bad_bundle", "not a bundle format version"),
        ("no_field", 422, "invalid_upload", "no field part"),
        ("stray_part", 422, "invalid_upload", "unexpected form part"),
    ],
)
def test_a_bad_upload_is_refused_and_the_store_is_unchanged(server, uploaded, bundle_dir, variant, status, code, says):
    field = (bundle_dir / "field.safetensors").read_bytes()
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    replace = {
        "truncated": {"field": field[: len(field) - 4096]},
        "pickle": {"field": pickle.dumps({"sdf": list(range(100))})},
        "misshapen": {"field": _misshapen_field(field)},
        "integer": {"field": _integer_field()},
        "oversized": {"field": field + b"\0" * (2 * 2**20)},  # inside the request cap, over the field cap
        "future_version": {"manifest": json.dumps({**manifest, "format_version": BUNDLE_FORMAT_VERSION + 1}).encode()},
        "string_version": {"manifest": json.dumps({**manifest, "format_version": "1"}).encode()},
        "no_field": {"field": None},
        "stray_part": {"shape_keys": b"PK\x03\x04"},
    }[variant]
    before = store(server)
    with server.client(timeout=300.0) as c:
        r = c.post("/v1/avatars", files=parts(bundle_dir, **replace))
    err = assert_error(r, status, code, server)
    assert says in err["message"], err
    if variant == "future_version":
        assert "upgrade the engine" in err["hint"], err
    assert store(server) == before


def _head(port: int, length_header: str) -> bytes:
    return (
        f"POST /v1/avatars HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\n{length_header}\r\n\r\n"
    ).encode()


def _reply(s) -> dict:
    reply = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]


def test_a_body_over_the_cap_is_413_declared_or_streamed(server, uploaded, field_size):
    before = store(server)
    cap = field_size + 2**20 + 3 * 4 * 2**20 + 64 * 1024  # field + three JSON parts + form overhead
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(_head(server.port, f"Content-Length: {cap + 1}"))  # no body: refused from the headers alone
        err = _reply(s)
    assert err["code"] == "payload_too_large" and "LIKENESS_MAX_FIELD_BYTES" in err["hint"], err

    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        s.sendall(_head(server.port, "Transfer-Encoding: chunked"))
        chunk, sent = b"\0" * 2**20, 0
        while sent < cap + 8 * 2**20 and not select.select([s], [], [], 0)[0]:  # until the server answers
            s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
            time.sleep(0.02)
        err = _reply(s)
    assert err["code"] == "payload_too_large", err
    assert cap <= sent <= cap + 4 * 2**20, "refused once the cap was passed, not before or long after"
    with server.client() as c:
        assert c.get("/v1/health").status_code == 200  # the server still answers
    assert store(server) == before
