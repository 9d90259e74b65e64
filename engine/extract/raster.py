"""A small vectorised triangle rasteriser (numpy): z-buffered, pixel centres at +0.5. Used for UV-space texture
baking, mesh depth/normal/silhouette maps -- no OpenGL needed on a headless CPU machine."""

from __future__ import annotations

import numpy as np


def rasterize(xy: np.ndarray, z: np.ndarray, faces: np.ndarray, width: int, height: int, max_pixels: int = 4_000_000):
    """Rasterise triangles with screen positions ``xy`` (V, 2) in pixels and depths ``z`` (V,) (smaller wins).

    Returns ``face_id`` (H, W) int64 (-1 where empty) and barycentrics ``bary`` (H, W, 3) float32."""
    face_id = np.full(height * width, -1, dtype=np.int64)
    bary = np.zeros((height * width, 3), dtype=np.float32)
    zbuf = np.full(height * width, np.inf)
    tri = xy[faces]  # (F, 3, 2)
    lo = np.floor(tri.min(1) - 0.5).astype(np.int64)
    hi = np.ceil(tri.max(1) - 0.5).astype(np.int64)
    lo = np.clip(lo, 0, [width - 1, height - 1])
    hi = np.clip(hi, 0, [width - 1, height - 1])
    bw, bh = hi[:, 0] - lo[:, 0] + 1, hi[:, 1] - lo[:, 1] + 1
    ok = (
        (tri[:, :, 0].max(1) >= 0)
        & (tri[:, :, 1].max(1) >= 0)
        & (tri[:, :, 0].min(1) < width)
        & (tri[:, :, 1].min(1) < height)
    )
    fids = np.nonzero(ok)[0]
    counts = (bw * bh)[fids]
    # Process in batches so the candidate-pixel arrays stay bounded.
    start = 0
    cum = np.cumsum(counts)
    while start < len(fids):
        base = cum[start - 1] if start > 0 else 0
        end = int(np.searchsorted(cum, base + max_pixels, side="right"))
        end = max(end, start + 1)
        _raster_batch(fids[start:end], counts[start:end], lo, bw, tri, z, faces, width, face_id, bary, zbuf)
        start = end
    return face_id.reshape(height, width), bary.reshape(height, width, 3)


def _raster_batch(fids, counts, lo, bw, tri, z, faces, width, face_id, bary, zbuf):
    f = np.repeat(fids, counts)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    px = lo[f, 0] + offs % bw[f]
    py = lo[f, 1] + offs // bw[f]
    cx, cy = px + 0.5, py + 0.5
    a, b, c = tri[f, 0], tri[f, 1], tri[f, 2]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    w0 = ((b[:, 1] - c[:, 1]) * (cx - c[:, 0]) + (c[:, 0] - b[:, 0]) * (cy - c[:, 1])) / den
    w1 = ((c[:, 1] - a[:, 1]) * (cx - c[:, 0]) + (a[:, 0] - c[:, 0]) * (cy - c[:, 1])) / den
    w2 = 1.0 - w0 - w1
    eps = -1e-6
    inside = (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
    f, px, py, w0, w1, w2 = f[inside], px[inside], py[inside], w0[inside], w1[inside], w2[inside]
    zz = w0 * z[faces[f, 0]] + w1 * z[faces[f, 1]] + w2 * z[faces[f, 2]]
    pix = py * width + px
    order = np.lexsort((zz, pix))
    pix, zz, f = pix[order], zz[order], f[order]
    w = np.stack([w0, w1, w2], 1)[order]
    first = np.ones(len(pix), dtype=bool)
    first[1:] = pix[1:] != pix[:-1]
    pix, zz, f, w = pix[first], zz[first], f[first], w[first]
    better = zz < zbuf[pix]
    pix, zz, f, w = pix[better], zz[better], f[better], w[better]
    zbuf[pix] = zz
    face_id[pix] = f
    bary[pix] = w
