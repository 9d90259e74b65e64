"""The photo's lighting on the asset, and the texture with it divided out (an albedo).

The baked texture is the field's colour, which is the photo's: albedo x shading. The shading is modelled as a
2nd-order spherical-harmonic function of the skin's world normal (9 real SH terms, Ramamoorthi & Hanrahan's
order and constants; grey: one function for the three channels, so the skin keeps its colour), fitted to the
texels of the face in front of the ears (where the texture comes from the photo) under the assumption that the
skin's albedo there is about constant, robustly (texels far off the fit -- brows, lips, the eyes' surroundings --
are left out and the fit done again). It is scaled to mean 1 over those texels, so the albedo keeps the texture's
brightness on average. Pure functions of arrays; engine.asset.build calls them. docs/ASSET.md."""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from engine.extract.raster import rasterize

SH_NAMES = ("1", "y", "z", "x", "xy", "yz", "3z2-1", "xz", "x2-y2")
"""The 9 basis functions (of the unit normal in the engine's world axes: +Y up, +Z toward the face's front)."""
SH_CONSTANTS = (0.282095, 0.488603, 0.488603, 0.488603, 1.092548, 1.092548, 0.315392, 1.092548, 0.546274)
MIN_SHADING = 0.25
"""The shading is clamped to at least this (of its face mean) before dividing: grazing and unseen normals."""
RIDGE = 0.01
"""fit_sh's default penalty on the 2nd-order terms. Without it the fit on the demo falls to 0 at grazing normals
(a negative constant term, 3438 seen skin texels below MIN_SHADING) and the albedo blows out at the hairline
and the eye sockets; with it a known light is recovered to 2.4 % (median) on the template's atlas
(tests/test_asset_delight.py) and the demo's albedo is softer (71 texels clamped)."""
TRIM_MAD = 2.5
"""Texels whose ratio to the fit is further than this many median absolute deviations off are left out."""


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """(N, 9) the real SH basis at unit ``normals`` (N, 3)."""
    n = np.asarray(normals, np.float64)
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    terms = [np.ones_like(x), y, z, x, x * y, y * z, 3 * z * z - 1, x * z, x * x - y * y]
    return np.stack(terms, 1) * np.asarray(SH_CONSTANTS)


def shading(coeffs: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """(N,) the SH shading sum_k coeffs_k Y_k(n)."""
    return sh_basis(normals) @ np.asarray(coeffs, np.float64)


def fit_sh(
    luminance: np.ndarray, normals: np.ndarray, ridge: float = RIDGE, iterations: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """9 SH coefficients with luminance (N,) ~ albedo x shading(n) for one constant albedo, scaled so that the
    shading's mean over the texels used is 1; and which texels (N,) the last fit used. ``ridge`` penalises the
    2nd-order terms (per texel): the face's normals cover less than a hemisphere and the 2nd order is poorly
    determined there."""
    b = sh_basis(normals)
    used = np.isfinite(luminance) & (luminance > 0.02)
    c = np.zeros(9)
    penalty = np.diag([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    for _ in range(iterations):
        bu, lu = b[used], luminance[used]
        c = np.linalg.solve(bu.T @ bu + ridge * len(lu) * penalty, bu.T @ lu)
        s = b @ c
        ratio = np.where(s > 1e-6, luminance / np.maximum(s, 1e-6), np.inf)
        med = np.median(ratio[used])
        mad = np.median(np.abs(ratio[used] - med)) + 1e-9
        used = used & (np.abs(ratio - med) < TRIM_MAD * 1.4826 * mad)
    return c / float((b[used] @ c).mean()), used


def texel_attributes(uv: np.ndarray, tris: np.ndarray, values: np.ndarray, size: int):
    """(size, size, C) per-vertex ``values`` (N, C) interpolated at each texel centre of the UV layout (``uv``
    (N, 2) v up, row 0 at v = 1, as the atlas) and (size, size) which texels a triangle covers."""
    xy = np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], 1)
    fid, bary = rasterize(xy, np.zeros(len(uv)), tris, size, size)
    covered = fid >= 0
    out = np.zeros((size, size, values.shape[1]))
    out[covered] = (bary[covered][:, :, None] * values[tris[fid[covered]]]).sum(1)
    return out, covered


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)


def delight(
    texture: np.ndarray, normals: np.ndarray, skin: np.ndarray, face: np.ndarray, covered: np.ndarray, seen=1.0
) -> tuple[np.ndarray, dict]:
    """The albedo (H, W, 3) uint8 of a lit ``texture`` (H, W, 3) uint8 and the lighting it found: the SH is fitted
    on the ``face`` texels (H, W) and divided out on the ``skin`` texels (``normals`` (H, W, 3) there), blended
    by ``seen`` ((H, W) or a number in [0, 1]: how much the photo's light is what the texture shows there) with
    no division (the SH is not extrapolated to where the photo did not look); the other ``covered`` texels keep
    their colour, and uncovered texels take the nearest covered one's."""
    tex = texture.astype(np.float64) / 255.0
    lum = tex @ np.array([0.2126, 0.7152, 0.0722])
    seen = np.broadcast_to(np.asarray(seen, np.float64), tex.shape[:2])
    c, used = fit_sh(lum[face], normals[face])
    s = np.ones(tex.shape[:2])
    w = np.clip(seen, 0.0, 1.0)[skin]
    s[skin] = w * np.maximum(shading(c, normals[skin]), MIN_SHADING) + (1.0 - w)
    albedo = tex / s[..., None]
    albedo /= np.maximum(albedo.max(-1, keepdims=True), 1.0)  # over-bright: scaled down, keeping the hue (not clipped)
    if covered.any() and not covered.all():
        _, (iy, ix) = ndi.distance_transform_edt(~covered, return_indices=True)
        albedo = albedo[iy, ix]
    face_s = shading(c, normals[face])
    info = {
        "model": "sh2_grey_shading",
        "basis": list(SH_NAMES),
        "constants": list(SH_CONSTANTS),
        "coefficients": [round(float(x), 5) for x in c],
        "normals": "world (engine axes: +Y up, +Z the face's front), the posed skin",
        "meaning": "texture = albedo x sum_k coefficients_k constants_k basis_k(n); mean 1 over the face texels used",
        "face_texels": int(face.sum()),
        "face_texels_used": int(used.sum()),
        "shading_face_p5_p95": [round(float(np.percentile(face_s, q)), 3) for q in (5, 95)],
        "clamped_skin_texels": int(((shading(c, normals[skin]) < MIN_SHADING) & (w > 0)).sum()),
        "ridge": RIDGE,
    }
    return (np.clip(albedo, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), info
