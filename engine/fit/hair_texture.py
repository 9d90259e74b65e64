"""Hair the photo cannot see, synthesised from the hair it can: a colour texture over the head round its crown.

The texture is laid out by angle from the crown (rows, 0 at the crown) and azimuth round the vertical axis
(columns, 0 at the face, increasing towards +x; the seam is at the face, which the photo sees, never at the back).
It is quilted (Efros & Freeman 2001: overlapping patches chosen by their overlap's error, joined along the
minimum-error cut) from square patches of the photo's visible hair, each turned so that its strands (the
structure tensor's dominant orientation) run down the rows: hair flowing from the crown down the meridians. The
colour's low frequencies are the visible hair's single colour (the back is neither brighter nor darker than that);
its detail, the patches' band above the patch size, is scaled to the exemplar's own amplitude. Seeded, so a build
is repeatable. The head-prior method samples it behind the ear plane (``HeadPriorFit.hair_appearance`` is the seam
a learned prior replaces)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

MIN_PATCHES = 8
"""Fewer exemplar patches than this (after shrinking the patch to ``MIN_PATCH_PX``): no texture."""
MIN_PATCH_PX = 6
"""Smallest patch side tried, pixels."""


@dataclass(frozen=True)
class HairTexture:
    """Colour (H, W, 3) in [0, 1] over the head: row i at angle ``(i + 0.5) * theta_max_rad / H`` from the crown,
    column j at azimuth ``(j + 0.5) * 2 pi / W`` from the face towards +x."""

    rgb: np.ndarray
    theta_max_rad: float

    def sample(self, azimuth_rad: np.ndarray, polar_rad: np.ndarray) -> np.ndarray:
        """(N, 3) bilinear colour at azimuths (N,) (0 the face, +x side positive, any range) and angles from the
        crown (N,) in radians (clamped to [0, theta_max_rad]); wraps round in azimuth."""
        h, w, _ = self.rgb.shape
        col = np.mod(np.asarray(azimuth_rad, np.float64), 2.0 * np.pi) / (2.0 * np.pi) * w - 0.5
        row = np.clip(np.asarray(polar_rad, np.float64) / self.theta_max_rad * h - 0.5, 0.0, h - 1.0)
        out = np.empty((len(col), 3), np.float32)
        for c in range(3):
            out[:, c] = ndi.map_coordinates(self.rgb[..., c], [row, col], order=1, mode="grid-wrap")
        return out


def strand_orientation(lum: np.ndarray, sigma_px: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The structure tensor's parts (Jrr, Jrc, Jcc), each (H, W), of a luminance image: products of its
    Gaussian-derivative gradients (rows r, columns c), not yet averaged over a window."""
    gr = ndi.gaussian_filter(lum, sigma_px, order=(1, 0))
    gc = ndi.gaussian_filter(lum, sigma_px, order=(0, 1))
    return gr * gr, gr * gc, gc * gc


def strand_angle(jrr: float, jrc: float, jcc: float) -> tuple[float, float]:
    """The strands' direction (radians: ``atan2(row step, column step)``, 0 along the rows' direction (columns
    increasing), pi/2 straight down the image) and its coherence in [0, 1], from a window's summed structure
    tensor: strands run across the dominant gradient."""
    grad = 0.5 * np.arctan2(2.0 * jrc, jrr - jcc)  # the dominant gradient's angle from the row axis
    coherence = np.hypot(jrr - jcc, 2.0 * jrc) / max(jrr + jcc, 1e-12)
    # the gradient points along (cos grad, sin grad) in (row, column): atan2(row, column) = pi/2 - grad; the
    # strand is perpendicular to it, at -grad (mod pi)
    return float(-grad), float(coherence)


