"""Score a built avatar against a ground-truth dataset: align the frames, render every GT camera, measure.

The avatar is anything with the engine's :class:`engine.avatar.Avatar` interface (a loaded bundle, or a field
fitted by the ablations). Scored regions:

* image metrics use the union of the GT silhouette *inside the avatar's reconstruction volume* (GT surface
  points that fall in the field's box once carried into the bundle's world -- the engine reconstructs only the
  photo's face crop, so shoulders outside it are not its to get right) and the avatar's own silhouette; both
  images are composited over the dataset's background colour;
* silhouette IoU compares the same in-volume GT silhouette with the avatar's alpha > 0.5;
* depth at the input view uses pixels where both depths exist (the whole overlap, neck and shoulders
  included), the in-volume GT silhouette (the whole head the field reconstructs), and the face only (hull of
  the GT landmarks), each scale-and-shift invariant; at every novel view, the same invariant error over the
  in-volume overlap and the metric error (mm, our depth divided by the alignment's scale);
* identity (dlib's face descriptor, :mod:`harness.identity`, when the dev extra is installed): our render vs
  the GT render of the same camera, and the GT view vs the GT input view (how far the real person's own views
  are), for |yaw| <= ``IDENTITY_MAX_YAW``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from engine.conventions import Intrinsics, project_points
from harness import align as al
from harness import identity as idn
from harness import scoring as sc
from harness.groundtruth import GTDataset, GTView, yaw_bucket

IDENTITY_MAX_YAW = 60.0


@dataclass
class ViewResult:
    row: dict
    gt_rgb: np.ndarray
    ours_rgb: np.ndarray
    extra: dict = field(default_factory=dict)


def _u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def in_volume_mask(view: GTView, alignment: al.Alignment, avatar) -> np.ndarray:
    """GT silhouette pixels whose surface point lies inside the avatar's field box."""
    ys, xs = np.nonzero(view.depth_m > 0)
    uv = np.stack([xs + 0.5, ys + 0.5], 1)
    pts_gt, _ = al.backproject(uv, view.depth_m, view.cam2world, view.intr)
    canon = alignment.points(pts_gt) * avatar.scale
    c = avatar.field.box_center.detach().cpu().numpy()
    h = float(avatar.field.box_half)
    inside = (np.abs(canon - c) <= h).all(1)
    m = np.zeros(view.depth_m.shape, bool)
    m[ys[inside], xs[inside]] = True
    return m & view.mask


def score_view(
    view: GTView,
    render: dict,
    bg: np.ndarray,
    alignment: al.Alignment,
    avatar,
    landmarks_world,
    lp=None,
    id_ref: idn.Face | None | str = "off",
) -> ViewResult:
    """``id_ref``: the GT input view's identity descriptor (None: no face found there), or ``"off"`` when the
    identity distance is not computed (dev extra absent)."""
    ours = sc.over(render["rgb"], render["alpha"], bg)
    gt_mask = in_volume_mask(view, alignment, avatar)
    mask = gt_mask | (render["alpha"] > 0.5)
    row = {"view": view.name, "yaw_deg": view.yaw_deg, "pitch_deg": view.pitch_deg}
    row.update(sc.image_scores(ours, view.rgb, mask))
    row["lpips"] = sc.lpips_score(lp, ours, view.rgb, mask) if lp is not None else sc.LPIPS_UNAVAILABLE
    row["iou"] = sc.silhouette_iou(render["alpha"], gt_mask)
    # Depth at this camera: where both surfaces exist inside the scored region.
    both = (render["depth_m"] > 0) & (view.depth_m > 0) & (render["alpha"] > 0.5) & gt_mask
    row["depth_l1"] = sc.depth_ssi(render["depth_m"], view.depth_m, both)["l1"]
    row["depth_mm"] = sc.depth_metric_mm(render["depth_m"] / alignment.to_world.scale, view.depth_m, both)
    if id_ref != "off" and yaw_bucket(view.yaw_deg) <= IDENTITY_MAX_YAW:
        f_gt, f_ours = idn.describe(_u8(view.rgb)), idn.describe(_u8(ours))
        row["id_ours_gt"] = idn.distance(f_ours, f_gt)
        row["id_gt_input"] = idn.distance(f_gt, id_ref) if id_ref is not None else None
        row["id_detector"] = f"{f_ours.detector if f_ours else '-'}/{f_gt.detector if f_gt else '-'}"
    lm_gt, _ = sc.detect_landmarks(_u8(view.rgb))
    lm_ours, n_ours = sc.detect_landmarks(_u8(ours))
    row["faces_detected"] = n_ours
    row["lmk_err_pct"] = sc.landmark_error_pct(lm_ours[:, :2], lm_gt[:, :2]) if lm_gt is not None and n_ours else None
    if lm_gt is not None:
        cam_w = alignment.camera(view.cam2world)
        uv, _ = project_points(landmarks_world, cam_w, view.intr)
        row["lmk_reproj_pct"] = sc.landmark_error_pct(uv, lm_gt[:, :2])
    else:
        row["lmk_reproj_pct"] = None
    return ViewResult(
        row,
        _u8(view.rgb),
        _u8(ours),
        {"mask": mask, "lm_gt": lm_gt, "gt_mask": gt_mask, "ours_mask": render["alpha"] > 0.5},
    )


