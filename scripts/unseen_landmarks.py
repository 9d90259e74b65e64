"""Landmarks a turned photo cannot see: mediapipe's guess against the mirrored near side, on ground truth.

    python scripts/make_groundtruth.py --head LeePerrySmith -o out/gt/lps --size 512 --samples 64   # once
    python scripts/unseen_landmarks.py --gt out/gt/lps

The truth: mediapipe's 468 landmarks on the GT *frontal* image, lifted to 3D with the GT depth and camera. For each
turned GT view the landmarks are found and lifted as a build does (``engine.face.camera.estimate_pose``), then
completed by ``engine.face.symmetry.complete_unseen`` with that view's camera. Each set is aligned to the truth by
a similarity fitted on the landmarks the view sees head-on (cos > 0.5), and the errors are reported in mm: over
all landmarks, over the ones the completion replaces (weight > 0.5), and over the face outline. One JSON line per
view.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from harness.groundtruth import load_dataset  # noqa: E402

from engine.face.camera import estimate_pose  # noqa: E402
from engine.face.landmarks import detect_faces  # noqa: E402
from engine.face.mesh import N_MESH  # noqa: E402
from engine.face.symmetry import complete_unseen, photo_cos  # noqa: E402
from engine.proxy.canonical import umeyama  # noqa: E402
from engine.rig.topology import contours  # noqa: E402


def _u8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def truth_landmarks(view) -> np.ndarray:
    """(468, 3) GT-frame landmarks of a view: its detected pixels lifted with the GT z-depth (median of a 3x3
    window, so an outline landmark on the silhouette still finds the surface); NaN where no depth is found."""
    faces, _ = detect_faces(_u8(view.rgb))
    p = faces[0].points_px[:N_MESH]
    intr, out = view.intr, np.full((N_MESH, 3), np.nan)
    for k, (u, v) in enumerate(p[:, :2]):
        iu, iv = int(u), int(v)
        win = view.depth_m[max(iv - 1, 0) : iv + 2, max(iu - 1, 0) : iu + 2]
        ok = np.isfinite(win) & (win > 0)
        if ok.any():
            z = float(np.median(win[ok]))
            xc = np.array([(u - intr.cx) * z / intr.fx, -(v - intr.cy) * z / intr.fy, -z])  # gl camera
            out[k] = view.cam2world[:3, :3] @ xc + view.cam2world[:3, 3]
    return out


def score(view, truth: np.ndarray) -> dict:
    faces, _ = detect_faces(_u8(view.rgb))
    pose = estimate_pose(faces[0].points_px, view.intr)
    raw = pose.landmarks_world()
    cam = pose.world_from_cv()[:3, 3]
    done, w = complete_unseen(raw, cam)
    ok = np.isfinite(truth[:, 0])
    head_on = ok & (photo_cos(raw, cam) > 0.5)
    replaced = ok & (w > 0.5)
    outline = np.zeros(N_MESH, bool)
    outline[contours()["oval"]] = True  # mediapipe's face oval
    rec = {"view": view.name, "yaw": view.yaw_deg, "pitch": view.pitch_deg, "replaced": int(replaced.sum())}
    for name, est in (("raw", raw[:N_MESH]), ("completed", done[:N_MESH])):
        fit = umeyama(est[head_on], truth[head_on])
        err = np.linalg.norm(fit.apply(est) - truth, axis=1) * 1000.0
        rec[name] = {
            "all_mm": round(float(err[ok].mean()), 2),
            "replaced_mm": round(float(err[replaced].mean()), 2) if replaced.any() else None,
            "outline_mm": round(float(err[ok & outline].mean()), 2),
        }
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gt", required=True, help="ground-truth folder (scripts/make_groundtruth.py)")
    ap.add_argument("--pitch", type=float, default=0.0, help="score the turned views at this pitch")
    args = ap.parse_args()
    ds = load_dataset(args.gt)
    truth = truth_landmarks(ds.views[ds.input_name])
    if abs(ds.views[ds.input_name].yaw_deg) > 1e-6:
        print("the dataset's input view is not frontal; the truth needs a frontal view", file=sys.stderr)
        return 2
    for v in sorted(ds.novel(), key=lambda v: v.yaw_deg):
        if abs(v.pitch_deg - args.pitch) < 1e-6 and abs(v.yaw_deg) > 1e-6:
            print(json.dumps(score(v, truth)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
