"""The asset's one texture atlas on the template's UV layout: the field's colour baked onto the skin, the eyes
coloured from the field in front of them, flat colours for the teeth and tongue, seams dilated.

``colour_fn`` is world points (N, 3) -> colours (N, 3) in [0, 1] (engine.extract.from_field.colour_fn)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

from engine.extract.raster import rasterize

TEETH_RGB = (0.88, 0.85, 0.78)
TONGUE_RGB = (0.72, 0.38, 0.38)
SCLERA_RGB = (0.86, 0.84, 0.80)


@dataclass(frozen=True)
class AtlasPart:
    """One part's share of the atlas: ``uv`` (N, 2) (v up), ``tris`` (F, 3), and either ``sample_points`` (N, 3)
    world points whose field colour each vertex takes (interpolated over the faces), with ``sample_mix`` (N,) how
    much of it (the rest is ``rgb``), or only the flat ``rgb``."""

    uv: np.ndarray
    tris: np.ndarray
    rgb: tuple[float, float, float] = (0.5, 0.5, 0.5)
    sample_points: np.ndarray | None = None
    sample_mix: np.ndarray | None = None


def bake_atlas(parts: list[AtlasPart], colour_fn: Callable, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) uint8 texture (row 0 = v 1, as images are stored) and its (size, size) coverage mask;
    texels no face covers take the nearest covered texel's colour."""
    uv = np.concatenate([p.uv for p in parts])
    offs = np.cumsum([0] + [len(p.uv) for p in parts])
    tris = np.concatenate([p.tris + o for p, o in zip(parts, offs[:-1], strict=True)])
    pts = np.concatenate([p.sample_points if p.sample_points is not None else np.zeros((len(p.uv), 3)) for p in parts])
    mix = np.concatenate(
        [
            np.zeros(len(p.uv))
            if p.sample_points is None
            else (np.ones(len(p.uv)) if p.sample_mix is None else p.sample_mix)
            for p in parts
        ]
    )
    flat = np.concatenate([np.tile(np.asarray(p.rgb, np.float64), (len(p.uv), 1)) for p in parts])
    xy = np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], 1)
    fid, bary = rasterize(xy, np.zeros(len(uv)), tris, size, size)
    covered = fid >= 0
    f, b = tris[fid[covered]], bary[covered].astype(np.float64)
    m = (b * mix[f]).sum(1)
    col = (b[:, :, None] * flat[f]).sum(1)
    need = m > 1e-3
    if need.any():
        p = (b[need][:, :, None] * pts[f[need]]).sum(1)
        col[need] = m[need, None] * np.asarray(colour_fn(p), np.float64) + (1.0 - m[need, None]) * col[need]
    tex = np.zeros((size, size, 3))
    tex[covered] = col
    if covered.any() and not covered.all():
        _, (iy, ix) = ndi.distance_transform_edt(~covered, return_indices=True)
        tex = tex[iy, ix]
    return (np.clip(tex, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), covered


def eye_sampling(
    eye_verts: np.ndarray, forward: np.ndarray, sdf_fn: Callable, find_surface: Callable
) -> tuple[np.ndarray, np.ndarray]:
    """Where an eyeball's vertices (N, 3) take their colour: the field's surface straight in front of each
    (along the unit ``forward`` (3,), the eye's gaze), and how much ((N,) 1 within 40 deg of the gaze, 0 beyond
    55 deg: the back of the eye is sclera)."""
    c = eye_verts.mean(0)
    dirs = eye_verts - c
    cos = (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)) @ forward
    fwd = np.tile(forward, (len(eye_verts), 1))
    t = find_surface(eye_verts, fwd, sdf_fn, 0.02)
    mix = np.where(np.isfinite(t), 1.0 - np.clip((np.degrees(np.arccos(np.clip(cos, -1, 1))) - 40.0) / 15.0, 0, 1), 0)
    return eye_verts + np.nan_to_num(t)[:, None] * fwd, mix
