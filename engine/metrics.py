"""Image and mask metrics shared by the build summary, the quality script and the harness."""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi


def composite_over(rgb_premult: np.ndarray, alpha: np.ndarray, bg: float = 0.5) -> np.ndarray:
    return np.clip(rgb_premult + (1.0 - alpha[..., None]) * bg, 0.0, 1.0)


def masked_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) over ``mask`` of two (H, W, 3) images in [0, 1]."""
    mse = float(((pred - target)[mask] ** 2).mean()) if mask.any() else 0.0
    return float("inf") if mse == 0 else float(-10.0 * np.log10(mse))


def masked_ssim(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM (7x7 Gaussian-free window, skimage) over ``mask``."""
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(pred, target, channel_axis=2, data_range=1.0, full=True)
    return float(smap.mean(-1)[mask].mean()) if mask.any() else 1.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def input_view_scores(render: dict, photo: np.ndarray, matte: np.ndarray, in_photo: np.ndarray | None = None) -> dict:
    """Fit at the input view: render and photo both composited over mid-grey (render by its alpha, photo by its
    matte), compared where the matte is > 0.5 -- and, given ``in_photo`` (H, W) bool, at least 3 px inside the
    photo's own frame: where a tight portrait cuts the head, the frame's straight edge is not the subject's
    outline and the matte's cut there is not something the head should reproduce."""
    mask = matte > 0.5
    if in_photo is not None:
        mask &= ndi.binary_erosion(in_photo, iterations=3, border_value=1)
    pred = composite_over(render["rgb"], render["alpha"])
    target = composite_over(photo * matte[..., None], matte)
    return {"psnr_db": masked_psnr(pred, target, mask), "ssim": masked_ssim(pred, target, mask)}
