"""The harness's metrics: masked PSNR / SSIM (engine.metrics), LPIPS only with local weights, scale-and-shift
invariant depth error (the real-time radiance fields paper's Table 3 protocol), landmark errors, silhouette IoU.
Pure functions of arrays; nothing here renders or builds."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from engine.metrics import iou, masked_psnr, masked_ssim

LPIPS_UNAVAILABLE = "unavailable: no local weights"


def over(rgb_premult: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """A premultiplied render over a background colour (3,)."""
    return np.clip(rgb_premult + (1.0 - alpha[..., None]) * np.asarray(bg, np.float32), 0.0, 1.0)


def image_scores(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
    """PSNR (dB) and SSIM of two (H, W, 3) images in [0, 1] over ``mask``."""
    return {"psnr_db": masked_psnr(pred, target, mask), "ssim": masked_ssim(pred, target, mask)}


def silhouette_iou(alpha: np.ndarray, mask_gt: np.ndarray) -> float:
    return iou(alpha > 0.5, mask_gt)


# ------------------------------------------------------------------------------------------------------ depth
def normalise01(d: np.ndarray, valid: np.ndarray) -> np.ndarray:
    lo, hi = d[valid].min(), d[valid].max()
    return (d - lo) / max(hi - lo, 1e-12)


def depth_ssi(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> dict:
    """Scale- and translation-invariant depth error: both depths normalised to [0, 1] over ``valid``, then the
    prediction aligned to the GT by least squares (a * pred + b), then L1 and RMSE over ``valid``
    (Trevithick et al. 2023, Table 3 and its appendix on H3DS)."""
    if valid.sum() < 10:
        return {"l1": float("nan"), "rmse": float("nan"), "pixels": int(valid.sum())}
    p, g = normalise01(pred, valid)[valid], normalise01(gt, valid)[valid]
    a_mat = np.stack([p, np.ones_like(p)], 1)
    (a, b), *_ = np.linalg.lstsq(a_mat, g, rcond=None)
    r = a * p + b - g
    return {"l1": float(np.abs(r).mean()), "rmse": float(np.sqrt((r**2).mean())), "pixels": int(valid.sum())}


def depth_metric_mm(pred_m: np.ndarray, gt_m: np.ndarray, valid: np.ndarray) -> float:
    """Mean |pred - gt| in millimetres over ``valid`` (both already in the same metric frame)."""
    if valid.sum() < 10:
        return float("nan")
    return float(np.abs(pred_m[valid] - gt_m[valid]).mean() * 1e3)


def polygon_mask(points_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Filled convex hull of pixel points (N, 2)."""
    import cv2

    hull = cv2.convexHull(np.round(points_xy).astype(np.int32))
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, hull, 1)
    return m.astype(bool)


# ------------------------------------------------------------------------------------------------------ landmarks
def detect_landmarks(rgb_u8: np.ndarray) -> tuple[np.ndarray | None, int]:
    """mediapipe landmarks (478, 3) in pixels of the largest face, or None, and how many faces it saw."""
    from engine.face.landmarks import detect_faces

    faces, _ = detect_faces(rgb_u8, backend="mediapipe")
    return (faces[0].points_px if faces else None), len(faces)


def landmark_error_pct(pred_xy: np.ndarray, gt_xy: np.ndarray) -> float:
    """Mean distance between two landmark sets (N, 2) in % of the GT face width (landmark box width)."""
    width = float(np.ptp(gt_xy[:, 0]))
    return float(np.linalg.norm(pred_xy - gt_xy, axis=1).mean() / max(width, 1e-6) * 100.0)


# ------------------------------------------------------------------------------------------------------ LPIPS
def lpips_model():
    """An LPIPS (AlexNet) model built only from weights already on disk, or None. Nothing is downloaded: the
    ``lpips`` package ships its linear layers, and torchvision's AlexNet weights must already be in torch's
    hub cache."""
    if importlib.util.find_spec("lpips") is None or importlib.util.find_spec("torchvision") is None:
        return None
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    if not list((torch_home / "hub" / "checkpoints").glob("alexnet-*.pth")):
        return None
    import lpips

    return lpips.LPIPS(net="alex", verbose=False).eval()


def lpips_score(model, pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """LPIPS over the mask's bounding box (both images outside the mask set to the target's colours)."""
    import torch

    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    p = np.where(mask[..., None], pred, target)[y0:y1, x0:x1]
    t = target[y0:y1, x0:x1]

    def tens(a):
        return torch.from_numpy(a.transpose(2, 0, 1)[None].astype(np.float32) * 2.0 - 1.0)

    with torch.no_grad():
        return float(model(tens(p), tens(t)).item())


# ------------------------------------------------------------------------------------------------------ tables
BUCKET_KEYS = (
    "psnr_db",
    "ssim",
    "lpips",
    "iou",
    "depth_l1",
    "depth_mm",
    "lmk_err_pct",
    "lmk_reproj_pct",
    "id_ours_gt",
    "id_gt_input",
)


def _bucket_of(yaw_deg: float) -> float:
    from harness.groundtruth import yaw_bucket

    return yaw_bucket(yaw_deg)


def bucket_means(group: list[dict], label: str) -> dict:
    b = {"bucket": label, "views": len(group)}
    for k in BUCKET_KEYS:
        vals = [r[k] for r in group if isinstance(r.get(k), float) and np.isfinite(r[k])]
        b[k] = float(np.mean(vals)) if vals else None
    return b


def yaw_buckets(rows: list[dict]) -> list[dict]:
    """Means per |yaw| folded into [0, 180] (all pitches together), sorted by |yaw|."""
    return [
        bucket_means([r for r in rows if _bucket_of(r["yaw_deg"]) == y], f"|yaw| = {y:.0f}")
        for y in sorted({_bucket_of(r["yaw_deg"]) for r in rows})
    ]


def fmt(v, digits=2) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and not np.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f}"


def markdown_table(rows: list[dict], cols: list[tuple[str, str, int]]) -> str:
    """Rows of dicts -> a Markdown table; ``cols`` is (key, header, digits)."""
    head = "| " + " | ".join(h for _, h, _ in cols) + " |"
    sep = "| " + " | ".join("---" for _ in cols) + " |"
    body = ["| " + " | ".join(fmt(r.get(k), d) for k, _, d in cols) + " |" for r in rows]
    return "\n".join([head, sep, *body])
