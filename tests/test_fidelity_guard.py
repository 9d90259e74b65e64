"""Fidelity guard: render the project's synthetic head (ground truth of our own), build it at the draft preset
from the input view alone, score the other views, and fail when fidelity drops below the measured baseline.

The ground truth is small so the test stays near three minutes on an idle two-core CPU: five views at 256^2
(input + yaw +-30 + pitch +-20) rendered with Workbench (studio light), camera 0.7 m away with a 30 deg vertical
field of view. The build uses the draft preset's fitting settings unchanged; only outputs the score never reads
are shrunk (turntable 2 frames of 64^2, texture 256^2).

BASELINE below was measured by running this test; THRESHOLDS sit off it by a margin meant to cover run-to-run and
machine-to-machine noise (BLAS thread counts, the software-GL Workbench render), while a real regression -- a broken
alignment, a field that no longer fits the photo, a collapsed silhouette -- costs more.
"""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # a real server process / build (make quick skips it)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

# Measured baseline of this exact test: 2026-12-01 on the two-core development machine (torch 2.13 CPU, bpy 5.0.1
# Workbench), the session-6 default: head-prior with hidden voxels kept and the torso prior. Before it (2026-11-21,
# proxy-init, commit 150b6ad) this head measured input 31.92 dB, novel 17.55 dB / SSIM 0.6622 / IoU 0.8905, depth
# L1 0.0722, landmarks 2.55 %. This cartoon head has no ears, a narrow skull and a neck on a stick: keeping the
# voxels no ray reaches costs it 0.4 dB at +-30 deg (the regularisers used to shrink the proxy's sides), the torso
# prior widens its neck (IoU -0.024), while Lee Perry-Smith's full circle gains 0.8 dB and 0.13 IoU from the same
# changes (docs/FIDELITY.md, "Behind the face"; scripts/guard_settings.py measures this head per setting). The
# baseline moved for those measured reasons; the thresholds keep their margins off it. Session 6's default
# measured 31.60 / 16.58 / 0.6376 / 0.8416 / 0.0768 / 2.48. 2026-12-02 (session 8) the body prior below the chin is
# on by default (torso_front, neck_column, layer_smooth) with the bald-skull colour (this head is not bald) and
# the torso's depth centre 6 cm behind the ear plane, not 3 (30.70 / 16.65 / 0.6277 / 0.8421 / 0.0923 / 2.51 at 3 cm):
# this head's stick of a neck is replaced by the template's neck in front (input-view depth L1 +0.016, input view
# -1.0 dB), while Lee Perry-Smith's whole-head depth L1 goes 0.173 -> 0.105 and its full circle +1.3 dB
# (docs/FIDELITY.md, "The body below the chin" and the section after it).
BASELINE = {
    "input_psnr_db": 30.42,
    "novel_psnr_db": 16.52,
    "novel_ssim": 0.6281,
    "novel_iou": 0.8367,
    "depth_l1": 0.0922,
    "lmk_err_pct": 2.45,
}
# Thresholds: about 1.2-1.5 dB, 0.04 SSIM, 0.03 IoU, 0.013 depth L1 and 1.25 % landmark error off the baseline.
# The run repeats bit for bit on one machine. For scale (docs/FIDELITY.md): random initialisation drops the
# input-view PSNR by 8-11 dB and the IoU to 0.2-0.3; a 6 deg frame misalignment costs 2.9 dB at the input view.
THRESHOLDS = {
    "input_psnr_db": (">=", 29.4),
    "novel_psnr_db": (">=", 15.3),
    "novel_ssim": (">=", 0.59),
    "novel_iou": (">=", 0.81),
    "depth_l1": ("<=", 0.105),
    "lmk_err_pct": ("<=", 3.6),
}


def _groundtruth(out: Path) -> None:
    from make_groundtruth import make_groundtruth, parse_args

    args: Namespace = parse_args(
        [
            "--head",
            "synthetic",
            "-o",
            str(out),
            "--engine",
            "workbench",
            "--size",
            "256",
            "--distance",
            "0.7",
            "--tex-size",
            "512",
            "--views=-30:0,30:0,0:20,0:-20",
        ]
    )
    assert make_groundtruth(args) is not None


