"""Extra input views with known cameras: carry them into the reference photo's canonical frame.

The reference photo defines the canonical frame and the metric scale (its template fit). A caller gives each
extra photo's camera relative to the reference camera in true metres; one photo cannot know the subject's true
size, so the engine's metres differ from true metres by a factor k. The relative translations are multiplied by
k, which is measured by triangulating the mediapipe landmarks of every extra view against the reference's
(true-metre depths) and comparing with the reference's lifted landmarks (engine metres)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from engine.config import BuildConfig
from engine.conventions import CV_FROM_GL, Intrinsics
from engine.face.analysis import FaceAnalysis, analyse
from engine.field.model import RadianceField
from engine.fit.data import FitView, view_depth_m
from engine.io.images import Photo


@dataclass(frozen=True)
class ExtraView:
    """Another photo of the same person, same expression. ``ref_from_cam_gl`` (4, 4) is its gl cam2world in the
    reference camera's gl frame (the reference camera is the identity), true metres; ``focal_35mm`` as for
    the reference photo (0: the build's option, else EXIF, else the default)."""

    photo: Photo
    ref_from_cam_gl: np.ndarray
    focal_35mm: float = 0.0


def _rays_cv(points_px: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Unnormalised cv-camera ray directions (N, 3) with z = 1 through pixels (N, 2)."""
    return np.stack(
        [(points_px[:, 0] - intr.cx) / intr.fx, (points_px[:, 1] - intr.cy) / intr.fy, np.ones(len(points_px))], 1
    )


def triangulate_depth(d0: np.ndarray, d1: np.ndarray, origin1: np.ndarray) -> np.ndarray:
    """Reference-camera z-depth (N,) of the closest approach of rays ``t d0`` (from the origin) and
    ``origin1 + u d1`` (N, 3 each, same frame); NaN where the rays are near-parallel or meet behind a camera."""
    a, b, c = (d0 * d0).sum(1), (d0 * d1).sum(1), (d1 * d1).sum(1)
    e, f = d0 @ origin1, d1 @ origin1
    den = a * c - b * b
    ok = den > 1e-9 * a * c
    t = np.where(ok, (e * c - b * f) / np.where(ok, den, 1.0), np.nan)
    u = np.where(ok, (b * e - a * f) / np.where(ok, den, 1.0), np.nan)
    return np.where((t > 0) & (u > 0), t * d0[:, 2], np.nan)


def ref_cv_from_cam_cv(ref_from_cam_gl: np.ndarray, k: float = 1.0) -> np.ndarray:
    """4x4 from an extra view's cv camera to the reference cv camera, translation scaled by ``k``."""
    m = CV_FROM_GL @ np.asarray(ref_from_cam_gl, np.float64) @ CV_FROM_GL
    m[:3, 3] *= k
    return m


def engine_metre_scale(ref: FaceAnalysis, extras: list[FaceAnalysis], poses: list[np.ndarray]) -> tuple[float, dict]:
    """k = engine metres per true metre: median over landmarks of the reference's lifted z-depth divided by
    the z-depth triangulated with each extra view's true relative camera. Returns (k, info)."""
    d0 = _rays_cv(ref.face.points_px[:, :2], ref.photo_intr)
    ratios = []
    for an, pose in zip(extras, poses, strict=True):
        m = ref_cv_from_cam_cv(pose)
        d1 = _rays_cv(an.face.points_px[:, :2], an.photo_intr) @ m[:3, :3].T
        z_true = triangulate_depth(d0, d1, m[:3, 3])
        ratios.append(ref.pose.landmarks_cv[:, 2] / z_true)
    r = np.concatenate(ratios)
    r = r[np.isfinite(r)]
    if len(r) < 20:
        raise ValueError(f"only {len(r)} landmarks triangulate between the views; are the relative cameras right?")
    k = float(np.median(r))
    return k, {"k": k, "landmarks": int(len(r)), "iqr": [float(q) for q in np.quantile(r, [0.25, 0.75])]}


def prepare_views(ref: FaceAnalysis, extra_views, cfg: BuildConfig) -> tuple[tuple[FitView, ...], dict]:
    """Analyse each extra view (landmarks, work crop, selfie matte) and place its cv camera in the reference's
    canonical frame. Returns the FitViews and what was measured (the metre scale k, each view's crop)."""
    analyses = [analyse(v.photo, replace(cfg, focal_35mm=v.focal_35mm) if v.focal_35mm else cfg) for v in extra_views]
    poses = [np.asarray(v.ref_from_cam_gl, np.float64) for v in extra_views]
    k, info = engine_metre_scale(ref, analyses, poses)
    to_canon = ref.pose.to_canonical.matrix()
    views = tuple(
        FitView(an.crop_rgb, an.matte, an.work_intr, to_canon @ ref_cv_from_cam_cv(p, k))
        for an, p in zip(analyses, poses, strict=True)
    )
    info["views"] = [{"crop_box_px": list(an.crop_box), "work_intrinsics": an.work_intr.to_dict()} for an in analyses]
    return views, info


def attach_views(field: RadianceField, views: tuple[FitView, ...]) -> None:
    """Give the field's extra photo slots the views' crops and cameras (disabled until their depth is set)."""
    for k, v in enumerate(views):
        field.set_extra_view(k, v.photo, (v.intr.fx, v.intr.fy, v.intr.cx, v.intr.cy), v.cv_to_canon)


def enable_view_photos(field: RadianceField, views: tuple[FitView, ...], cfg: BuildConfig) -> None:
    """After fitting: each extra view's depth from the fitted field, which turns on its photo term."""
    for k, v in enumerate(views, start=1):
        field.set_photo_depth(view_depth_m(field, v, cfg), view=k)
