"""The harness all the way round (issue 13 item 5): the full-circle camera grid, the turntable defect score on
synthetic turntables the test paints itself (a radial fan, vertical streaks, a flat wall, front colours on the
back vs a smooth head), and the dlib identity distance on real photos (skipped without the dev extra or
../shared)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from conftest import SHARED  # noqa: E402

PORTRAITS = SHARED / "portraits"


# ------------------------------------------------------------------------------------------------ the full grid
def test_full_grid_cameras():
    from harness import groundtruth as gt
    from make_groundtruth import _views, parse_args

    views = _views(parse_args(["--grid", "full", "-o", "/tmp/unused"]))
    names = [n for n, _, _ in views]
    assert names[0] == "input" and len(names) == len(set(names)) == 14
    got = {(y, p) for _, y, p in views[1:]}
    want = {(y, 0.0) for y in (30, -30, 60, -60, 90, -90, 120, -120, 150, -150, 180)} | {(0.0, 20.0), (0.0, -20.0)}
    assert got == want  # yaw 0 / pitch 0 is the input view, 180 appears once
    assert "yaw+180_pitch+00" in names and "yaw-150_pitch+00" in names
    # Buckets fold |yaw| into [0, 180].
    assert [gt.yaw_bucket(y) for y in (0, -30, 150, -150, 180, -180, 210)] == [0, 30, 150, 150, 180, 180, 150]
    # Cameras orbit the head: yaw 180 looks at the back from -Z, yaw +90 from the subject's left (+X).
    for yaw, pos in ((180.0, (0, 0, -1)), (90.0, (1, 0, 0)), (-90.0, (-1, 0, 0))):
        c2w = gt.camera(yaw, 0.0, 0.85)
        assert np.allclose(c2w[:3, 3], 0.85 * np.array(pos), atol=1e-9)
        assert np.allclose(c2w[:3, :3] @ np.array([0, 0, -1.0]), -np.array(pos), atol=1e-9)  # looks at the centre
    # The default grid is unchanged (yaw +-45 in 15 deg steps x pitch -20/0/20, input excluded).
    default = _views(parse_args(["-o", "/tmp/unused"]))
    assert len(default) == 1 + 7 * 3 - 1
    tt = _views(parse_args(["--grid", "turntable", "--frames", "8", "-o", "/tmp/unused"]))
    assert [round(y) for _, y, _ in tt[1:]] == [0, 45, 90, 135, 180, -135, -90, -45]


def test_buckets_fold_and_mean():
    from harness.scoring import yaw_buckets

    rows = [
        {"yaw_deg": y, "pitch_deg": 0.0, "psnr_db": float(p), "iou": 0.5}
        for y, p in ((150, 10), (-150, 20), (180, 30), (0, 40))
    ]
    b = {r["bucket"]: r for r in yaw_buckets(rows)}
    assert list(b) == ["|yaw| = 0", "|yaw| = 150", "|yaw| = 180"]
    assert b["|yaw| = 150"]["views"] == 2 and b["|yaw| = 150"]["psnr_db"] == 15.0
    assert b["|yaw| = 180"]["depth_mm"] is None  # absent keys stay None


# ------------------------------------------------------------------------------------------------ defect score
N, S = 36, 160  # frames, side


def _turntable(fan=False, streaks=False, wall=False, smear=False, seed=0):
    """A painted head turning round: an ellipse silhouette whose width follows a real head's (or a box's, with
    ``wall``), hair-brown with fine isotropic texture, a skin face and blue clothing at the front."""
    from harness.defects import Turntable
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64)
    cx, cy = S / 2, S * 0.42
    a_half, c_half, hh = 0.23 * S, 0.29 * S, 0.33 * S  # half breadth, half depth, half height (px)
    hair, skin, cloth = np.array([0.30, 0.20, 0.12]), np.array([0.85, 0.65, 0.55]), np.array([0.15, 0.25, 0.55])
    rgb = np.zeros((N, S, S, 3), np.float32)
    alpha = np.zeros((N, S, S), np.float32)
    for i in range(N):
        t = np.radians(360.0 * i / N)
        if wall:
            half = a_half * abs(np.cos(t)) + c_half * abs(np.sin(t))  # a box: kinks where a side is edge-on
        else:
            half = np.sqrt((a_half * np.cos(t)) ** 2 + (c_half * np.sin(t)) ** 2)
        head = ((xx - cx) / half) ** 2 + ((yy - cy) / hh) ** 2 <= 1.0
        body = (yy > cy + 0.8 * hh) & (np.abs(xx - cx) < 0.45 * S)
        tex = gaussian_filter(rng.normal(0, 1, (S, S)), 1.0) * 0.05
        img = hair[None, None] * (1.0 + tex[..., None])
        front = np.cos(t)  # how much of the face is toward the camera
        if front > 0.2:
            face = ((xx - cx - 0.5 * half * np.sin(t)) / (0.6 * half)) ** 2 + ((yy - cy - 0.2 * hh) / (0.7 * hh)) ** 2
            img = np.where((face <= 1.0)[..., None], skin, img)
        img = np.where(body[..., None], cloth, img)
        back = abs(360.0 * i / N - 180.0) <= 20.0
        if back and fan:  # radial stripes around a point in the middle of the back of the head
            ang = np.arctan2(yy - cy, xx - cx)
            img = img * (1.0 + 0.6 * np.sign(np.sin(12 * ang)))[..., None]
        if back and streaks:  # light and dark columns down the whole back
            img = img * (1.0 + 0.3 * np.sign(np.sin(xx * 2 * np.pi / 9.0)))[..., None]
        if back and smear:  # the face's skin copied through onto the back of the head
            patch = ((xx - cx) / (0.6 * half)) ** 2 + ((yy - cy - 0.1 * hh) / (0.6 * hh)) ** 2 <= 1.0
            img = np.where(patch[..., None], skin, img)
        rgb[i] = np.clip(img, 0, 1)
        alpha[i] = head | body
    return Turntable(np.arange(N) * 360.0 / N, rgb, alpha, "painted")


@pytest.fixture(scope="module")
def smooth_report():
    from harness.defects import score_turntable

    return score_turntable(_turntable())


def test_smooth_turntable_passes(smooth_report):
    from harness.defects import THRESHOLDS

    s = smooth_report.scores
    assert smooth_report.ok, s
    assert all(s[k] < 0.5 * THRESHOLDS[k] for k in ("fan", "streaks", "smear")), s
    assert s["walls"] < THRESHOLDS["walls"]  # an ellipse: pixel rounding only


@pytest.mark.parametrize("defect", ["fan", "streaks", "walls", "smear"])
def test_painted_defect_is_flagged(defect, smooth_report):
    from harness.defects import score_turntable

    r = score_turntable(_turntable(**{{"walls": "wall"}.get(defect, defect): True}))
    assert not r.passed[defect], (defect, r.scores)
    assert r.scores[defect] > smooth_report.scores[defect]


def test_defect_cli_reads_a_frame_folder(tmp_path):
    from PIL import Image
    from turntable_defects import main

    tt = _turntable(fan=True)
    for i in range(N):
        rgba = np.concatenate([tt.rgb[i], tt.alpha[i][..., None]], -1)
        Image.fromarray((rgba * 255 + 0.5).astype(np.uint8)).save(tmp_path / f"frame_{i:03d}.png")
    assert main([str(tmp_path), "--json", str(tmp_path / "d.json")]) == 1  # flagged
    assert main([str(tmp_path / "nothing")]) == 2


# ------------------------------------------------------------------------------------------------ identity
def _photo(name: str) -> np.ndarray:
    from PIL import Image

    im = Image.open(PORTRAITS / name).convert("RGB")
    im.thumbnail((800, 800))
    return np.asarray(im)


def test_identity_on_real_photos():
    from harness import identity

    ok, why = identity.available()
    if not ok:
        pytest.skip(why)
    if not (PORTRAITS / "maxrec_Chris.jpeg").is_file():
        pytest.skip("../shared/portraits absent")
    chris, woman = _photo("maxrec_Chris.jpeg"), _photo("singnet_woman_portrait.jpg")
    a = identity.describe(chris)
    assert a is not None and a.vector.shape == (128,) and a.detector == "hog"
    mirrored = identity.descriptor(np.ascontiguousarray(chris[:, ::-1]))
    other = identity.descriptor(woman)
    assert identity.distance(a, mirrored) < 0.3  # the same photo mirrored: the same person
    assert identity.distance(a, other) > identity.SAME_PERSON  # two different people
    assert identity.distance(a, None) is None
    # Nothing to find in a flat grey image.
    assert identity.describe(np.full((200, 200, 3), 128, np.uint8)) is None


def test_identity_script_without_dev_extra(monkeypatch, capsys):
    import identity as script
    from harness import identity

    monkeypatch.setattr(identity, "available", lambda: (False, "identity distance unavailable: dlib-bin missing"))
    assert script.main(["out/demo"]) == 2
    assert capsys.readouterr().out.strip().count("\n") == 0