@pytest.mark.blender
def test_synthetic_head_fidelity(tmp_path):
    pytest.importorskip("bpy")
    from eval_fidelity import build
    from harness.evaluate import evaluate
    from harness.groundtruth import load_dataset

    from engine.avatar import load_avatar, load_landmarks_world

    gt_dir = tmp_path / "gt"
    _groundtruth(gt_dir)
    ds = load_dataset(gt_dir)
    assert len(ds.views) == 5
    # The GT cameras agree with Blender's: its silhouettes match the exact rasterised ones.
    assert min(v["blender_vs_raster_iou"] for v in ds.meta["views"].values()) > 0.99

    bundle = tmp_path / "bundle"
    overrides = {"turntable_frames": 2, "turntable_size": 64, "texture_size": 256}
    build(ds.photo_path(), ds.meta["focal_35mm"], "draft", "cpu", bundle, overrides)
    avatar = load_avatar(bundle)
    report, _ = evaluate(avatar, load_landmarks_world(avatar), ds, "camera", log=lambda *_: None)

    got = {
        "input_psnr_db": report["input"]["psnr_db"],
        "novel_psnr_db": report["novel_mean"]["psnr_db"],
        "novel_ssim": report["novel_mean"]["ssim"],
        "novel_iou": report["novel_mean"]["iou"],
        "depth_l1": report["input"]["depth"]["l1"],
        "lmk_err_pct": report["novel_mean"]["lmk_err_pct"],
    }
    print("fidelity guard measured:", {k: round(v, 4) for k, v in got.items()})
    assert report["novel_mean"]["views_with_one_face"] == 4, "mediapipe must find one face in every novel view"
    failures = []
    for key, (op, limit) in THRESHOLDS.items():
        v = got[key]
        ok = v >= limit if op == ">=" else v <= limit
        if not ok:
            failures.append(f"{key} = {v:.4f}, must be {op} {limit} (baseline {BASELINE[key]})")
    assert not failures, "fidelity regression: " + "; ".join(failures)


# ------------------------------------------------------------------------ the harness's own maths (fast, no bpy)
def _similarity():
    from scipy.spatial.transform import Rotation

    from engine.proxy.canonical import Similarity

    return Similarity(
        1.3, Rotation.from_euler("xyz", [10, -25, 5], degrees=True).as_matrix(), np.array([0.1, -0.2, 0.3])
    )


def test_depth_metric_is_scale_and_shift_invariant():
    from harness.scoring import depth_ssi

    rng = np.random.default_rng(0)
    gt = rng.uniform(0.6, 0.9, (32, 32))
    valid = np.ones_like(gt, bool)
    assert depth_ssi(2.5 * gt + 0.7, gt, valid)["l1"] < 1e-9
    noisy = depth_ssi(gt + rng.normal(0, 0.01, gt.shape), gt, valid)
    assert 0.0 < noisy["l1"] < noisy["rmse"] < 0.1


def test_camera_alignment_recovers_a_known_similarity():
    from harness.align import Alignment, camera_alignment
    from harness.groundtruth import camera

    sim = _similarity()
    truth = Alignment(sim, "truth", {})
    c_in = camera(0.0, 0.0, 0.8)
    depth_gt = np.full((16, 16), 0.7)
    a = camera_alignment(c_in, truth.camera(c_in), depth_gt * sim.scale, depth_gt, np.ones((16, 16), bool))
    assert abs(a.to_world.scale - sim.scale) < 1e-9
    novel = camera(30.0, -20.0, 0.8)
    assert np.allclose(a.camera(novel), truth.camera(novel), atol=1e-9)


def test_landmark_alignment_recovers_a_known_similarity():
    from harness.align import landmark_alignment
    from harness.groundtruth import camera

    from engine.conventions import Intrinsics

    sim = _similarity()
    intr = Intrinsics.from_fov(30.0, 128, 128)
    c_in = camera(0.0, 0.0, 0.8)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:128, 0:128] + 0.5
    depth = 0.7 + 0.05 * np.sin(xx / 20.0) * np.cos(yy / 15.0)  # smooth, so every landmark has valid depth
    uv = rng.uniform(20, 108, (60, 2))
    from harness.align import backproject

    pts_gt, ok = backproject(uv, depth, c_in, intr)
    assert ok.all()
    a = landmark_alignment(np.c_[uv, np.zeros(60)], depth, c_in, intr, sim.apply(pts_gt))
    assert abs(a.to_world.scale - sim.scale) < 1e-6
    assert np.allclose(a.to_world.rotation, sim.rotation, atol=1e-6)
