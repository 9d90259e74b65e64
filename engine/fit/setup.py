"""What every fit needs around the fitting method, shared by the pipeline and the fidelity harness: the head
proxy, the field on its device with any extra views attached, the training data; and, after fitting, the photo
term's hand-off (the field's own depth from the photo camera, then the view photos switched on)."""

from __future__ import annotations

import numpy as np
import torch

from engine.config import BuildConfig
from engine.face.analysis import FaceAnalysis
from engine.field.factory import make_field
from engine.field.model import RadianceField
from engine.fit.data import FitData, FitView
from engine.fit.views import attach_views, enable_view_photos, prepare_views
from engine.proxy.canonical import Similarity
from engine.proxy.head import build_head_proxy
from engine.render.renderer import RenderOptions, render_image


def prepare_fit(
    an: FaceAnalysis,
    cfg: BuildConfig,
    device: torch.device,
    extra_views=(),
    face_frame: Similarity | None = None,
) -> tuple[FitData, RadianceField, tuple[FitView, ...], dict | None]:
    """Training data, field, extra views and their metric-scale info for an analysed photo. ``face_frame`` is the
    cv -> canonical face frame the proxy's side rule uses (default: the analysis' own canonical frame)."""
    sim = an.pose.to_canonical
    centre_cv = sim.inverse().apply(np.zeros(3))
    proxy = build_head_proxy(an.matte, an.pose.landmarks_cv, centre_cv, an.work_intr, an.pose.scale, face_frame or sim)
    extra, views_info = prepare_views(an, extra_views, cfg) if extra_views else ((), None)
    field = make_field(an, cfg, extra_views=len(extra)).to(device)
    attach_views(field, extra)
    data = FitData(an.crop_rgb, an.matte, proxy, an.work_intr, sim.matrix(), extra, an.pose.landmarks_cv)
    return data, field, extra, views_info


def enable_photo_term(field: RadianceField, an: FaceAnalysis, extra: tuple[FitView, ...], cfg: BuildConfig) -> dict:
    """After fitting: the field's depth from the photo camera (learned colour only) becomes the photo term's
    visibility test, and the extra views' photos are switched on. Returns that render (rgb, alpha, depth_m)."""
    geo = render_image(
        field,
        an.pose.cam2world_gl(),
        an.work_intr,
        RenderOptions(cfg.n_coarse, cfg.n_fine, learned_only=True),
        an.pose.to_canonical.scale,
    )
    field.set_photo_depth(geo["depth_m"])
    enable_view_photos(field, extra, cfg)
    return geo
