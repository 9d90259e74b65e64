"""The asset's maps beside the colour atlas, on the same layout: a tangent-space normal map of the field's surface
detail relative to the skin mesh, and a per-region roughness map.

Tangent frames follow MikkTSpace's construction (what Blender and glTF clients compute when a mesh has no
tangents): per triangle corner, dP/du projected onto the vertex normal's plane, weighted by the corner's angle,
summed per seam-split vertex and normalised; the bitangent is ``w * cross(N, T)`` with ``w`` the sign of the UV
triangle's area in winding order (v up, as Blender's UVs). The normal map decodes as
``normalize(x T + y B + z N)`` from interpolated ``T``, ``B``, ``N``, +Y along +v: glTF's and Blender's (OpenGL)
convention. Pure functions of arrays and callables; engine.asset.build calls them. docs/ASSET.md."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
from PIL import Image

from engine.asset.delight import fit_sh, shading, unit
from engine.asset.snap import find_surface, smoothstep
from engine.extract.raster import rasterize

FLAT_RGB = (128, 128, 255)
"""A flat texel of the normal map ((0, 0, 1) in tangent space)."""
FILL_PX = 4
"""The normal map's detail is dilated this far over the atlas (across seams and island borders); flat beyond."""
NORMAL_BAND_M = 0.004
"""A texel looks for the field's surface this far along its normal (either way); the skin is snapped to it."""
NORMAL_FADE_M = (0.002, 0.004)
"""The detail is kept whole where the field's surface is within the first distance of the mesh, none beyond the
second (a surface further off is another one: hair, the teeth behind pinned lips)."""
MAX_DETAIL_DEG = 45.0
"""Field normals further than this from the mesh's are taken as a mismatch, not detail: the map fades to flat
between 2/3 of it and it."""

ROUGHNESS = {"skin": 0.55, "lips": 0.42, "mouth": 0.35, "scalp": 0.7, "cornea": 0.07, "sclera": 0.15}
ROUGHNESS |= {"teeth": 0.3, "tongue": 0.35}
"""Roughness per region (glTF's perceptual roughness)."""
ROUGHNESS_PX = 512
"""The roughness map is drawn at most this size and scaled up (its regions blend over millimetres)."""
LIPS_LANDMARKS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
"""mediapipe's outer lip contour, in order round the mouth."""
LIPS_EDGE_M = 0.0015
"""The lips' roughness blends into the skin's over this either side of the contour."""
MOUTH_Z_M = (0.03, 0.05)
"""The lips' region is in front of this depth (template z; the nape behind the mouth is at z < 0)."""
CORNEA_DEG = (22.0, 32.0)
"""From the eyeball's rest gaze (template +Z): cornea roughness within the first angle, sclera beyond the second."""


