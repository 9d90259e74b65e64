"""Bad input, tried as a careless user and as a hostile client would: every case is refused with ONE line and exit
code 2 by the CLI, or a 4xx JSON error with code, message and hint by a real server process, and nothing is
written or lost. The corpus is generated here (no stored files); the CLI runs through its real entry point
(``engine.cli.main``, in this process to keep 60+ cases fast; a few also as a subprocess)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_server_harness import ServerProcess, wait_for

from engine.cli import main

REPO = Path(__file__).resolve().parents[1]
NO_FACE = ("no_face", "face_too_small")
"""Which of the two a faceless or tiny-faced photo gets depends on what the detector half-sees."""
pytest.importorskip("fastapi", reason="the engine server needs the [server] extra")


def _png(rgb) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG that declares ``w`` x ``h`` pixels and carries one tiny compressed row (a decompression bomb's
    header: the size is read before any pixel)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def photos(astronaut_rgb) -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, the error code(s) both edges give)."""
    face = _png(astronaut_rgb)
    jpeg = io.BytesIO()
    Image.fromarray(astronaut_rgb).save(jpeg, format="JPEG")
    jpeg = jpeg.getvalue()
    tiny_face = np.full((900, 900, 3), 170, np.uint8)
    tiny_face[400:440, 400:440] = np.asarray(Image.fromarray(astronaut_rgb).resize((40, 40)))
    gif = io.BytesIO()
    Image.fromarray(astronaut_rgb).save(gif, format="GIF")
    bmp = io.BytesIO()
    Image.fromarray(astronaut_rgb).save(bmp, format="BMP")
    return {
        "text.jpg": (b"these are my notes, not a photo\n" * 20, "not_an_image"),
        "empty.png": (b"", "not_an_image"),
        "html.png": (b"<!doctype html><html><body>hi</body></html>", "not_an_image"),
        "svg.png": (b'<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512"/>', "not_an_image"),
        "zip.jpg": (b"PK\x03\x04" + bytes(200), "not_an_image"),
        "gif.gif": (gif.getvalue(), "not_an_image"),
        "bmp.bmp": (bmp.getvalue(), "not_an_image"),
        "magic_only.jpg": (b"\xff\xd8\xff", "unreadable_image"),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], "unreadable_image"),
        "truncated.png": (face[:5000], "unreadable_image"),
        "png_garbage.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "unreadable_image"),
        "webp_garbage.webp": (b"RIFF\x00\x10\x00\x00WEBPVP8 " + bytes(300), "unreadable_image"),
        "heic_garbage.heic": (b"\x00\x00\x00\x18ftypheic" + bytes(300), "unreadable_image"),
        "bomb.png": (_png_header_only(40000, 40000), "image_too_large"),
        "tiny.png": (_png(np.full((10, 10, 3), 128, np.uint8)), "image_too_small"),
        "thin.png": (_png(np.full((95, 400, 3), 128, np.uint8)), "image_too_small"),
        "strip.png": (_png_header_only(96, 40000), "bad_aspect_ratio"),
        "panorama.png": (_png_header_only(34000, 1700), "bad_aspect_ratio"),
        "wall.png": (_png(np.full((400, 400, 3), 180, np.uint8)), NO_FACE),
        "noise.png": (_png(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)), NO_FACE),
        "tiny_face.png": (_png(tiny_face), NO_FACE),
    }


def cli(capsys, *argv) -> tuple[int, list[str]]:
    """Exit code and stderr lines of ``likeness ARGV`` (argparse exits through SystemExit)."""
    capsys.readouterr()
    try:
        code = main(["-q", *map(str, argv)])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    return code, [ln for ln in err.splitlines() if ln.strip()]


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def assert_one_line_refusal(code, lines, what):
    assert code == 2, (what, code, lines)
    assert len(lines) == 1 and lines[0].startswith("likeness: error: "), (what, lines)
    assert "Traceback" not in lines[0] and "internal error" not in lines[0], (what, lines)


# -- the CLI ---------------------------------------------------------------------------------------------------


def test_cli_refuses_every_bad_photo_with_one_line(tmp_path, capsys, photos):
    (tmp_path / "in").mkdir()
    results = []
    for name, (data, _) in photos.items():
        (tmp_path / "in" / name).write_bytes(data)
    (tmp_path / "in" / "folder.jpg").mkdir()
    before = listing(tmp_path)
    for name in [*photos, "folder.jpg", "missing.jpg"]:
        code, lines = cli(capsys, "build", tmp_path / "in" / name, "-o", tmp_path / "out" / name, "--quality", "draft")
        assert_one_line_refusal(code, lines, name)
        results.append(name)
    assert listing(tmp_path) == before, "nothing written"
    print(f"CLI bad photos: {len(results)} cases, {len(results)} clean refusals")


