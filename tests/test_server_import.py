"""POST /v1/avatars against a real ``likeness serve`` process (no mocks) with an empty store: a bundle the engine did
not build (the session's draft bundle) is uploaded, then renders through the API as it does in-process through
engine.avatar.load_avatar; the same upload again is the same avatar and stores nothing; a truncated, pickled or
misshapen field, an oversized body or field, a manifest of a future format version and an asset GLB that is not one
or cannot drive the field are refused with a JSON 4xx, and the store is left exactly as it was. With its asset
(the ``asset_glb`` part) an uploaded bundle renders expressions on the asset's keys, as in-process."""

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
def asset_size(bundle_dir) -> int:
    glb = bundle_dir / "asset" / "head.glb"
    return glb.stat().st_size if glb.is_file() else 0


@pytest.fixture(scope="module")
def server(tmp_path_factory, field_size, asset_size):
    """An engine with an empty store and field and asset caps 1 MiB above the bundle's (so an oversized field or
    asset is cheap to send)."""
    env = {"LIKENESS_MAX_FIELD_BYTES": str(field_size + 2**20), "LIKENESS_MAX_ASSET_BYTES": str(asset_size + 2**20)}
    srv = ServerProcess(tmp_path_factory.mktemp("import") / "ws", extra_env=env)
    srv.start()
    yield srv
    srv.stop()


def parts(bundle, with_asset: bool = False, **replace) -> dict:
    """The form parts the add-on sends for ``bundle`` (``name=bytes`` replaces one, ``name=None`` leaves it out;
    ``with_asset``: its asset GLB too)."""
    files = {"manifest": "manifest.json", "field": "field.safetensors"}
    files.update(landmarks="landmarks.json", expression="expression.json")
    if with_asset:
        files["asset_glb"] = "asset/head.glb"
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
    # the upload has no asset, so the default rig (auto) is the proxy's there
    local_expr = rgba_u8(avatar.render(c2w, intr, deform=deform_for_avatar(avatar, EXPRESSION, rig="proxy")))
    local_expr = local_expr.astype(np.int16)
    for name, a, b in (("as photographed", served, local), ("expression", served_expr, local_expr)):
        diff = np.abs(a - b)
        print(f"{name}: served vs in-process render, max |diff| {diff.max()}, mean {diff.mean():.4f} (of 255)")
        assert diff.max() <= 2 and diff.mean() < 0.05, name
    assert (local[..., 3] > 128).mean() > 0.3, "the head should fill the frame"
    assert np.abs(served_expr - served)[..., :3].max(-1).mean() > 0.5, "the expression must change the render"


def test_an_uploaded_asset_drives_expressions_as_in_process(server, uploaded, bundle_dir, asset_size):
    """With its ``asset_glb`` part the upload is another avatar whose expressions follow the asset's keys by default
    (rig auto), as ``deform_for_avatar(..., rig="asset")`` does in-process; ``rig: proxy`` still gives the proxy's;
    the upload without the asset refuses ``rig: asset`` with 422 ``no_asset`` before queueing."""
    from engine.avatar import load_avatar
    from engine.conventions import Intrinsics
    from engine.extract.export import rgba_u8
    from engine.rig import deform_for_avatar

    if not asset_size:
        pytest.skip("the draft bundle has no asset (the head prior is not prepared)")
    with server.client(timeout=600.0) as c:
        r = c.post("/v1/avatars", files=parts(bundle_dir, with_asset=True))
        assert r.status_code == 201, r.text
        with_asset = r.json()["avatar"]["id"]
        assert with_asset != uploaded
        manifest = c.get(f"/v1/avatars/{with_asset}").json()
        assert manifest["files"]["asset_glb"] == "asset/head.glb"
        cam = photo_camera(manifest, SIZE)
        url = f"/v1/avatars/{with_asset}/render"
        served = {
            rig: _png(c.post(url, json={**cam, "expression": EXPRESSION, "rig": rig})) for rig in ("proxy", "asset")
        }
        served["auto"] = _png(c.post(url, json={**cam, "expression": EXPRESSION}))
        no_asset = c.post(f"/v1/avatars/{uploaded}/render", json={**cam, "expression": EXPRESSION, "rig": "asset"})
        bad_rig = c.post(url, json={**cam, "expression": EXPRESSION, "rig": "template"})
    assert_error(no_asset, 422, "no_asset", server)
    assert bad_rig.status_code == 422, bad_rig.text
    np.testing.assert_array_equal(served["auto"], served["asset"])
    avatar = load_avatar(bundle_dir)
    c2w, intr = np.array(cam["cam2world"], dtype=np.float64), Intrinsics.from_dict(cam["intrinsics"])
    for rig in ("proxy", "asset"):
        local = rgba_u8(avatar.render(c2w, intr, deform=deform_for_avatar(avatar, EXPRESSION, rig=rig)))
        diff = np.abs(served[rig] - local.astype(np.int16))
        print(f"rig {rig}: served vs in-process, max |diff| {diff.max()}, mean {diff.mean():.4f} (of 255)")
        assert diff.max() <= 2 and diff.mean() < 0.05, rig
    moved = np.abs(served["asset"] - served["proxy"])[..., :3].max(-1)
    print(f"asset vs proxy rig: {(moved > 8).mean():.1%} of pixels differ by more than 8/255")
    assert (moved > 8).mean() > 0.002, "the two rigs move the face differently"


def test_the_same_upload_twice_is_one_avatar_and_stores_nothing(server, uploaded, bundle_dir):
    before = store(server)
    with server.client(timeout=300.0) as c:
        r = c.post("/v1/avatars", files=dict(reversed(parts(bundle_dir).items())))  # part order does not matter
        listed = [a["id"] for a in c.get("/v1/avatars").json()["avatars"]]
    assert r.status_code == 200 and r.json()["avatar"]["id"] == uploaded, r.text
    assert listed.count(uploaded) == 1  # (the upload with its asset, if that test ran, is another avatar)
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
        ("asset_not_glb", 422, "bad_asset", "not a glTF 2.0 binary"),
        ("asset_truncated", 422, "bad_asset", "bytes but"),
        ("asset_not_ours", 422, "bad_asset", "cannot drive the field"),
        ("asset_oversized", 413, "payload_too_large", "larger than this engine accepts"),
    ],
)
def test_a_bad_upload_is_refused_and_the_store_is_unchanged(server, uploaded, bundle_dir, variant, status, code, says):
    field = (bundle_dir / "field.safetensors").read_bytes()
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    glb = bundle_dir / "asset" / "head.glb"
    if variant.startswith("asset") and not glb.is_file():
        pytest.skip("the draft bundle has no asset (the head prior is not prepared)")
    asset = glb.read_bytes() if glb.is_file() else b""
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
        "asset_not_glb": {"asset_glb": b"PK\x03\x04" + asset[4:]},
        "asset_truncated": {"asset_glb": asset[: len(asset) // 2]},
        "asset_not_ours": {"asset_glb": (bundle_dir / "head.glb").read_bytes()},  # the scan mesh: no template ids
        "asset_oversized": {"asset_glb": asset + b"\0" * (2 * 2**20)},
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


def test_a_body_over_the_cap_is_413_declared_or_streamed(server, uploaded, field_size, asset_size):
    before = store(server)
    cap = field_size + 2**20 + asset_size + 2**20 + 3 * 4 * 2**20 + 64 * 1024  # field, asset, three JSON parts, form
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
