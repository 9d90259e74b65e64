"""Turntable defect score: simple image statistics on the frames of one orbit that catch what a person sees
when a one-photo head turns away from the camera (issue 13). Each statistic has one threshold; a turntable
passes when every statistic is at or under its threshold.

Frames are RGBA (straight alpha) at yaws 360 i / n, frame 0 facing the face (the bundle's ``turntable_frames``,
``likeness turntable`` output, or a ground-truth turntable from ``make_groundtruth.py --grid turntable``).
Regions come from the frames themselves: the silhouette (alpha > 0.5), and on the front frame mediapipe's face
landmarks (eye, nose and chin rows; the face hull). The *back frames* are those within 20 deg of yaw 180.

Statistics (lengths are fractions of the head's width at the eye row, ``hw``, so they do not depend on the
frame size; contrasts are in luminance units, 0-1, because contrast is what a person sees):

``fan``
    Radial fans around a point on the back of the head. On each back frame, luminance is band-passed inside
    the silhouette (difference of masked Gaussians, sigma 1.5 % and 20 % of hw); the region is the head between
    the crown and the chin row and within 40 % of hw of the head's axis (the back of the skull, not the ears,
    not the shoulders). For candidate centres on a 15 x 15 grid (crown to nose row, axis +- 25 % of hw), the
    band-passed luminance is averaged along every 5-degree ray from the centre (radii 5-40 % of hw), the first
    two angular harmonics (shading) are removed from that profile, and the score is its RMS at the best centre:
    the contrast of structure that runs *along rays*. Median over the back frames.
``streaks``
    Vertical streaks and stripes down the back: the band-passed luminance (sigma 1 % and 12 % of hw) averaged
    down every column of the back of the head (crown to chin row, columns the head covers over at least half
    that height); the score is the RMS of those column means -- the contrast of structure that runs the whole
    height. Isotropic texture averages out; stripes do not. Median over the back frames.
``walls``
    Flat walls: the silhouette's width at four heights between the crown and the eye row, as a function of
    yaw. A head's width changes smoothly as it turns; a flat wall seen edge-on puts a kink (or a step, a
    plateau) into it. Score: the largest |second difference| over the orbit divided by the median width and by
    the frame step in radians (a slope change per radian: an ellipse of head proportions gives ~0.1 plus pixel
    rounding, a box ~1.6).
``smear``
    Front colours smeared to the back: median colours (CIELAB, lightness weighted 0.5 so shading matters less)
    of three regions of the front frame -- *top* (silhouette above the face hull: what covers the skull, hair
    or a bald scalp), *face* (inside the face hull) and *clothing* (below the chin row). On the back frames,
    the region behind the face (the face hull mirrored left-right, from its top down to the nose row: hair on
    anyone who has hair) is classified pixel by pixel, and the score is the fraction nearer the face or
    clothing colour than the top colour by more than 6 units. When top and face colours are within 8 units
    (a bald head) skin on the back is right, and only clothing counts.

Thresholds (``THRESHOLDS``) sit between today's demo bundle and the ground-truth turntables of Lee Perry-Smith
and the synthetic head (docs/FIDELITY.md, "Turntable defect score"); three turntables set them, so read a
score near its threshold as a question, not a verdict. Known blind spots: long straight hair is real vertical
structure (``streaks``); a hood or a high collar is clothing above the chin at the back (``smear``); the width
statistic sees walls only where they reach the silhouette."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

THRESHOLDS = {"fan": 0.060, "streaks": 0.020, "walls": 0.55, "smear": 0.06}
"""A statistic over its threshold flags the turntable."""
BACK_WINDOW_DEG = 20.0
FAN_BAND = (0.015, 0.20)
"""Band-pass of the fan statistic: masked Gaussians of these fractions of the head width."""
STREAK_BAND = (0.01, 0.12)
"""Band-pass of the streak statistic (fractions of the head width)."""
L_WEIGHT = 0.5
SMEAR_MARGIN = 6.0
BALD_DELTA_E = 8.0
"""Top and face colours closer than this (weighted CIELAB): the skull is skin-coloured, only clothing counts."""


@dataclass
class Turntable:
    yaws: np.ndarray
    """(N,) degrees, frame i at 360 i / N (folded into [0, 360))."""
    rgb: np.ndarray
    """(N, H, W, 3) float32 in [0, 1] (straight colour; outside the silhouette irrelevant)."""
    alpha: np.ndarray
    """(N, H, W) float32 in [0, 1]."""
    source: str = ""


@dataclass
class Regions:
    top: int
    """Crown: the first row any frame covers."""
    eye_row: int
    nose_row: int
    chin_row: int
    face_hull: np.ndarray
    """(H, W) bool on the front frame."""
    head_width: float
    """Median silhouette width (px) at the eye row over the orbit."""
    from_landmarks: bool


@dataclass
class DefectReport:
    scores: dict
    passed: dict
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.passed.values())

    def to_dict(self) -> dict:
        return {"ok": self.ok, "scores": self.scores, "thresholds": THRESHOLDS, "passed": self.passed, **self.details}


# ------------------------------------------------------------------------------------------------------ loading
def _read_rgba(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGBA"), np.float32) / 255.0


def _from_arrays(frames: list[np.ndarray], source: str) -> Turntable:
    a = np.stack(frames)
    n = len(frames)
    return Turntable(np.arange(n) * 360.0 / n, a[..., :3].copy(), a[..., 3].copy(), source)


def load_turntable(path: str | Path) -> Turntable:
    """Frames of a bundle (its manifest's ``turntable_frames``), a ground-truth turntable (cameras.json with
    ``frame_NNN`` views) or a folder of ``frame_*.png`` RGBA files."""
    from PIL import Image

    path = Path(path)
    if (path / "manifest.json").is_file():
        from engine.io.bundle import bundle_path, read_manifest

        m = read_manifest(path)
        files = m.get("turntable_frames") or []
        if not files:
            raise ValueError(f"{path}: the bundle has no turntable frames")
        return _from_arrays([_read_rgba(bundle_path(path, f, "turntable_frames")) for f in files], str(path))
    if (path / "cameras.json").is_file():
        meta = json.loads((path / "cameras.json").read_text())
        names = sorted(k for k in meta["views"] if k.startswith("frame_"))
        if not names:
            raise ValueError(f"{path}: a ground-truth set without turntable frames (make it with --grid turntable)")
        frames = []
        for k in names:
            v = meta["views"][k]
            rgb = np.asarray(Image.open(path / v["rgb"]).convert("RGB"), np.float32) / 255.0
            mask = np.asarray(Image.open(path / v["mask"]).convert("L"), np.float32) / 255.0
            frames.append(np.concatenate([rgb, mask[..., None]], -1))
        tt = _from_arrays(frames, str(path))
        tt.yaws = np.array([float(meta["views"][k]["yaw_deg"]) % 360.0 for k in names])
        return tt
    files = sorted(path.glob("frame_*.png"))
    if not files:
        raise ValueError(f"{path}: no bundle, ground-truth turntable or frame_*.png files")
    return _from_arrays([_read_rgba(f) for f in files], str(path))


# ------------------------------------------------------------------------------------------------------ helpers
def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def masked_blur(img: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised convolution: the Gaussian mean of ``img`` over ``mask`` only (no leak from outside)."""
    from scipy.ndimage import gaussian_filter

    m = mask.astype(np.float64)
    num = gaussian_filter(img * m, sigma)
    den = gaussian_filter(m, sigma)
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0)


