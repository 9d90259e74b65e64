"""The likeness command as a user runs it: refusals are one clear line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # each case is a `likeness` process (make quick skips it)


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "engine", "-q", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def _errline(proc):
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("likeness: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_not_an_image(tmp_path):
    f = tmp_path / "notes.jpg"
    f.write_text("not really a jpeg")
    p = run("build", str(f), "-o", str(tmp_path / "b"))
    assert p.returncode == 2 and "not an image" in _errline(p)
    assert not (tmp_path / "b").exists()


def test_no_face(tmp_path):
    f = tmp_path / "wall.png"
    Image.fromarray(np.full((400, 400, 3), 180, np.uint8)).save(f)
    p = run("build", str(f), "-o", str(tmp_path / "b"))
    assert p.returncode == 2 and "no face found" in _errline(p)


def test_face_too_small(tmp_path, astronaut_rgb):
    small = np.asarray(Image.fromarray(astronaut_rgb).resize((160, 160)))
    canvas = np.full((1200, 1200, 3), 230, np.uint8)
    canvas[500:660, 500:660] = small
    f = tmp_path / "far.png"
    Image.fromarray(canvas).save(f)
    p = run("build", str(f), "-o", str(tmp_path / "b"))
    assert p.returncode == 2
    assert "too small" in _errline(p) or "no face" in _errline(p)


def test_face_index_out_of_range(tmp_path, astronaut_png):
    f = tmp_path / "a.png"
    f.write_bytes(astronaut_png)
    p = run("build", str(f), "--face", "3", "-o", str(tmp_path / "b"))
    assert p.returncode == 2 and "--face 3" in _errline(p)


def test_face_alignment_demanded_without_weights(tmp_path, astronaut_png):
    f = tmp_path / "a.png"
    f.write_bytes(astronaut_png)
    env_dir = tmp_path / "no_weights"
    env_dir.mkdir()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "-q",
            "build",
            str(f),
            "--landmarks",
            "face-alignment",
            "-o",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "LIKENESS_FACE_ALIGNMENT_DIR": str(env_dir)},
    )
    assert p.returncode == 2 and "face-alignment" in _errline(p)
    assert not (tmp_path / "b").exists()


def test_cuda_demanded_without_gpu(tmp_path, astronaut_png):
    import torch

    if torch.cuda.is_available():
        return
    f = tmp_path / "a.png"
    f.write_bytes(astronaut_png)
    p = run("build", str(f), "--device", "cuda", "--quality", "draft", "-o", str(tmp_path / "b"))
    assert p.returncode == 2 and "no CUDA GPU" in _errline(p)


def test_render_and_dolly(tmp_path, draft_bundle):
    a = run(
        "render",
        str(draft_bundle),
        "--yaw",
        "30",
        "--size",
        "128",
        "-o",
        str(tmp_path / "a.png"),
        "--depth",
        str(tmp_path / "a.exr"),
    )
    assert a.returncode == 0, a.stderr
    assert (tmp_path / "a.png").is_file() and (tmp_path / "a.exr").is_file()
    # Perspective manipulation: twice as far with the focal length following keeps the head's size.
    near = run("render", str(draft_bundle), "--size", "128", "-o", str(tmp_path / "n.png"))
    far = run("render", str(draft_bundle), "--size", "128", "--distance", "3.0", "-o", str(tmp_path / "f.png"))
    assert near.returncode == 0 and far.returncode == 0
    an = np.asarray(Image.open(tmp_path / "n.png"))[..., 3] > 127
    af = np.asarray(Image.open(tmp_path / "f.png"))[..., 3] > 127
    assert abs(an.sum() - af.sum()) / an.sum() < 0.08


def test_several_faces_takes_largest(astronaut_rgb):
    from engine.face.landmarks import choose_face

    big = np.asarray(Image.fromarray(astronaut_rgb).resize((768, 768)))
    canvas = np.full((768, 1300, 3), 200, np.uint8)
    canvas[:, :768] = big
    canvas[128:640, 780:1292] = astronaut_rgb
    face, n, _ = choose_face(canvas)
    assert n == 2 and face.box_px[0] < 768
    face1, _, _ = choose_face(canvas, face_index=1)
    assert face1.box_px[0] > 768 and face1.size_px < face.size_px


def test_uv_layout_is_a_build_option(tmp_path, astronaut_png):
    """``--uv-layout`` reaches the build's config (its asset stage writes that layout, docs/ASSET.md); a bad
    value is refused by the command line before anything is read or written."""
    from engine.cli import build_config, make_parser

    parser = make_parser()
    for cmd in (["build", "a.png"], ["demo"]):
        assert build_config(parser.parse_args([*cmd, "--quality", "draft"])).uv_layout == "shared"
        assert build_config(parser.parse_args([*cmd, "--uv-layout", "subject"])).uv_layout == "subject"
    f = tmp_path / "a.png"
    f.write_bytes(astronaut_png)
    p = run("build", str(f), "--uv-layout", "cube", "-o", str(tmp_path / "b"))
    assert p.returncode == 2 and "--uv-layout" in _errline(p) and not (tmp_path / "b").exists()
