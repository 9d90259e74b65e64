"""Contact sheet of an evaluation: ground truth beside ours for every view, laid out by pitch (rows) and yaw
(columns), under a first row with the input view and its depth maps."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def _crop_box(mask: np.ndarray, pad: float = 0.12) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        h, w = mask.shape
        return 0, 0, w, h
    cx, cy = (xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0
    side = max(xs.max() - xs.min(), ys.max() - ys.min()) * (1.0 + 2 * pad)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    return x0, y0, x0 + int(side), y0 + int(side)


def _tile(img: np.ndarray, box, size: int, label: str = "") -> np.ndarray:
    pil = Image.fromarray(img).crop(box).resize((size, size), Image.LANCZOS)
    if label:
        d = ImageDraw.Draw(pil)
        d.rectangle([0, 0, size, 12], fill=(0, 0, 0))
        d.text((2, 0), label, fill=(255, 255, 255))
    return np.asarray(pil.convert("RGB"))


def _depth_u8(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.zeros(depth.shape + (3,), np.uint8)
    if valid.any():
        lo, hi = depth[valid].min(), depth[valid].max()
        g = 1.0 - (depth - lo) / max(hi - lo, 1e-9)
        out[valid] = (np.clip(g[valid], 0, 1) * 200 + 55).astype(np.uint8)[:, None]
    return out


def contact_sheet(results, tile: int = 160) -> np.ndarray:
    """(H, W, 3) uint8: row 0 = input GT | ours | GT depth | our depth | |error| after the scale-shift fit;
    then one row per pitch with a GT | ours pair per yaw."""
    from harness.scoring import normalise01

    inp = results[0]
    box = _crop_box(inp.extra["mask"])
    dg, do = inp.extra["depth_gt"], inp.extra["depth_ours"]
    both = (dg > 0) & (do > 0)
    err = np.zeros(dg.shape + (3,), np.uint8)
    if both.sum() > 10:
        g, p = normalise01(dg, both), normalise01(do, both)
        a, b = np.linalg.lstsq(np.stack([p[both], np.ones(both.sum())], 1), g[both], rcond=None)[0]
        e = np.abs(a * p + b - g)
        err[both, 0] = (np.clip(e[both] / 0.1, 0, 1) * 255).astype(np.uint8)
        err[both, 1] = 40
    first = [
        _tile(inp.gt_rgb, box, tile, "input GT"),
        _tile(inp.ours_rgb, box, tile, "input ours"),
        _tile(_depth_u8(dg, dg > 0), box, tile, "depth GT"),
        _tile(_depth_u8(do, do > 0), box, tile, "depth ours"),
        _tile(err, box, tile, "|err| (red=0.1)"),
    ]
    novel = results[1:]
    yaws = sorted({r.row["yaw_deg"] for r in novel})
    pitches = sorted({r.row["pitch_deg"] for r in novel}, reverse=True)
    by = {(r.row["yaw_deg"], r.row["pitch_deg"]): r for r in novel}
    width = max(len(yaws) * 2, len(first))
    blank = np.full((tile, tile, 3), 255, np.uint8)
    rows = [np.concatenate(first + [blank] * (width - len(first)), 1)]
    for p in pitches:
        cells = []
        for y in yaws:
            r = by.get((y, p))
            if r is None:
                cells += [blank, blank]
                continue
            b = _crop_box(r.extra["mask"])
            cells.append(_tile(r.gt_rgb, b, tile, f"GT y{y:+.0f} p{p:+.0f}"))
            cells.append(_tile(r.ours_rgb, b, tile, f"ours {r.row['psnr_db']:.1f}dB"))
        cells += [blank] * (width - len(cells))
        rows.append(np.concatenate(cells, 1))
    return np.concatenate(rows, 0)