def evaluate(avatar, landmarks_world: np.ndarray, ds: GTDataset, align: str = "camera", opts=None, log=print):
    """All metrics of ``avatar`` on ``ds``. Returns (report dict, list of ViewResult: input first)."""
    t0 = time.perf_counter()
    gi = ds.input
    intr: Intrinsics = gi.intr
    bg = ds.background
    lp = sc.lpips_model()
    id_ok, id_why = idn.available()
    id_ref = idn.describe(_u8(gi.rgb)) if id_ok else "off"
    if not id_ok:
        log(id_why)
    # The bundle's own photo camera, with the GT intrinsics (the build was told the true focal length).
    c2w_photo = avatar.photo_cam2world
    inp0 = avatar.render(c2w_photo, intr, opts)
    lm_gt_in, n_gt = sc.detect_landmarks(_u8(gi.rgb))
    if lm_gt_in is None:
        raise ValueError("mediapipe finds no face in the GT input view; the dataset cannot be scored")
    face = sc.polygon_mask(lm_gt_in[:, :2], gi.mask.shape)
    a_cam = al.camera_alignment(gi.cam2world, c2w_photo, inp0["depth_m"], gi.depth_m, face & gi.mask)
    try:
        a_lmk = al.landmark_alignment(lm_gt_in, gi.depth_m, gi.cam2world, intr, landmarks_world)
    except ValueError as exc:
        a_lmk = None
        log(f"landmark alignment failed: {exc}")
    primary = a_cam if align == "camera" else a_lmk
    if primary is None:
        raise ValueError(f"alignment {align!r} is unavailable")
    alignment = {
        "primary": primary.method,
        "camera": {**a_cam.info, "rotation": a_cam.to_world.rotation.tolist()},
        "landmarks": (a_lmk.info if a_lmk else None),
        "camera_vs_landmarks": al.compare(a_cam, a_lmk) if a_lmk else None,
    }
    inp = inp0 if primary is a_cam else avatar.render(primary.camera(gi.cam2world), intr, opts)
    res_in = score_view(gi, inp, bg, primary, avatar, landmarks_world, lp)
    # Depth at the input view (RTRF Table 3 protocol), GT metres vs ours (bundle metres; scale drops out).
    both = (inp["depth_m"] > 0) & (gi.depth_m > 0)
    d_all = sc.depth_ssi(inp["depth_m"], gi.depth_m, both)
    d_head = sc.depth_ssi(inp["depth_m"], gi.depth_m, both & in_volume_mask(gi, primary, avatar))
    d_face = sc.depth_ssi(inp["depth_m"], gi.depth_m, both & face)
    depth = {
        "l1": d_all["l1"],
        "rmse": d_all["rmse"],
        "pixels": d_all["pixels"],
        "head_l1": d_head["l1"],
        "head_rmse": d_head["rmse"],
        "head_pixels": d_head["pixels"],
        "face_l1": d_face["l1"],
        "face_rmse": d_face["rmse"],
        "face_pixels": d_face["pixels"],
    }
    res_in.extra["depth_ours"] = inp["depth_m"]
    res_in.extra["depth_gt"] = gi.depth_m
    log(f"  input: PSNR {res_in.row['psnr_db']:.2f} dB, depth L1 {depth['l1']:.4f} ({time.perf_counter() - t0:.0f} s)")
    results = [res_in]
    for v in ds.novel():
        r = avatar.render(primary.camera(v.cam2world), intr, opts)
        res = score_view(v, r, bg, primary, avatar, landmarks_world, lp, id_ref)
        results.append(res)
        ident = f" id {sc.fmt(res.row['id_ours_gt'], 3)}" if "id_ours_gt" in res.row else ""
        log(
            f"  {v.name}: PSNR {res.row['psnr_db']:.2f} SSIM {res.row['ssim']:.3f} IoU {res.row['iou']:.3f} "
            f"depth {sc.fmt(res.row['depth_mm'], 1)} mm lmk {sc.fmt(res.row['lmk_err_pct'])}%{ident} "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    rows = [r.row for r in results[1:]]
    summary = {k: _mean(rows, k) for k in sc.BUCKET_KEYS}
    summary["views"] = len(rows)
    summary["views_with_one_face"] = sum(1 for r in rows if r["faces_detected"] == 1)
    report = {
        "alignment": alignment,
        "lpips": "computed (AlexNet, local weights)" if lp is not None else sc.LPIPS_UNAVAILABLE,
        "identity": (
            f"dlib face descriptor (5-point alignment), |yaw| <= {IDENTITY_MAX_YAW:.0f}; GT input view face: "
            f"{id_ref.detector if id_ref else 'not found'}"
            if id_ok
            else id_why
        ),
        "input": {**res_in.row, "depth": depth, "gt_faces_detected": n_gt},
        "views": rows,
        "yaw_buckets": sc.yaw_buckets(rows),
        "novel_mean": summary,
        "eval_seconds": round(time.perf_counter() - t0, 1),
    }
    return report, results


def _mean(rows, k):
    vals = [r[k] for r in rows if isinstance(r.get(k), float) and np.isfinite(r[k])]
    return float(np.mean(vals)) if vals else None