def _masked_lowpass(img: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass of ``img`` (H, W, C) using only ``mask``'s pixels (normalised convolution)."""
    m = mask.astype(np.float64)
    den = np.maximum(ndi.gaussian_filter(m, sigma), 1e-6)
    return np.stack([ndi.gaussian_filter(img[..., c] * m, sigma) / den for c in range(img.shape[-1])], -1)


def _patches(photo: np.ndarray, mask: np.ndarray, p: int, rng: np.random.Generator, jitter_rad: float, cap: int):
    """Up to ``cap`` square patches (K, p, p, 3) of the photo, each wholly inside ``mask`` however it is turned,
    turned so their strands run down the patch (plus a random turn within +-``jitter_rad``, and a random
    left-right flip); their source centres (K, 2) (row, column)."""
    r = int(np.ceil(p / np.sqrt(2.0))) + 1
    inside = ndi.distance_transform_edt(mask) > r
    cand = np.argwhere(inside)
    if len(cand) == 0:
        return np.zeros((0, p, p, 3), np.float32), np.zeros((0, 2))
    if len(cand) > cap:
        cand = cand[rng.choice(len(cand), cap, replace=False)]
    lum = photo.mean(-1).astype(np.float64)
    jrr, jrc, jcc = (ndi.uniform_filter(j, 2 * r + 1) for j in strand_orientation(lum))
    off = np.arange(p) - (p - 1) / 2.0
    dy, dx = np.meshgrid(off, off, indexing="ij")
    out = np.empty((len(cand), p, p, 3), np.float32)
    for k, (cr, cc) in enumerate(cand):
        a, _ = strand_angle(jrr[cr, cc], jrc[cr, cc], jcc[cr, cc])
        a += rng.uniform(-jitter_rad, jitter_rad)
        d = np.array([np.sin(a), np.cos(a)])  # the strand, (row, column): the output patch's downward axis
        q = np.array([np.cos(a), -np.sin(a)])  # across it
        flip = -1.0 if rng.random() < 0.5 else 1.0
        src_r = cr + dy * d[0] + flip * dx * q[0]
        src_c = cc + dy * d[1] + flip * dx * q[1]
        for c in range(3):
            out[k, ..., c] = ndi.map_coordinates(photo[..., c], [src_r, src_c], order=1, mode="nearest")
    return out, cand


def _min_cut(err: np.ndarray) -> np.ndarray:
    """A bool mask (R, C) of an overlap of R rows and C columns: True right of the top-to-bottom path of least
    summed ``err`` (R, C) (the new patch's side), False left of it (the old)."""
    rows, cols = err.shape
    cost = err.astype(np.float64).copy()
    for i in range(1, rows):
        prev = cost[i - 1]
        best = np.minimum(prev, np.minimum(np.r_[np.inf, prev[:-1]], np.r_[prev[1:], np.inf]))
        cost[i] += best
    path = np.empty(rows, np.int64)
    path[-1] = int(np.argmin(cost[-1]))
    for i in range(rows - 2, -1, -1):
        j = path[i + 1]
        lo, hi = max(0, j - 1), min(cols, j + 2)
        path[i] = lo + int(np.argmin(cost[i, lo:hi]))
    return np.arange(cols)[None, :] >= path[:, None]


def quilt(
    patches: np.ndarray, shape: tuple[int, int], overlap: int, rng: np.random.Generator, best_frac: float = 0.05
) -> np.ndarray:
    """Image quilting: an image (H, W, 3) tiled from ``patches`` (K, p, p, 3) in raster order, ``overlap`` pixels
    shared with the left and upper neighbours; each tile a random one of the ``best_frac`` of patches (at least 3)
    whose overlap error is least, never the left or upper neighbour's own patch (a patch that continues itself
    would repeat along a row), joined along the minimum-error cut."""
    k, p = patches.shape[:2]
    step = p - overlap
    h, w = shape
    n_r = max(1, int(np.ceil((h - overlap) / step)))
    n_c = max(1, int(np.ceil((w - overlap) / step)))
    out = np.zeros((n_r * step + overlap, n_c * step + overlap, 3), np.float32)
    used = np.full((n_r, n_c), -1, np.int64)
    n_best = max(3, int(np.ceil(best_frac * k)))
    flat = patches.reshape(k, p, p, 3)
    for i in range(n_r):
        for j in range(n_c):
            r0, c0 = i * step, j * step
            cur = out[r0 : r0 + p, c0 : c0 + p]
            err = np.zeros(k)
            if j > 0:
                err += ((flat[:, :, :overlap] - cur[None, :, :overlap]) ** 2).sum((1, 2, 3))
                err[used[i, j - 1]] = np.inf
            if i > 0:
                err += ((flat[:, :overlap, :] - cur[None, :overlap, :]) ** 2).sum((1, 2, 3))
                err[used[i - 1, j]] = np.inf
            used[i, j] = int(rng.choice(np.argsort(err, kind="stable")[:n_best]))
            new = flat[used[i, j]]
            take = np.ones((p, p), bool)
            if j > 0:
                e = ((new[:, :overlap] - cur[:, :overlap]) ** 2).sum(-1)
                take[:, :overlap] &= _min_cut(e)
            if i > 0:
                e = ((new[:overlap] - cur[:overlap]) ** 2).sum(-1)
                take[:overlap] &= _min_cut(e.T).T
            out[r0 : r0 + p, c0 : c0 + p] = np.where(take[..., None], new, cur)
    return out[:h, :w]


def synthesise_hair(
    photo: np.ndarray,
    hair_mask: np.ndarray,
    shape: tuple[int, int],
    patch_px: int,
    theta_max_rad: float,
    base_rgb: np.ndarray | None = None,
    seed: int = 0,
    jitter_deg: float = 8.0,
    max_patches: int = 400,
) -> HairTexture | None:
    """A hair texture ``shape`` (rows from the crown, columns round the head) quilted from the pixels of ``photo``
    (H, W, 3) in [0, 1] where ``hair_mask`` (H, W) bool is set, patches of ``patch_px`` square (a texel is a photo
    pixel), their strands turned down the rows within +-``jitter_deg``; its colour's low frequencies the one colour
    ``base_rgb`` (3,) (default: the hair pixels' mean), its detail as strong as the exemplar's. None when the mask
    has too little hair for ``MIN_PATCHES`` patches, even at ``MIN_PATCH_PX``."""
    photo = np.asarray(photo, np.float32)
    mask = np.asarray(hair_mask, bool)
    if mask.sum() < MIN_PATCHES * MIN_PATCH_PX**2:
        return None
    rng = np.random.default_rng(seed)
    p = max(int(patch_px), MIN_PATCH_PX)
    while True:
        # the exemplar's detail only: its band above a third of the patch, so that no patch carries a slope of
        # the photo's light across it (tiled, such slopes are bands at the patch's period)
        sigma = p / 3.0
        detail_img = photo - _masked_lowpass(photo, mask, sigma)
        patches, _ = _patches(detail_img, mask, p, rng, np.radians(jitter_deg), max_patches)
        if len(patches) >= MIN_PATCHES:
            break
        if p <= MIN_PATCH_PX:
            return None
        p = max(MIN_PATCH_PX, int(p * 0.75))
    tex = quilt(patches, shape, max(2, p // 3), rng)
    # the same band of the texture (round in azimuth), scaled to the exemplar's amplitude
    core = ndi.binary_erosion(mask, iterations=2)
    ex_detail = detail_img[core if core.sum() > 50 else mask]
    low = np.stack([ndi.gaussian_filter(tex[..., c], sigma, mode=("nearest", "wrap")) for c in range(3)], -1)
    detail = tex - low
    gain = np.sqrt(float((ex_detail**2).mean()) / max(float((detail**2).mean()), 1e-12))
    base = np.asarray(photo[mask].mean(0) if base_rgb is None else base_rgb, np.float32)
    rgb = np.clip(base[None, None] + gain * detail, 0.0, 1.0).astype(np.float32)
    return HairTexture(rgb=rgb, theta_max_rad=float(theta_max_rad))
