"""The security matrix against a real ``likeness serve`` process with a token: auth on every route, Host and
Origin checks, path traversal (.., encoded, absolute, symlinks planted in the workspace), body cap (413 with
nothing written), decompression bombs, non-image bytes, bad input failing as jobs, LAN bind without a token
refused, and schemathesis over the published OpenAPI document. No builds."""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from test_server_harness import REPO, ServerProcess, free_port, png_bytes, wait_for

pytestmark = pytest.mark.slow  # a real server process / build (make quick skips it)

TOKEN = "test-token-9f2c1e7a55"
SECRET = "TOP-SECRET-OUTSIDE-THE-WORKSPACE"
FAKE_ID = "f" * 32
EVIL_ID = "e" * 32
TEXTURE = b"\x89PNG\r\n\x1a\n-not-really-but-served-as-is"


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    root = tmp_path_factory.mktemp("secure")
    srv = ServerProcess(root / "ws", token=TOKEN)
    srv.start()
    secret = root / "secret.txt"
    secret.write_text(SECRET)
    bundle = srv.workspace / "avatars" / FAKE_ID
    bundle.mkdir()
    (bundle / "texture.png").write_bytes(TEXTURE)
    (bundle / "turntable").mkdir()
    (bundle / "turntable" / "frame_000.png").write_bytes(TEXTURE)
    os.symlink(secret, bundle / "link.png")
    os.symlink(root, bundle / "sub")
    files = {
        "texture": "texture.png",
        "up": "../../../secret.txt",
        "abs": str(secret),
        "link": "link.png",
        "subdir": "sub/secret.txt",
        "db": "../../jobs.sqlite3",
    }
    manifest = {"format": "likeness-avatar", "format_version": 1, "files": files}
    manifest["turntable_frames"] = ["turntable/frame_000.png", "../../../secret.txt"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    outside = root / "outside"
    outside.mkdir()
    (outside / "manifest.json").write_text(json.dumps({**manifest, "files": {"secret": "secret.txt"}}))
    (outside / "secret.txt").write_text(SECRET)
    os.symlink(outside, srv.workspace / "avatars" / EVIL_ID)
    yield srv
    srv.stop()


def raw(srv, method: str, path: str, headers: dict | None = None, body: bytes | None = None, auth: bool = True):
    """One request with http.client, which sends the path and headers exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    h = {"Host": f"127.0.0.1:{srv.port}"}
    if auth:
        h["Authorization"] = f"Bearer {TOKEN}"
    h.update(headers or {})
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in h.items():
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


def error_code(data: bytes) -> str:
    return json.loads(data)["error"]["code"]


def nothing_written(srv) -> None:
    assert list((srv.workspace / "inputs").iterdir()) == []
    assert list(srv.tmpdir.iterdir()) == [], "the server spooled an upload to a temp file"
    con = sqlite3.connect(f"file:{srv.workspace / 'jobs.sqlite3'}?mode=ro", uri=True)
    assert con.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    con.close()


def multipart(files: list[tuple[str, str, bytes]], fields: dict | None = None) -> tuple[bytes, str]:
    boundary = "likeness-test-boundary-7d3"
    out = b""
    for name, filename, data in files:
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    for name, value in (fields or {}).items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


ROUTES = [
    ("GET", "/v1/health"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/builds"),
    ("GET", "/v1/jobs/0123"),
    ("POST", "/v1/jobs/0123/cancel"),
    ("GET", "/v1/jobs/0123/events"),
    ("GET", "/v1/avatars"),
    ("GET", f"/v1/avatars/{FAKE_ID}"),
    ("GET", f"/v1/avatars/{FAKE_ID}/files/texture"),
    ("POST", f"/v1/avatars/{FAKE_ID}/render"),
    ("GET", "/v1/no-such-route"),
    ("OPTIONS", "/v1/health"),
]


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_needs_the_token(secure, method, path, astronaut_png):
    body = None
    headers = {}
    if path == "/v1/builds":
        body, ctype = multipart([("file", "a.png", astronaut_png)], {"options": '{"quality": "draft"}'})
        headers["Content-Type"] = ctype
    for auth_header in (None, "Bearer wrong-token-123456", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"):
        h = dict(headers)
        if auth_header:
            h["Authorization"] = auth_header
        status, hdrs, data = raw(secure, method, path, h, body, auth=False)
        assert status == 401, (auth_header, status, data)
        assert error_code(data) == "unauthorized" and hdrs.get("www-authenticate") == "Bearer"
    nothing_written(secure)


def test_the_right_token_opens_the_door(secure):
    assert raw(secure, "GET", "/v1/health", {"Authorization": f"bearer {TOKEN}"}, auth=False)[0] == 200
    status, hdrs, data = raw(secure, "GET", f"/v1/avatars/{FAKE_ID}/files/texture")
    assert status == 200 and data == TEXTURE and hdrs["content-type"] == "image/png"
    assert raw(secure, "GET", f"/v1/avatars/{FAKE_ID}/files/turntable_frame_000")[2] == TEXTURE


@pytest.mark.parametrize(
    "host,expected",
    [
        ("{loop}", 200),
        ("localhost:{port}", 200),
        ("LOCALHOST", 200),
        ("[::1]:{port}", 200),
        ("evil.example", 403),
        ("evil.example:{port}", 403),
        ("127.0.0.1.evil.example:{port}", 403),
        ("127.0.0.1:{port}@evil.example", 403),
        ("", 403),
        ("192.168.1.20:{port}", 403),
    ],
)
def test_host_allow_list(secure, host, expected):
    value = host.format(loop=f"127.0.0.1:{secure.port}", port=secure.port)
    status, _, data = raw(secure, "GET", "/v1/health", {"Host": value}, auth=False)
    # Host is checked before the token: a rebinding page learns nothing, not even that auth exists.
    assert status == (401 if expected == 200 else 403), data
    status, _, data = raw(secure, "GET", "/v1/health", {"Host": value})
    assert status == expected, data
    if expected == 403:
        assert error_code(data) == "host_not_allowed"


def test_forwarded_headers_are_ignored(secure):
    h = {"X-Forwarded-Host": "evil.example", "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    assert raw(secure, "GET", "/v1/health", h)[0] == 200
    assert raw(secure, "GET", "/v1/health", {**h, "Host": "evil.example"})[0] == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:{port}"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    ],
)
def test_browser_callers_refused_and_no_cors(secure, headers):
    h = {k: v.format(port=secure.port) for k, v in headers.items()}
    for method in ("GET", "OPTIONS"):
        status, hdrs, data = raw(secure, method, "/v1/health", h)
        assert status == 403 and error_code(data) == "origin_not_allowed"
        assert not any(k.startswith("access-control-") for k in hdrs)
    status, hdrs, _ = raw(secure, "GET", "/v1/health")
    assert status == 200 and not any(k.startswith("access-control-") for k in hdrs)


TRAVERSALS = [
    f"/v1/avatars/{FAKE_ID}/files/../../../secret.txt",
    f"/v1/avatars/{FAKE_ID}/files/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
    f"/v1/avatars/{FAKE_ID}/files/..%2F..%2Fjobs.sqlite3",
    f"/v1/avatars/{FAKE_ID}/files/%2e%2e",
    f"/v1/avatars/{FAKE_ID}/files/%2Fetc%2Fpasswd",
    f"/v1/avatars/{FAKE_ID}/files//etc/passwd",
    f"/v1/avatars/{FAKE_ID}/files/up",
    f"/v1/avatars/{FAKE_ID}/files/abs",
    f"/v1/avatars/{FAKE_ID}/files/link",
    f"/v1/avatars/{FAKE_ID}/files/subdir",
    f"/v1/avatars/{FAKE_ID}/files/db",
    f"/v1/avatars/{FAKE_ID}/files/turntable_frame_001",
    f"/v1/avatars/{EVIL_ID}/files/secret",
    f"/v1/avatars/{EVIL_ID}",
    "/v1/avatars/..%2F..%2F/files/secret",
    "/v1/avatars/%2e%2e/files/jobs.sqlite3",
    "/v1/avatars/../../secret.txt",
    "/v1/avatars/%2Ftmp/files/secret",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_refused(secure, path):
    status, _, data = raw(secure, "GET", path)
    assert status == 404, (path, data)
    assert SECRET.encode() not in data and b"SQLite" not in data
    assert error_code(data) == "not_found"
    assert b"/tmp" not in data and str(secure.workspace).encode() not in data


def test_symlinked_avatar_folder_is_not_listed(secure):
    status, _, data = raw(secure, "GET", "/v1/avatars")
    ids = [a["id"] for a in json.loads(data)["avatars"]]
    assert status == 200 and FAKE_ID in ids and EVIL_ID not in ids


def _read_all(sock) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def _upload_head(port: int, length_header: str) -> bytes:
    return (
        f"POST /v1/builds HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\n{length_header}\r\n\r\n"
    ).encode()


def test_oversized_upload_413_before_anything_is_read(secure):
    with socket.create_connection(("127.0.0.1", secure.port), timeout=30) as s:
        s.sendall(_upload_head(secure.port, f"Content-Length: {60 * 2**20}"))
        reply = _read_all(s)  # no body sent at all: the answer comes from the headers alone
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"payload_too_large" in reply
    nothing_written(secure)


def test_oversized_chunked_upload_413(secure):
    with socket.create_connection(("127.0.0.1", secure.port), timeout=60) as s:
        s.sendall(_upload_head(secure.port, "Transfer-Encoding: chunked"))
        chunk = b"\0" * 2**20
        sent = 0
        for _ in range(64):  # stop as soon as the server answers
            if select.select([s], [], [], 0)[0]:
                break
            s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
            time.sleep(0.02)
        reply = _read_all(s)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert 50 * 2**20 <= sent <= 56 * 2**20, "refused once the cap was passed, not before or long after"
    nothing_written(secure)


def test_image_over_the_file_limit_413(secure):
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (50 * 2**20)  # 50 MiB + 8 bytes: inside the request cap, over the file cap
    body, ctype = multipart([("file", "big.png", big)])
    status, _, data = raw(secure, "POST", "/v1/builds", {"Content-Type": ctype}, body)
    assert status == 413 and error_code(data) == "payload_too_large"
    nothing_written(secure)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels; the pixel data is a tiny zlib stream."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    )


def _real_bomb(side: int) -> bytes:
    """A genuine 1-bit PNG of side x side black pixels: kilobytes on the wire, side^2 pixels decoded."""
    row = b"\0" + b"\0" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    head = _png_header_only(side, side)
    cut = head.index(b"IDAT") - 4

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return head[:cut] + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "make", [lambda: _real_bomb(9000), lambda: _real_bomb(12000), lambda: _png_header_only(40000, 40000)]
)
def test_decompression_bomb_refused(secure, make):
    bomb = make()
    assert len(bomb) < 2**20
    body, ctype = multipart([("file", "bomb.png", bomb)])
    status, _, data = raw(secure, "POST", "/v1/builds", {"Content-Type": ctype}, body)
    assert status == 422 and error_code(data) == "image_too_large", data
    nothing_written(secure)


@pytest.mark.parametrize(
    "payload,code",
    [
        (b"hello, this is not an image at all" * 10, "not_an_image"),
        (b"GIF89a" + b"\0" * 200, "not_an_image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not_an_image"),
        (b"\x7fELF\x02\x01\x01" + b"\0" * 200, "not_an_image"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "unreadable_image"),
        ("small", "image_too_small"),
    ],
)
def test_non_image_bytes_refused(secure, payload, code):
    if payload == "small":
        payload = png_bytes(np.zeros((50, 50, 3), np.uint8))
    body, ctype = multipart([("file", "photo.jpg", payload)])
    status, _, data = raw(secure, "POST", "/v1/builds", {"Content-Type": ctype}, body)
    assert status == 422 and error_code(data) == code, data
    nothing_written(secure)


def test_malformed_uploads_refused(secure, astronaut_png):
    cases = [
        (multipart([("file", "a.png", astronaut_png), ("file", "b.png", astronaut_png)]), 422, "invalid_upload"),
        (multipart([], {"options": "{}"}), 422, "invalid_upload"),
        (multipart([("file", "a.png", astronaut_png)], {"options": "{not json"}), 422, "invalid_options"),
        (multipart([("file", "a.png", astronaut_png)], {"options": '{"quality": "ultra"}'}), 422, "invalid_options"),
        (multipart([("file", "a.png", astronaut_png)], {"options": '{"device": "cuda"}'}), 422, "invalid_options"),
        (multipart([("file", "a.png", astronaut_png)], {"options": '{"uv_layout": "cube"}'}), 422, "invalid_options"),
        (multipart([("file", "a.png", astronaut_png)], {"options": "[1, 2]"}), 422, "invalid_options"),
        (multipart([("file", "a.png", astronaut_png)], {"evil": "1"}), 422, "invalid_upload"),
        ((b'{"file": "x"}', "application/json"), 415, "unsupported_media_type"),
    ]
    for (body, ctype), status, code in cases:
        got, _, data = raw(secure, "POST", "/v1/builds", {"Content-Type": ctype}, body)
        assert (got, error_code(data)) == (status, code), data
    nothing_written(secure)


def test_bad_photos_fail_as_jobs_with_clean_errors(secure, astronaut_png):
    wall = png_bytes(np.full((256, 256, 3), 180, np.uint8))
    truncated = png_bytes(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8))[:20000]
    jobs = {}
    with secure.client() as c:
        for name, data, code in (("wall.png", wall, "no_face"), ("cut.png", truncated, "unreadable_image")):
            r = c.post("/v1/builds", files={"file": (name, data)}, data={"options": '{"quality": "draft"}'})
            assert r.status_code == 202, r.text
            jobs[r.json()["job"]["id"]] = code
        for job_id, code in jobs.items():
            job = wait_for(
                lambda job_id=job_id: (j := c.get(f"/v1/jobs/{job_id}").json())["state"] in ("failed",) and j,
                300,
                0.5,
                f"job {job_id} to fail",
            )
            assert job["error"]["code"] == code and job["error"]["message"] and job["avatar_id"] is None
            text = json.dumps(job["error"])
            assert str(secure.workspace) not in text and "/tmp/" not in text and "inputs" not in text
        health = c.get("/v1/health").json()
        assert health["busy"] is False and health["queue_length"] == 0
        ids = [a["id"] for a in c.get("/v1/avatars").json()["avatars"]]
        assert not set(jobs) & set(ids)
    for job_id in jobs:
        assert not (secure.workspace / "avatars" / job_id).exists()
        assert not list((secure.workspace / "avatars").glob(f".{job_id}*")), "a failed build left staging behind"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_lan_bind_without_token_refused(tmp_path, host):
    env = {k: v for k, v in os.environ.items() if k != "LIKENESS_TOKEN"}
    ws = tmp_path / "ws"
    p = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--host", host, "--port", str(free_port()), "--workspace", str(ws)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert "refusing to listen" in p.stderr and "LIKENESS_TOKEN" in p.stderr
    assert not ws.exists(), "nothing may be created before the bind is judged safe"


def test_schemathesis_finds_no_server_errors(secure, tmp_path):
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "schemathesis"),
        "run",
        f"{secure.url}/v1/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "8",
        "--max-time",
        "45",
        "--seed",
        "7",
        "--workers",
        "1",
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        "--request-timeout",
        "60",
        "--suppress-health-check",
        "all",
        "-H",
        f"Authorization: Bearer {TOKEN}",
        "--no-color",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]
    with secure.client() as c:
        assert c.get("/v1/health").status_code == 200
