"""What a fit is fitted to: the training views (photo, matte, camera, frame), the reference view's head proxy,
and the per-pixel ray table every fitting step samples from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
import torch

from engine.config import BuildConfig
from engine.conventions import Intrinsics, cam2world_cv_to_gl
from engine.field.model import RadianceField
from engine.proxy.head import HeadProxy
from engine.render.rays import camera_rays_world
from engine.render.renderer import RenderOptions, render_image


@dataclass(frozen=True)
class FitView:
    """One training view: ``photo`` (S, S, 3) and ``matte`` (S, S) in [0, 1], ``intr`` its work camera,
    ``cv_to_canon`` 4x4 similarity from its cv camera (metres) to the canonical frame."""

    photo: np.ndarray
    matte: np.ndarray
    intr: Intrinsics
    cv_to_canon: np.ndarray


@dataclass
class FitData:
    """The training views. The reference view (``photo``, ``matte``, ``intr``, ``cv_to_canon`` as in
    :class:`FitView`) defines the canonical frame and carries the ``proxy`` (in its work camera); ``extra``
    holds further views with known cameras (empty for the single-photo build)."""

    photo: np.ndarray
    matte: np.ndarray
    proxy: HeadProxy
    intr: Intrinsics
    cv_to_canon: np.ndarray
    extra: tuple[FitView, ...] = ()
    landmarks_cv: np.ndarray | None = None
    """The reference photo's 478 mediapipe landmarks (478, 3) in its cv camera, metres (what a prior is fitted to)."""

    def views(self) -> list[FitView]:
        """All views, the reference first."""
        return [FitView(self.photo, self.matte, self.intr, self.cv_to_canon), *self.extra]


def similarity_scale(m: np.ndarray) -> float:
    """The uniform scale s of a 4x4 similarity ``s R x + t``."""
    return float(np.cbrt(abs(np.linalg.det(np.asarray(m, np.float64)[:3, :3]))))


def view_cam2world_gl(view: FitView) -> np.ndarray:
    """gl cam2world (4, 4) of a view in the world frame (world = canonical / scale, metres)."""
    m = np.asarray(view.cv_to_canon, np.float64)
    s = similarity_scale(m)
    world_from_cv = np.eye(4)
    world_from_cv[:3, :3] = m[:3, :3] / s
    world_from_cv[:3, 3] = m[:3, 3] / s
    return cam2world_cv_to_gl(world_from_cv)


def view_depth_m(field: RadianceField, view: FitView, cfg: BuildConfig) -> np.ndarray:
    """The field's z-depth (S, S) in metres (0 where empty) seen from a view's work camera (learned colour
    only: depth does not depend on colour)."""
    m = np.asarray(view.cv_to_canon, np.float64)
    s = similarity_scale(m)
    opts = RenderOptions(cfg.n_coarse, cfg.n_fine, learned_only=True)
    with torch.no_grad():
        return render_image(field, view_cam2world_gl(view), view.intr, opts, s)["depth_m"]


def canon_rays(view: FitData | FitView) -> tuple[np.ndarray, np.ndarray]:
    """Canonical origins and unit directions (S*S, 3) of every work-camera pixel of one view."""
    eye = np.eye(4)
    o, d, _ = camera_rays_world(np.diag([1.0, -1.0, -1.0, 1.0]) @ eye, view.intr)  # cv camera == 'world' here
    m = view.cv_to_canon
    s = similarity_scale(m)
    oc = o @ m[:3, :3].T + m[:3, 3]
    dc = d @ (m[:3, :3] / s).T
    return oc, dc


def ray_table(data: FitData) -> tuple[np.ndarray, ...]:
    """Every work-camera pixel of every view, concatenated (reference first), float32 unless noted: canonical
    origins and unit directions (R, 3), photo (R, 3), matte (R,), the proxy's front as canonical ray distance
    (R,; NaN outside the reference view), near-matte (R,) bool (the matte dilated by 4 pixels) and the matte's
    edge band (R,) bool (3 pixels either side of its 0.5 contour)."""
    cols: list[list[np.ndarray]] = [[] for _ in range(7)]
    for k, view in enumerate(data.views()):
        oc, dc = canon_rays(view)
        if k == 0:
            s = similarity_scale(view.cv_to_canon)
            _, _, zpt = camera_rays_world(np.diag([1.0, -1.0, -1.0, 1.0]), view.intr)
            proxy = (data.proxy.front_m.reshape(-1) / zpt * s).astype(np.float32)
        else:
            proxy = np.full(view.matte.size, np.nan, np.float32)
        inside = view.matte > 0.5
        near = ndi.binary_dilation(inside, iterations=4).reshape(-1)
        core = ndi.binary_erosion(inside, iterations=3).reshape(-1)
        edge = ndi.binary_dilation(inside, iterations=3).reshape(-1) & ~core
        parts = (oc, dc, view.photo.reshape(-1, 3), view.matte.reshape(-1), proxy, near, edge)
        for col, part in zip(cols, parts, strict=True):
            col.append(part)
    out = [np.concatenate(c).astype(np.float32) for c in cols[:5]]
    return (*out, np.concatenate(cols[5]), np.concatenate(cols[6]))


def hidden_voxels(field: RadianceField, data: FitData, cfg: BuildConfig, margin_voxels: float) -> np.ndarray:
    """Boolean (G, G, G) grid, [z, y, x]: the SDF voxels no training view's rays reach — inside a view's matte
    (its opaque interior, 2 px in from the contour, where the outline is fitted) and more than ``margin_voxels``
    behind its visible surface (the reference view's proxy front; an extra view's rendered depth) — in every view.
    What falls outside a view's picture is left free (the regularisers clear the proxy's shoulders below the crop
    as before). Only the regularisers would move hidden voxels, and with Adam a consistent regulariser gradient,
    however small, moves a voxel at the full learning rate: behind the face that eroded every convex surface a
    few voxels per hundred steps (the back of the skull flattened into a wall). They keep what the fitting
    method started from."""
    from engine.fit.proxy_init import grid_points  # noqa: PLC0415 - proxy_init imports this module

    pts = grid_points(field)
    g = field.sdf.shape[-1]
    hidden = np.ones(len(pts), bool)
    views = data.views()
    fronts = [data.proxy.front_m] + [view_depth_m(field, v, cfg) for v in views[1:]]
    for view, front in zip(views, fronts, strict=True):
        canon_to_cv = np.linalg.inv(np.asarray(view.cv_to_canon, np.float64))
        pc = pts @ canon_to_cv[:3, :3].T + canon_to_cv[:3, 3]
        z = pc[:, 2]
        u, v = view.intr.pixels(pc)
        h, w = view.matte.shape
        inb = (z > 1e-6) & (u >= 0) & (v >= 0) & (u < w) & (v < h)
        iu = np.clip(u.astype(np.int64), 0, w - 1)
        iv = np.clip(v.astype(np.int64), 0, h - 1)
        f = np.asarray(front, np.float64)[iv, iu]
        margin_m = margin_voxels * field.voxel / similarity_scale(view.cv_to_canon)
        # Near the matte's contour every voxel along a ray shapes its alpha (the outline is fitted there), so only
        # the matte's interior, 2 px in from its contour and fully opaque, hides what lies behind the surface.
        interior = ndi.binary_erosion(view.matte > 0.5, iterations=2) & (view.matte > 0.95)
        behind = interior[iv, iu] & np.isfinite(f) & (f > 0) & (z > f + margin_m)
        hidden &= inb & behind
    return hidden.reshape(g, g, g)