def test_cli_refuses_every_bad_argument_with_one_line(tmp_path, capsys, astronaut_png):
    photo = tmp_path / "a.png"
    photo.write_bytes(astronaut_png)
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "notes.txt").write_text("my notes")
    (docs / "sub" / "data.bin").write_bytes(b"data")
    afile = tmp_path / "file.txt"
    afile.write_text("keep")
    nob = tmp_path / "no-bundle"
    b, r, t = ("build", photo, "-o", tmp_path / "o"), ("render", nob, "-o", tmp_path / "r.png"), ("turntable", nob)
    cases = {
        "face -1": (*b, "--face", "-1"),
        "face 65": (*b, "--face", "65"),
        "face 1.5": (*b, "--face", "1.5"),
        "face abc": (*b, "--face", "abc"),
        "focal inf": (*b, "--focal-35mm", "inf"),
        "focal nan": (*b, "--focal-35mm", "nan"),
        "focal 3": (*b, "--focal-35mm", "3"),
        "focal 1e9": (*b, "--focal-35mm", "1e9"),
        "focal -5": (*b, "--focal-35mm", "-5"),
        "quality ultra": (*b, "--quality", "ultra"),
        "device tpu": (*b, "--device", "tpu"),
        "landmarks dlib": (*b, "--landmarks", "dlib"),
        "-o a user folder": ("build", photo, "-o", docs),
        "-o a file": ("build", photo, "-o", afile),
        "-o under a file": ("build", photo, "-o", afile / "x"),
        "demo -o a user folder": ("demo", "-o", docs),
        "size 0": (*r, "--size", "0"),
        "size -8": (*r, "--size", "-8"),
        "size 30000": (*r, "--size", "30000"),
        "size 1.5": (*r, "--size", "1.5"),
        "yaw nan": (*r, "--yaw", "nan"),
        "yaw inf": (*r, "--yaw", "inf"),
        "yaw 1e9": (*r, "--yaw", "1e9"),
        "pitch 90": (*r, "--pitch", "90"),
        "pitch -100": (*r, "--pitch", "-100"),
        "distance -1": (*r, "--distance", "-1"),
        "distance 0": (*r, "--distance", "0"),
        "distance 1e6": (*r, "--distance", "1e6"),
        "fov 0": (*r, "--fov", "0"),
        "fov 180": (*r, "--fov", "180"),
        "fov nan": (*r, "--fov", "nan"),
        "focal-mm 0": (*r, "--focal-mm", "0"),
        "focal-mm -3": (*r, "--focal-mm", "-3"),
        "fov and focal-mm": (*r, "--fov", "40", "--focal-mm", "50"),
        "render -o a folder": ("render", nob, "-o", docs),
        "render --depth a folder": (*r, "--depth", docs),
        "render -o under a file": ("render", nob, "-o", afile / "x.png"),
        "render no bundle": r,
        "render a user folder as bundle": ("render", docs, "-o", tmp_path / "r.png"),
        "render expression junk": (*r, "--expression", "jawOpen=abc"),
        "frames 0": (*t, "--frames", "0"),
        "frames -1": (*t, "--frames", "-1"),
        "frames 1e9": (*t, "--frames", "1e9"),
        "fps 0": (*t, "--fps", "0"),
        "fps nan": (*t, "--fps", "nan"),
        "turntable size 0": (*t, "--size", "0"),
        "turntable -o a file": (*t, "-o", afile),
        "turntable no bundle": t,
        "drive smooth -1": ("drive", nob, "--csv", afile, "-o", tmp_path / "k.csv", "--smooth", "-1"),
        "drive max-frames 0": ("drive", nob, "--csv", afile, "-o", tmp_path / "k.csv", "--max-frames", "0"),
        "drive no source": ("drive", nob, "-o", tmp_path / "k.csv"),
        "serve workspace a file": ("serve", "--workspace", afile),
        "serve workspace under a file": ("serve", "--workspace", afile / "ws"),
        "serve port 70000": ("serve", "--port", "70000", "--workspace", tmp_path / "ws"),
        "serve port abc": ("serve", "--port", "abc"),
        "serve lan without token": ("serve", "--host", "0.0.0.0", "--workspace", tmp_path / "ws"),
        "serve short token": ("serve", "--token", "abc", "--workspace", tmp_path / "ws"),
        "no command": (),
        "unknown command": ("bake",),
    }
    before = listing(tmp_path)
    for what, argv in cases.items():
        code, lines = cli(capsys, *argv)
        assert_one_line_refusal(code, lines, what)
    after = [p for p in listing(tmp_path) if not p.startswith("ws")]  # serve's checks may create its workspace
    assert after == before, "nothing written or lost"
    assert (docs / "notes.txt").read_text() == "my notes" and (docs / "sub" / "data.bin").read_bytes() == b"data"
    print(f"CLI bad arguments: {len(cases)} cases, {len(cases)} clean refusals")


@pytest.mark.parametrize(
    "argv",
    [
        ("render", "nowhere", "--size", "0", "-o", "x.png"),
        ("build", "nowhere.jpg", "--face", "-1"),
        ("turntable", "nowhere", "--frames", "0"),
    ],
)
def test_cli_subprocess_exit_code_and_one_line(tmp_path, argv):
    p = subprocess.run([sys.executable, "-m", "engine", *argv], cwd=tmp_path, capture_output=True, text=True)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("likeness: error: "), p.stderr
    assert list(tmp_path.iterdir()) == []


