"""Fit a field the way engine.pipeline.build_avatar does, up to the input view, with one thing changed at a
time -- for the ablations. Nothing after the field (mesh, texture, turntable) is made: the ablations score
neural renders only. Every step is the engine's own function; only the changed step is written here.

Variants:

* ``frame="canonical"`` (the engine) or ``"world"``: in ``world`` the field's frame keeps the photo camera's
  axes (R = the cv->gl flip, so the photo camera has identity rotation) instead of the face-aligned frame from
  the template fit; origin and scale unchanged (Portrait NeRF Table 3's world vs canonical coordinates).
* ``init="proxy"`` (the engine's ProxyInitFit) or ``"random"``: the SDF grid starts as uniform noise of +-0.5
  voxel (density everywhere, gradients everywhere), the triplanes as N(0, 0.01), the decoder at PyTorch's
  default, and the fit's colour prior points at the random field's own colours (Portrait NeRF Table 2's random
  initialisation). The fit itself -- including its proxy-depth agreement term -- is unchanged, so this isolates
  the initialisation, not the proxy's role as a loss.
* ``extra_views`` (engine.build.views.ExtraView, default none): more input photos with known cameras relative to
  the input photo, fitted together with it exactly as build_avatar(extra_views=...) does (Portrait NeRF Table 5)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from engine.avatar import Avatar, torch_device
from engine.build.fit import FitData, ProxyInitFit
from engine.build.setup import enable_photo_term, prepare_fit
from engine.config import BuildConfig
from engine.face.analysis import analyse
from engine.face.camera import HeadPose
from engine.proxy.canonical import Similarity


class RandomInitFit(ProxyInitFit):
    """ProxyInitFit with its ``init`` replaced by a random one (see the module docstring)."""

    name = "random-init-fit"

    def init(self, field, data: FitData, progress=None, cancel=None) -> dict:
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(self.cfg.seed)  # CPU generator, copied to the field's device
        with torch.no_grad():
            field.sdf.copy_((torch.rand(field.sdf.shape, generator=gen) - 0.5) * field.voxel)
            field.planes.copy_(torch.randn(field.planes.shape, generator=gen) * 0.01)
        field.refresh_normals()
        u = (torch.rand(20000, 3, generator=gen) * 2.0 - 1.0).to(field.box_center.device)
        pts = (u * field.box_half + field.box_center).float()
        with torch.no_grad():
            self._prior = (pts, field.learned_colour(pts).detach())
        return {"init_s": time.perf_counter() - t0, "init_colour_mse": None}


def camera_frame_pose(pose: HeadPose) -> HeadPose:
    """The same head centre and scale, but world axes = the photo camera's gl axes."""
    sim = pose.to_canonical
    centre_cv = sim.inverse().apply(np.zeros(3))
    rot = np.diag([1.0, -1.0, -1.0])
    return HeadPose(Similarity(sim.scale, rot, -sim.scale * rot @ centre_cv), pose.landmarks_cv)


def fit_avatar(photo, cfg: BuildConfig, frame: str = "canonical", init: str = "proxy", progress=None, extra_views=()):
    """Returns (Avatar with the fitted field, landmarks_world (478, 3), info dict)."""
    if frame not in ("canonical", "world") or init not in ("proxy", "random"):
        raise ValueError("frame must be canonical|world and init proxy|random")
    device = torch_device(cfg.device)
    torch.manual_seed(cfg.seed)
    t = {}
    t0 = time.perf_counter()
    an = analyse(photo, cfg)
    face_sim = an.pose.to_canonical  # the proxy's side rule needs the face frame in both variants
    if frame == "world":
        an = replace(an, pose=camera_frame_pose(an.pose))
    sim = an.pose.to_canonical
    data, field, extra, views_info = prepare_fit(an, cfg, device, extra_views, face_frame=face_sim)
    t["analyse_proxy"] = time.perf_counter() - t0
    method = (RandomInitFit if init == "random" else ProxyInitFit)(cfg)
    t1 = time.perf_counter()
    method.init(field, data, progress, None)
    t["init"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    info_fit = method.fit(field, data, progress, None)
    t["fit"] = time.perf_counter() - t1
    c2w = an.pose.cam2world_gl()
    enable_photo_term(field, an, extra, cfg)
    manifest = {
        "canonical": {"scale": sim.scale},
        "camera": {"cam2world": c2w.tolist(), "work": {"intrinsics": an.work_intr.to_dict()}},
        "settings": cfg.to_dict(),
    }
    avatar = Avatar(Path("."), manifest, field)
    info = {
        "frame": frame,
        "init": init,
        "method": method.name,
        "extra_views": len(extra),
        "metre_scale": {k: views_info[k] for k in ("k", "landmarks", "iqr")} if views_info else None,
        "timings_s": {k: round(v, 2) for k, v in t.items()},
        "fit_last": info_fit.get("history", [])[-1:] if info_fit else [],
        "photo_camera_rotation_deg": float(
            np.degrees(np.arccos(np.clip((np.trace(c2w[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)))
        ),
    }
    return avatar, an.pose.landmarks_world(), info