def band_pass(lum: np.ndarray, mask: np.ndarray, s_lo: float, s_hi: float) -> np.ndarray:
    return masked_blur(lum, mask, s_lo) - masked_blur(lum, mask, s_hi)


def erode(mask: np.ndarray, px: int) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return binary_erosion(mask, iterations=max(1, int(px))) if px > 0 else mask


def back_frames(tt: Turntable) -> list[int]:
    d = np.abs(((tt.yaws - 180.0) + 180.0) % 360.0 - 180.0)
    return [int(i) for i in np.nonzero(d <= BACK_WINDOW_DEG + 1e-6)[0]]


def _row_width(mask_row: np.ndarray) -> float:
    xs = np.nonzero(mask_row)[0]
    return float(xs.max() - xs.min() + 1) if len(xs) else 0.0


def regions(tt: Turntable) -> Regions:
    """Crown, eye/nose/chin rows and face hull from the front frame's landmarks (mediapipe), or proportions of
    the silhouette when no face is found."""
    sil = tt.alpha > 0.5
    rows_any = np.nonzero(sil.any(axis=(0, 2)))[0]
    top = int(rows_any.min()) if len(rows_any) else 0
    front = int(np.argmin(np.abs(((tt.yaws + 180.0) % 360.0) - 180.0)))
    img = (np.clip(tt.rgb[front] * tt.alpha[front][..., None], 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = sil.shape[1:]
    hull = np.zeros((h, w), bool)
    from_lmk = False
    try:
        from harness.scoring import detect_landmarks, polygon_mask

        lm, _ = detect_landmarks(img)
    except Exception:  # noqa: BLE001 - no mediapipe: proportions below
        lm = None
    if lm is not None:
        from_lmk = True
        eye_row = int(round(np.mean(lm[[33, 133, 362, 263], 1])))
        nose_row = int(round(lm[1, 1]))
        chin_row = int(round(lm[152, 1]))
        hull = polygon_mask(lm[:, :2], (h, w))
    else:
        bottom = int(rows_any.max()) if len(rows_any) else h - 1
        span = bottom - top
        eye_row, nose_row, chin_row = (top + int(f * span) for f in (0.30, 0.40, 0.55))
    widths = [_row_width(s[eye_row]) for s in sil]
    head_width = float(np.median([x for x in widths if x > 0] or [w / 3]))
    return Regions(top, eye_row, nose_row, chin_row, hull, head_width, from_lmk)


# ------------------------------------------------------------------------------------------------------ statistics
def fan_score(
    rgb: np.ndarray, alpha: np.ndarray, reg: Regions, grid: int = 15, bins: int = 72
) -> tuple[float, tuple[int, int]]:
    """Strongest angular structure around a centre on the back of the head: RMS (luminance units) over 5-degree
    angle bins of the band-passed luminance averaged along each ray from the centre, angular harmonics 0-2
    (shading) removed; and the centre (x, y)."""
    hw = reg.head_width
    sil = alpha > 0.5
    bp = band_pass(luminance(rgb), sil, FAN_BAND[0] * hw, FAN_BAND[1] * hw)
    inner = erode(sil, int(round(0.03 * hw)))
    inner[: reg.top] = False
    inner[reg.chin_row :] = False  # the head, not the shoulders
    at_eyes = inner[reg.eye_row]
    axis_x = float(np.nonzero(at_eyes)[0].mean()) if at_eyes.any() else inner.shape[1] / 2.0
    inner[:, : max(0, int(axis_x - 0.4 * hw))] = False  # the back of the skull, not the ears
    inner[:, int(axis_x + 0.4 * hw) + 1 :] = False
    ys, xs = np.nonzero(inner)
    if len(ys) < 100:
        return 0.0, (0, 0)
    vals = bp[ys, xs]
    # Candidate centres: crown to nose row, within a quarter of the head width of its axis.
    cxs = np.linspace(axis_x - 0.25 * hw, axis_x + 0.25 * hw, grid)
    cys = np.linspace(reg.top + 0.1 * (reg.nose_row - reg.top), reg.nose_row, grid)
    r_lo, r_hi = 0.05 * hw, 0.40 * hw
    min_px = max(8, int(0.1 * r_hi))
    theta = (np.arange(bins) + 0.5) * 2 * np.pi / bins
    harmonics = np.stack([np.ones(bins), np.cos(theta), np.sin(theta), np.cos(2 * theta), np.sin(2 * theta)], 1)
    best, where = 0.0, (0, 0)
    for cy in cys:
        for cx in cxs:
            dx, dy = xs - cx, ys - cy
            r = np.hypot(dx, dy)
            sel = (r >= r_lo) & (r <= r_hi)
            if sel.sum() < 200:
                continue
            b = ((np.arctan2(dy[sel], dx[sel]) + np.pi) / (2 * np.pi) * bins).astype(int) % bins
            n = np.bincount(b, minlength=bins)
            tot = np.bincount(b, weights=vals[sel], minlength=bins)
            ok = n >= min_px
            if ok.sum() < bins // 3:
                continue
            prof = np.zeros(bins)
            prof[ok] = tot[ok] / n[ok]
            # Angular harmonics 3 and up over the covered bins (least squares on the bins that have pixels).
            low = harmonics[ok]
            coef, *_ = np.linalg.lstsq(low, prof[ok], rcond=None)
            resid = prof[ok] - low @ coef
            rms = float(np.sqrt((resid**2).mean()))
            if rms > best:
                best, where = rms, (int(cx), int(cy))
    return best, where


def streak_score(rgb: np.ndarray, alpha: np.ndarray, reg: Regions) -> float:
    """RMS (luminance units) of the band-passed luminance averaged down each column of the back of the head."""
    hw = reg.head_width
    sil = alpha > 0.5
    bp = band_pass(luminance(rgb), sil, STREAK_BAND[0] * hw, STREAK_BAND[1] * hw)
    inner = erode(sil, int(round(0.03 * hw)))
    band = np.zeros_like(inner)
    band[reg.top : reg.chin_row] = True
    region = inner & band
    n = region.sum(0)
    cols = n >= 0.5 * max(1, n.max())
    if cols.sum() < 10:
        return 0.0
    col_mean = ((bp * region).sum(0) / np.maximum(n, 1))[cols]
    return float(np.sqrt(((col_mean - col_mean.mean()) ** 2).mean()))


def wall_score(alpha: np.ndarray, yaws: np.ndarray, reg: Regions) -> tuple[float, dict]:
    """Largest kink of silhouette width vs yaw at four heights between crown and eyes (per radian, relative)."""
    sil = alpha > 0.5
    order = np.argsort(yaws % 360.0)
    step = np.radians(360.0 / len(yaws))
    rows = [int(round(reg.top + f * (reg.eye_row - reg.top))) for f in (0.2, 0.4, 0.6, 0.8)]
    worst, per_row = 0.0, {}
    for r in rows:
        w = np.array([_row_width(sil[i, r]) for i in order])
        med = float(np.median(w))
        if med <= 0:
            continue
        d2 = np.roll(w, 1) - 2.0 * w + np.roll(w, -1)
        k = np.abs(d2) / med / step
        i = int(np.argmax(k))
        per_row[str(r)] = {"kink": float(k[i]), "at_yaw": float(yaws[order][i] % 360.0), "widths_px": w.tolist()}
        worst = max(worst, float(k[i]))
    return worst, per_row


def _lab(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    lab = rgb2lab(np.clip(rgb, 0, 1).reshape(-1, 1, 3)).reshape(-1, 3)
    lab[:, 0] *= L_WEIGHT
    return lab


def _mean_lab(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    return np.median(_lab(rgb[mask]), axis=0) if mask.sum() >= 50 else None


def smear_score(tt: Turntable, reg: Regions, backs: list[int]) -> tuple[float, dict]:
    """Fraction of the back of the head behind the face (the front frame's face hull mirrored, crown side of the
    nose row) whose colour is nearest the front's face or clothing colour rather than what covers the skull."""
    front = int(np.argmin(np.abs(((tt.yaws + 180.0) % 360.0) - 180.0)))
    hw = reg.head_width
    sil = erode(tt.alpha[front] > 0.5, int(round(0.03 * hw)))
    h, w = sil.shape
    rows = np.arange(h)[:, None]
    hull = reg.face_hull
    if not hull.any():  # no landmarks: a box in the middle of the head
        hull = np.zeros_like(sil)
        cx = int(np.nonzero(sil[reg.eye_row])[0].mean()) if sil[reg.eye_row].any() else w // 2
        hull[reg.top + int(0.15 * hw) : reg.chin_row, max(0, cx - int(0.35 * hw)) : cx + int(0.35 * hw)] = True
    face_top = int(np.nonzero(hull.any(1))[0].min())
    rgb = tt.rgb[front]
    cols = {
        "top": _mean_lab(rgb, sil & (rows < face_top) & ~hull),
        "face": _mean_lab(rgb, sil & erode(hull, int(round(0.04 * hw)))),
        "clothing": _mean_lab(rgb, sil & (rows > reg.chin_row + int(0.08 * hw))),
    }
    if cols["top"] is None:
        return 0.0, {"note": "no skull region above the face on the front frame", "colours_lab": {}}
    bald = cols["face"] is not None and float(np.linalg.norm(cols["face"] - cols["top"])) < BALD_DELTA_E
    front_keys = [k for k in ("face", "clothing") if cols[k] is not None and not (k == "face" and bald)]
    behind = hull[:, ::-1] & (rows >= face_top) & (rows < reg.nose_row)
    fracs = []
    for i in backs:
        m = behind & erode(tt.alpha[i] > 0.5, int(round(0.03 * hw)))
        if m.sum() < 50 or not front_keys:
            continue
        lab = _lab(tt.rgb[i][m])
        d_top = np.linalg.norm(lab - cols["top"], axis=1)
        d_front = np.min([np.linalg.norm(lab - cols[k], axis=1) for k in front_keys], axis=0)
        fracs.append(float((d_front + SMEAR_MARGIN < d_top).mean()))
    info = {
        "skin_coloured_skull": bald,
        "counted_as_front": front_keys,
        "colours_lab": {k: (None if v is None else [round(float(x), 1) for x in v]) for k, v in cols.items()},
        "per_back_frame": fracs,
    }
    return (float(np.median(fracs)) if fracs else 0.0), info


def score_turntable(tt: Turntable) -> DefectReport:
    reg = regions(tt)
    backs = back_frames(tt)
    if not backs:
        raise ValueError("the turntable has no frame within 20 degrees of the back")
    fans = [fan_score(tt.rgb[i], tt.alpha[i], reg) for i in backs]
    streaks = [streak_score(tt.rgb[i], tt.alpha[i], reg) for i in backs]
    walls, wall_rows = wall_score(tt.alpha, tt.yaws, reg)
    smear, smear_info = smear_score(tt, reg, backs)
    scores = {
        "fan": float(np.median([f for f, _ in fans])),
        "streaks": float(np.median(streaks)),
        "walls": walls,
        "smear": smear,
    }
    passed = {k: bool(v <= THRESHOLDS[k]) for k, v in scores.items()}
    details = {
        "source": tt.source,
        "frames": len(tt.yaws),
        "back_frames": backs,
        "regions": {
            "top": reg.top,
            "eye_row": reg.eye_row,
            "nose_row": reg.nose_row,
            "chin_row": reg.chin_row,
            "head_width_px": reg.head_width,
            "from_landmarks": reg.from_landmarks,
        },
        "per_back_frame": {
            str(i): {"fan": f, "fan_centre_xy": c, "streaks": st}
            for i, (f, c), st in zip(backs, fans, streaks, strict=True)
        },
        "walls_per_row": {k: {kk: vv for kk, vv in v.items() if kk != "widths_px"} for k, v in wall_rows.items()},
        "smear": smear_info,
    }
    return DefectReport(scores, passed, details)