# -- the server ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("bad") / "ws")
    srv.start()
    yield srv
    srv.stop()


def assert_json_refusal(r, what, code=None):
    assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["code"] and err["message"] and err["hint"], (what, err)
    assert "\n" not in err["message"] and "Traceback" not in r.text, (what, err)
    if code is not None:
        assert err["code"] in ((code,) if isinstance(code, str) else code), (what, err)
    return err


def workspace_state(srv) -> list[str]:
    """The avatars folder: no bundle and no leftover may appear from a refused input."""
    return sorted(p.name for p in (srv.workspace / "avatars").iterdir())


def finished(c, job_id):
    j = c.get(f"/v1/jobs/{job_id}").json()
    return j if j["state"] in ("succeeded", "failed", "cancelled") else None


@pytest.mark.slow
def test_server_refuses_every_bad_photo_and_option(server, photos, astronaut_png):
    def upload(data: bytes, name: str, options) -> object:
        form = {"options": options if isinstance(options, str) else json.dumps(options)}
        return c.post("/v1/builds", files={"file": (name, data, "application/octet-stream")}, data=form)

    n, at_build = 0, []
    before = workspace_state(server)
    with server.client() as c:
        for name, (data, code) in photos.items():
            r = upload(data, name, {"quality": "draft"})
            if r.status_code == 202:  # the header was fine: decoding and the face are the build's to refuse
                job_id = r.json()["job"]["id"]
                job = wait_for(lambda: finished(c, job_id), 300, 0.2, f"the job of {name}")  # noqa: B023
                err = job["error"]
                assert job["state"] == "failed" and err["code"] in code and err["hint"], (name, job)
                at_build.append(name)
            else:
                assert_json_refusal(r, name, code)
            n += 1
        bad_options = {
            "face -1": {"face_index": -1},
            "face 65": {"face_index": 65},
            "face 1.5": {"face_index": 1.5},
            "face string": {"face_index": "abc"},
            "face true": {"face_index": True},
            "focal 3": {"focal_35mm": 3},
            "focal 1e9": {"focal_35mm": 1e9},
            "focal -5": {"focal_35mm": -5},
            "focal NaN": '{"focal_35mm": NaN}',
            "focal Infinity": '{"focal_35mm": Infinity}',
            "quality ultra": {"quality": "ultra"},
            "unknown key": {"qualty": "draft"},
            "nested 3000 deep": "[" * 3000 + "]" * 3000,
            "nested object 3000 deep": '{"a":' * 3000 + "1" + "}" * 3000,
            "not JSON": "{quality: draft",
            "a list": [1, 2, 3],
            "a number": "42",
        }
        for what, options in bad_options.items():
            assert_json_refusal(upload(astronaut_png, "a.png", options), what)
            n += 1
        cam = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 2.0], [0, 0, 0, 1.0]]
        intr = {"fx": 500.0, "fy": 500.0, "cx": 32.0, "cy": 32.0, "width": 64, "height": 64}
        bad_renders = {
            "width 0": {"cam2world": cam, "intrinsics": {**intr, "width": 0}},
            "width 30000": {"cam2world": cam, "intrinsics": {**intr, "width": 30000}},
            "height -8": {"cam2world": cam, "intrinsics": {**intr, "height": -8}},
            "fx 0": {"cam2world": cam, "intrinsics": {**intr, "fx": 0}},
            "3x3 matrix": {"cam2world": [r[:3] for r in cam[:3]], "intrinsics": intr},
            "scaled rotation": {"cam2world": [[2.0, 0, 0, 0], *cam[1:]], "intrinsics": intr},
            "weight 2": {"cam2world": cam, "intrinsics": intr, "expression": {"jawOpen": 2.0}},
            "output tiff": {"cam2world": cam, "intrinsics": intr, "output": "tiff"},
            "no intrinsics": {"cam2world": cam},
        }
        for what, body in bad_renders.items():
            r = c.post(f"/v1/avatars/{'0' * 32}/render", json=body)
            assert_json_refusal(r, what)
            n += 1
        r = c.post(f"/v1/avatars/{'0' * 32}/render", content=b'{"cam2world": [[NaN]]}')
        assert_json_refusal(r, "NaN in the body")
        n += 1
        for what, path in {"unknown avatar": "0" * 32, "traversal": "..%2F..%2Fetc", "long id": "a" * 5000}.items():
            assert_json_refusal(c.get(f"/v1/avatars/{path}"), what)
            n += 1
        assert c.get("/v1/health").status_code == 200
    assert workspace_state(server) == before, "nothing written"
    assert set(at_build) <= {"truncated.jpg", "truncated.png", "wall.png", "noise.png", "tiny_face.png"}, at_build
    print(f"server bad inputs: {n} cases, {n} clean refusals ({len(at_build)} as failed jobs: {at_build})")