def tangent_frames(positions: np.ndarray, normals: np.ndarray, uv: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(N, 4) per-vertex tangents: xyz unit and perpendicular to the unit ``normals`` (N, 3), w = +-1 the
    bitangent's sign (module docstring). ``uv`` (N, 2) v up, ``tris`` (F, 3)."""
    p, t = np.asarray(positions, np.float64), np.asarray(uv, np.float64)
    n = unit(np.asarray(normals, np.float64))
    d1, d2 = p[tris[:, 1]] - p[tris[:, 0]], p[tris[:, 2]] - p[tris[:, 0]]
    s1, s2 = t[tris[:, 1]] - t[tris[:, 0]], t[tris[:, 2]] - t[tris[:, 0]]
    area = s1[:, 0] * s2[:, 1] - s1[:, 1] * s2[:, 0]
    sdir = d1 * s2[:, 1:2] - d2 * s1[:, 1:2]  # dP/du x area: its direction is dP/du's for either orientation
    sdir *= np.where(area < 0, -1.0, 1.0)[:, None]
    tan = np.zeros_like(p)
    orient = np.zeros(len(p))
    for k in range(3):
        v = tris[:, k]
        a, b = p[tris[:, (k + 1) % 3]] - p[v], p[tris[:, (k + 2) % 3]] - p[v]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(1e-30)
        angle = np.arccos(np.clip(cos, -1.0, 1.0))
        proj = unit(sdir - (sdir * n[v]).sum(1, keepdims=True) * n[v])
        np.add.at(tan, v, angle[:, None] * proj)
        np.add.at(orient, v, angle * np.sign(area))
    tan -= (tan * n).sum(1, keepdims=True) * n
    bad = np.linalg.norm(tan, axis=1) < 1e-12  # no UV gradient: any perpendicular
    if bad.any():
        helper = np.where(np.abs(n[bad, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
        tan[bad] = np.cross(n[bad], helper)
    return np.c_[unit(tan), np.where(orient < 0, -1.0, 1.0)]


def texel_raster(uv: np.ndarray, tris: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the triangles of a UV layout (``uv`` (N, 2) v up; row 0 at v = 1) cover a (size, size) atlas:
    (H, W) coverage, and for the covered texels (in row-major order) the (M, 3) vertex ids and barycentrics."""
    xy = np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], 1)
    fid, bary = rasterize(xy, np.zeros(len(uv)), tris, size, size)
    covered = fid >= 0
    return covered, tris[fid[covered]], bary[covered].astype(np.float64)


def _lerp(corners: np.ndarray, bary: np.ndarray, values: np.ndarray) -> np.ndarray:
    return (bary[:, :, None] * values[corners]).sum(1)


def _fill(img: np.ndarray, covered: np.ndarray, background, reach_px: float = np.inf) -> np.ndarray:
    """Uncovered texels of ``img`` (H, W, C) within ``reach_px`` of a covered one take the nearest covered
    texel's value (seams dilated), the others ``background``."""
    if not covered.any():
        img[...] = background
        return img
    if covered.all():
        return img
    dist, (iy, ix) = ndi.distance_transform_edt(~covered, return_indices=True)
    out = img[iy, ix]
    out[dist > reach_px] = background
    return out


@dataclass(frozen=True)
class BakeMesh:
    """A mesh the normal map is baked against: ``uv`` (N, 2) v up, ``tris`` (F, 3), ``positions`` (N, 3) world
    metres, unit ``normals`` (N, 3), ``tangents`` (N, 4) from :func:`tangent_frames`, ``weight`` (N,) in [0, 1]
    (where the photo saw the surface: the detail fades to flat with it), ``max_out_m`` (N,) how far outside the
    mesh the field's surface may be and still be the skin (less than the band where it would be hair)."""

    uv: np.ndarray
    tris: np.ndarray
    positions: np.ndarray
    normals: np.ndarray
    tangents: np.ndarray
    weight: np.ndarray
    max_out_m: np.ndarray


def _texel_density(mesh: BakeMesh, tris: np.ndarray, size: int) -> float:
    """Texels per metre over ``tris``: sqrt(UV area x size^2 / 3D area)."""
    p, t = mesh.positions[tris], mesh.uv[tris]
    a3 = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1).sum()
    auv = 0.5 * np.abs(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])).sum()
    return float(np.sqrt(auv / max(a3, 1e-18)) * size)


def _masked_blur(img: np.ndarray, mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """(H, W, C) Gaussian of ``img`` over the ``mask``ed texels only (normalised convolution); a wide one is done
    on a grid coarser by a whole factor (block means, sigma at least 4 cells there) and scaled back bilinearly."""
    f = int(sigma_px // 4) if sigma_px >= 12.0 else 1
    h, w = mask.shape
    ph, pw = -h % f, -w % f
    m = np.pad(mask.astype(np.float64), ((0, ph), (0, pw)))
    v = np.pad(img * mask[..., None], ((0, ph), (0, pw), (0, 0)))
    if f > 1:
        m = m.reshape(m.shape[0] // f, f, m.shape[1] // f, f).mean((1, 3))
        v = v.reshape(v.shape[0] // f, f, v.shape[1] // f, f, -1).mean((1, 3))
    norm = np.maximum(ndi.gaussian_filter(m, sigma_px / f), 1e-9)
    out = np.stack([ndi.gaussian_filter(v[..., k], sigma_px / f) / norm for k in range(v.shape[-1])], -1)
    if f > 1:  # back to texels: cell centres at (i + 0.5) f - 0.5
        yy = (np.arange(h) + 0.5) / f - 0.5
        xx = (np.arange(w) + 0.5) / f - 0.5
        grid = np.meshgrid(yy, xx, indexing="ij")
        out = np.stack(
            [ndi.map_coordinates(out[..., k], grid, order=1, mode="nearest") for k in range(out.shape[-1])], -1
        )
    return out[:h, :w]


def normal_map(
    mesh: BakeMesh,
    sdf_fn: Callable,
    normal_fn: Callable,
    to_camera: np.ndarray,
    size: int,
    lowpass_m: float = 0.0,
    luminance: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """The (size, size, 3) uint8 tangent-space normal map of the field's surface relative to ``mesh``, and what it
    holds. Each texel of a triangle with some weight finds the field's surface along its interpolated normal
    (within NORMAL_BAND_M, and no further out than ``max_out_m``; ``sdf_fn`` world points -> metres) and takes the
    field's normal there (``normal_fn`` world points (M, 3) -> (M, 3)) in the texel's tangent frame, blended to
    flat by the weight, the facing of ``to_camera`` (3,) (flat at 90 deg, whole within 73 deg), the distance to
    the field's surface (NORMAL_FADE_M) and the angle (MAX_DETAIL_DEG); then low-passed (a Gaussian of
    ``lowpass_m`` sigma on the atlas, over drawn texels only) and faded by the weight again. Flat elsewhere.
    With ``luminance`` (size, size) (the baked texture's), the info says how well the SH light fitted to it agrees
    with the mesh's normals and with the mapped ones on the face (correlation): whether the map is the photo's
    detail or the field's noise."""
    tris = mesh.tris[np.asarray(mesh.weight)[mesh.tris].max(1) > 0]
    covered, corners, bary = texel_raster(mesh.uv, tris, size)
    w = np.clip(_lerp(corners, bary, np.asarray(mesh.weight, np.float64)[:, None])[:, 0], 0.0, 1.0)
    w *= smoothstep(unit(_lerp(corners, bary, mesh.normals)) @ np.asarray(to_camera, np.float64), 0.0, 0.3)
    out = np.zeros((int(covered.sum()), 3))
    out[:, 2] = 1.0
    look = w > 1e-3
    c, b = corners[look], bary[look]
    nl = _lerp(c, b, mesh.normals)
    sign = np.where(_lerp(c, b, mesh.tangents[:, 3:])[:, 0] < 0, -1.0, 1.0)
    t = _lerp(c, b, mesh.tangents[:, :3])
    frame = np.stack([t, sign[:, None] * np.cross(nl, t), nl], 2)  # columns T, B, N: normalize(x T + y B + z N)
    if look.any():
        p = _lerp(c, b, mesh.positions)
        off = find_surface(p, unit(nl), sdf_fn, NORMAL_BAND_M)
        off[off > _lerp(c, b, np.asarray(mesh.max_out_m, np.float64)[:, None])[:, 0]] = np.nan
        found = np.isfinite(off)
        nf = unit(np.asarray(normal_fn(p + np.nan_to_num(off)[:, None] * unit(nl)), np.float64))
        ts = unit(np.linalg.solve(frame, nf[:, :, None])[:, :, 0])
        deg = np.degrees(np.arccos(np.clip(ts[:, 2], -1.0, 1.0)))
        keep = w[look] * found * smoothstep(np.abs(np.nan_to_num(off)), *NORMAL_FADE_M[::-1])
        keep *= smoothstep(deg, MAX_DETAIL_DEG, MAX_DETAIL_DEG * 2.0 / 3.0)
        out[look] = unit(keep[:, None] * ts + (1.0 - keep[:, None]) * np.array([0.0, 0.0, 1.0]))
    img = np.zeros((size, size, 3))
    img[..., 2] = 1.0
    img[covered] = out
    sigma_px = lowpass_m * _texel_density(mesh, tris, size) if len(tris) else 0.0
    if sigma_px > 0.3 and covered.any():
        rows, cols = np.nonzero(covered.any(1))[0], np.nonzero(covered.any(0))[0]
        pad = int(np.ceil(4 * sigma_px)) + 1  # the filter's reach: nothing outside the drawn box changes
        r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, size)
        c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, size)
        cov = covered[r0:r1, c0:c1]
        box = _masked_blur(img[r0:r1, c0:c1], cov, sigma_px)
        img[r0:r1, c0:c1][cov] = unit(box[cov])
        # faded by the texel's own weight again: flat exactly where the photo saw nothing, nothing spread there
        img[covered] = unit(w[:, None] * img[covered] + (1.0 - w[:, None]) * np.array([0.0, 0.0, 1.0]))
    final = img[covered]
    rgb = (np.clip(_fill(img, covered, (0.0, 0.0, 1.0), FILL_PX) * 0.5 + 0.5, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    deg = np.degrees(np.arccos(np.clip(final[:, 2], -1.0, 1.0)))
    face, edge = w > 0.5, (w > 0) & (w <= 0.5)

    def stat(sel: np.ndarray, fn) -> float:
        return round(float(fn(deg[sel])), 2) if sel.any() else 0.0

    info = {
        "texels_drawn": int(covered.sum()),
        "lowpass_mm": round(1000 * lowpass_m, 2),
        "lowpass_px": round(sigma_px, 2),
        "face_texels": int(face.sum()),
        "face_mean_deg": stat(face, np.mean),
        "face_p95_deg": stat(face, lambda d: np.percentile(d, 95)),
        "transition_texels": int(edge.sum()),
        "transition_mean_deg": stat(edge, np.mean),
        "max_deg": stat(deg >= 0, np.max),
        "flat_share_of_atlas": round(float((rgb == FLAT_RGB).all(-1).mean()), 4),
    }
    if luminance is not None and face[look].sum() > 100:
        sel = face[look]
        lum = np.asarray(luminance, np.float64)[covered][look][sel]
        mapped = unit((frame[sel] @ final[look][sel][:, :, None])[:, :, 0])
        info["photo_shading_corr"] = {k: shading_agreement(lum, n) for k, n in (("mesh", unit(nl[sel])),
                                                                                 ("mapped", mapped))}  # fmt: skip
    return rgb, info


def shading_agreement(luminance: np.ndarray, normals: np.ndarray) -> float:
    """Correlation between luminance (M,) and the grey SH shading fitted to it on unit ``normals`` (M, 3)
    (engine.asset.delight.fit_sh, robust: over the texels its last round kept)."""
    c, used = fit_sh(luminance, normals)
    s = shading(c, normals)
    return round(float(np.corrcoef(luminance[used], s[used])[0, 1]), 4) if used.sum() > 2 else 0.0


def _inside_polygon(xy: np.ndarray, poly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M,) whether points (M, 2) are inside a closed polygon (K, 2) (even-odd), and their distance to its edges."""
    a, b = poly, np.roll(poly, -1, axis=0)
    x, y = xy[:, :1], xy[:, 1:]
    crosses = ((a[:, 1] > y) != (b[:, 1] > y)) & (
        x < (b[:, 0] - a[:, 0]) * (y - a[:, 1]) / np.where(b[:, 1] == a[:, 1], 1e-30, b[:, 1] - a[:, 1]) + a[:, 0]
    )
    ab = b - a
    s = np.clip(((xy[:, None, :] - a) * ab).sum(-1) / (ab * ab).sum(-1).clip(1e-30), 0.0, 1.0)
    dist = np.linalg.norm(xy[:, None, :] - (a + s[:, :, None] * ab), axis=-1).min(1)
    return crosses.sum(1) % 2 == 1, dist


def skin_roughness(template: np.ndarray, lips: np.ndarray, front: np.ndarray) -> np.ndarray:
    """(M,) roughness at points ``template`` (M, 3) of the skin on the neutral template (the prior's frame: metres,
    +Y up, eyes at y = 0, ears at z = 0): skin, the scalp (above the hairline, above and behind the ears), the
    lips inside ``lips`` (K, 3) (the contour, its xy seen from the front) where ``front`` (M,) (in [0, 1], seen
    from the front), the mouth's inside where not."""
    x, y, z = template.T
    ear = smoothstep(np.abs(x), 0.068, 0.075) * smoothstep(np.abs(y - (-0.02)), 0.04, 0.03)
    top = np.maximum(smoothstep(y, 0.055, 0.075), smoothstep(y, 0.03, 0.05) * smoothstep(z, 0.04, 0.01))  # + sides
    back = smoothstep(z, 0.01, -0.02) * smoothstep(y, -0.085, -0.055) * (1.0 - ear)
    r = ROUGHNESS["skin"] + (ROUGHNESS["scalp"] - ROUGHNESS["skin"]) * np.maximum(top, back)
    lo, hi = lips[:, :2].min(0) - LIPS_EDGE_M, lips[:, :2].max(0) + LIPS_EDGE_M
    near = np.nonzero(((template[:, :2] >= lo) & (template[:, :2] <= hi)).all(1) & (z > MOUTH_Z_M[0]))[0]
    inside, dist = _inside_polygon(template[near, :2], lips[:, :2])
    mouth = np.zeros(len(template))
    mouth[near] = smoothstep(np.where(inside, dist, -dist), -LIPS_EDGE_M, LIPS_EDGE_M)
    mouth[near] *= smoothstep(z[near], *MOUTH_Z_M)  # the lips and the mouth, not the nape behind them
    inner = ROUGHNESS["lips"] + (ROUGHNESS["mouth"] - ROUGHNESS["lips"]) * (1.0 - np.clip(front, 0.0, 1.0))
    return r + (inner - r) * mouth


def eye_roughness(template: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(M,) roughness on an eyeball at template points (M, 3) about its ``centre`` (3,): cornea round the rest
    gaze (+Z), sclera elsewhere."""
    d = unit(template - centre)
    deg = np.degrees(np.arccos(np.clip(d[:, 2], -1.0, 1.0)))
    return ROUGHNESS["sclera"] + (ROUGHNESS["cornea"] - ROUGHNESS["sclera"]) * smoothstep(deg, *CORNEA_DEG[::-1])


def roughness_map(
    pieces: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, Callable]], size: int, work: int = ROUGHNESS_PX
) -> np.ndarray:
    """(size, size) roughness in [0, 1] on the atlas: each piece (name, uv (N, 2), tris, per-vertex attributes
    (N, C), fn) covers its texels with ``fn(attributes interpolated at the texels)``; uncovered texels take the
    nearest covered one's. Drawn at ``work`` px at most and scaled up bilinearly (it varies over millimetres)."""
    n = min(size, work)
    img = np.full((n, n, 1), ROUGHNESS["skin"])
    covered = np.zeros((n, n), bool)
    for _name, uv, tris, attrs, fn in pieces:
        cov, corners, bary = texel_raster(uv, tris, n)
        img[cov, 0] = fn(_lerp(corners, bary, np.asarray(attrs, np.float64)))
        covered |= cov
    r = _fill(img, covered, ROUGHNESS["skin"])[..., 0].astype(np.float32)
    if n != size:
        r = np.asarray(Image.fromarray(r, mode="F").resize((size, size), Image.Resampling.BILINEAR))
    return np.clip(r.astype(np.float64), 0.0, 1.0)


def metallic_roughness_rgb(roughness: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 glTF metallicRoughness texture: G = roughness, B = metalness 0, R = 255 (no occlusion,
    for engines that read the texture as occlusion-roughness-metal)."""
    g = (np.clip(roughness, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.stack([np.full_like(g, 255), g, np.zeros_like(g)], -1)
