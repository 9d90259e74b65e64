"""Fidelity guard: render a head made from the prior (template-a, scripts/harness/template_heads.py: ground truth of
our own, a whole head with ears and hair), build it at the draft preset from the input view alone, score the other
views, and fail when fidelity drops below the measured baseline.

The ground truth is small so the test stays near four minutes on a two-core CPU: eight views at 256^2 (input, yaw
+-30, pitch +-20, and round the back yaw +-90 and 180) rendered with Workbench (studio light), camera 0.7 m away
with a 30 deg vertical field of view. The build uses the draft preset's fitting settings unchanged; only outputs
the score never reads are shrunk (turntable 2 frames of 64^2, texture 256^2). The front numbers (``novel_*``,
landmarks) are the means over |yaw| <= 30; ``round_*`` over |yaw| >= 90.

BASELINE below was measured by running this test; THRESHOLDS sit off it by a margin meant to cover run-to-run and
machine-to-machine noise (BLAS thread counts, the software-GL Workbench render), while a real regression -- a broken
alignment, a field that no longer fits the photo, a collapsed silhouette, the back of the head lost -- costs more.
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

# Measured baseline of this exact test: 2026-12-02 (session 9) on the two-core development machine at load ~3
# (torch 2.13 CPU, bpy 5.0.1 Workbench), today's default (head-prior, body prior below the chin). Until session 8 the
# guard's head was the procedural cartoon head (scripts/harness/heads.py, no ears, a neck on a stick, five views
# with none behind 30 deg; its last baseline 30.42 / 16.52 / 0.6281 / 0.8367 / 0.0922 / 2.45, history in
# docs/FIDELITY.md, "The CI guard"). template-a has ears, a hair volume and a whole skull, so the guard now sees
# the sides and back; its ±30 deg numbers are lower than the cartoon head's (its hairline and ears are harder than
# a painted cap) and are not comparable with them.
BASELINE = {
    "input_psnr_db": 30.19,
    "novel_psnr_db": 15.26,
    "novel_ssim": 0.6627,
    "novel_iou": 0.8474,
    "depth_l1": 0.0939,
    "lmk_err_pct": 2.20,
    "round_psnr_db": 13.51,
    "round_iou": 0.8095,
}
# Thresholds: about 1.0-1.2 dB, 0.04 SSIM, 0.03 IoU, 0.014 depth L1 and 1.2 % landmark error off the baseline, as
# the cartoon head's were. The run repeats bit for bit on one machine. For scale (docs/FIDELITY.md): random
# initialisation drops the input-view PSNR by 8-11 dB and the IoU to 0.2-0.3; a 6 deg frame misalignment costs
# 2.9 dB at the input view; the back without the head prior (proxy-init's mirrored egg) is what round_* guards.
THRESHOLDS = {
    "input_psnr_db": (">=", 29.2),
    "novel_psnr_db": (">=", 14.1),
    "novel_ssim": (">=", 0.62),
    "novel_iou": (">=", 0.82),
    "depth_l1": ("<=", 0.108),
    "lmk_err_pct": ("<=", 3.4),
    "round_psnr_db": (">=", 12.3),
    "round_iou": (">=", 0.78),
}


GUARD_HEAD = "template-a"
"""A head made from the prior (scripts/harness/template_heads.py): skull, ears, neck and hair, so the views behind
the ears are real ground truth."""
GUARD_VIEWS = "-30:0,30:0,0:20,0:-20,90:0,-90:0,180:0"


def _groundtruth(out: Path, head: str = GUARD_HEAD) -> None:
    from make_groundtruth import make_groundtruth, parse_args

    args: Namespace = parse_args(
        [
            "--head",
            head,
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
            f"--views={GUARD_VIEWS}",
        ]
    )
    if make_groundtruth(args) is None:
        pytest.skip("the head prior is not prepared: run likeness prepare-prior")


def _mean(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if isinstance(r.get(key), float) and np.isfinite(r[key])]
    return float(np.mean(vals)) if vals else float("nan")


def guard_numbers(report: dict) -> dict:
    """The guard's numbers from an evaluation report: the input view, the front views (|yaw| <= 30, pitch +-20)
    and the views round the back (|yaw| >= 90)."""
    rows = report["views"]
    front = [r for r in rows if abs(r["yaw_deg"]) <= 30]
    back = [r for r in rows if abs(r["yaw_deg"]) >= 90]
    return {
        "input_psnr_db": report["input"]["psnr_db"],
        "novel_psnr_db": _mean(front, "psnr_db"),
        "novel_ssim": _mean(front, "ssim"),
        "novel_iou": _mean(front, "iou"),
        "depth_l1": report["input"]["depth"]["l1"],
        "lmk_err_pct": _mean(front, "lmk_err_pct"),
        "round_psnr_db": _mean(back, "psnr_db"),
        "round_iou": _mean(back, "iou"),
        "front_faces": sum(1 for r in front if r["faces_detected"] == 1),
    }


@pytest.mark.blender
def test_template_head_fidelity(tmp_path):
    pytest.importorskip("bpy")
    from eval_fidelity import build
    from harness.evaluate import evaluate
    from harness.groundtruth import load_dataset

    from engine.avatar import load_avatar, load_landmarks_world

    gt_dir = tmp_path / "gt"
    _groundtruth(gt_dir)
    ds = load_dataset(gt_dir)
    assert len(ds.views) == 8
    # The GT cameras agree with Blender's: its silhouettes match the exact rasterised ones.
    assert min(v["blender_vs_raster_iou"] for v in ds.meta["views"].values()) > 0.99

    bundle = tmp_path / "bundle"
    overrides = {"turntable_frames": 2, "turntable_size": 64, "texture_size": 256}
    build(ds.photo_path(), ds.meta["focal_35mm"], "draft", "cpu", bundle, overrides)
    avatar = load_avatar(bundle)
    report, _ = evaluate(avatar, load_landmarks_world(avatar), ds, "camera", log=lambda *_: None)

    got = guard_numbers(report)
    print("fidelity guard measured:", {k: round(v, 4) for k, v in got.items()})
    assert got.pop("front_faces") == 4, "mediapipe must find one face in every front view"
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
