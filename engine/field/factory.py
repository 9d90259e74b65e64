"""Make a RadianceField for an analysed photo: the canonical box and the work camera's photo term."""

from __future__ import annotations

import numpy as np

from engine.config import BuildConfig
from engine.face.analysis import FaceAnalysis
from engine.field.model import RadianceField


def field_box(analysis: FaceAnalysis) -> tuple[np.ndarray, float]:
    """Canonical cube holding the work crop's frustum around the head: centre (3,) and half side."""
    pose = analysis.pose
    sim = pose.to_canonical
    centre_cv = sim.inverse().apply(np.zeros(3))
    z = float(centre_cv[2])
    wi = analysis.work_intr
    ray = np.array([(wi.width / 2 - wi.cx) / wi.fx, (wi.height / 2 - wi.cy) / wi.fy, 1.0]) * z
    half_m = 0.5 * wi.width / wi.fx * z
    centre = sim.apply(ray[None])[0]
    return centre.astype(np.float32), float(1.1 * half_m * sim.scale)


def make_field(analysis: FaceAnalysis, cfg: BuildConfig, extra_views: int = 0) -> RadianceField:
    """The field for the reference photo's analysis, with ``extra_views`` more photo slots."""
    centre, half = field_box(analysis)
    wi = analysis.work_intr
    return RadianceField(
        box_center=centre,
        box_half=half,
        grid_res=cfg.grid_res,
        plane_res=cfg.plane_res,
        plane_channels=cfg.plane_channels,
        photo=analysis.crop_rgb,
        photo_fx=wi.fx,
        photo_fy=wi.fy,
        photo_cx=wi.cx,
        photo_cy=wi.cy,
        canon_from_cv=analysis.pose.to_canonical.matrix(),
        extra_views=extra_views,
    )
