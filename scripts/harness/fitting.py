"""Fit a field the way engine.pipeline.build_avatar does, up to the input view (engine.pipeline.fit_field), with
one thing changed at a time -- for the ablations. Nothing after the field (mesh, texture, turntable) is made: the
ablations score neural renders only. Every step is the engine's own; only the changed frame is written here.

Variants:

* ``frame="canonical"`` (the engine) or ``"world"``: in ``world`` the field's frame keeps the photo camera's
  axes (R = the cv->gl flip, so the photo camera has identity rotation) instead of the face-aligned frame from
  the template fit; origin and scale unchanged (Portrait NeRF Table 3's world vs canonical coordinates).
* ``init="proxy"`` (the engine's ``proxy-init`` method) or ``"random"`` (the registered ``random-init`` method,
  engine.fit.random_init: Portrait NeRF Table 2's random initialisation, the same fit after it).
* ``extra_views`` (engine.fit.views.ExtraView, default none): more input photos with known cameras relative to
  the input photo, fitted together with it exactly as build_avatar(extra_views=...) does (Portrait NeRF Table 5)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.avatar import Avatar
from engine.config import BuildConfig
from engine.face.analysis import analyse
from engine.face.camera import HeadPose
from engine.pipeline import fit_field
from engine.proxy.canonical import Similarity

INIT_METHODS = {"proxy": "proxy-init", "random": "random-init"}


def camera_frame_pose(pose: HeadPose) -> HeadPose:
    """The same head centre and scale, but world axes = the photo camera's gl axes."""
    sim = pose.to_canonical
    centre_cv = sim.inverse().apply(np.zeros(3))
    rot = np.diag([1.0, -1.0, -1.0])
    return HeadPose(Similarity(sim.scale, rot, -sim.scale * rot @ centre_cv), pose.landmarks_cv)


def fit_avatar(photo, cfg: BuildConfig, frame: str = "canonical", init: str = "proxy", progress=None, extra_views=()):
    """Returns (Avatar with the fitted field, landmarks_world (478, 3), info dict)."""
    if frame not in ("canonical", "world") or init not in INIT_METHODS:
        raise ValueError("frame must be canonical|world and init proxy|random")
    cfg = replace(cfg, method=INIT_METHODS[init])
    an = face_sim = None
    if frame == "world":  # the proxy's side rule still needs the face frame
        an = analyse(photo, cfg)
        face_sim = an.pose.to_canonical
        an = replace(an, pose=camera_frame_pose(an.pose))
    ctx = fit_field(photo, cfg, progress, analysis=an, face_frame=face_sim, extra_views=extra_views)
    an, c2w = ctx.an, ctx.c2w
    manifest = {
        "canonical": {"scale": ctx.scale},
        "camera": {"cam2world": c2w.tolist(), "work": {"intrinsics": an.work_intr.to_dict()}},
        "settings": cfg.to_dict(),
    }
    avatar = Avatar(Path("."), manifest, ctx.field)
    t = ctx.timings
    info = {
        "frame": frame,
        "init": init,
        "method": ctx.method.name,
        "extra_views": len(ctx.extra),
        "metre_scale": {k: ctx.views_info[k] for k in ("k", "landmarks", "iqr")} if ctx.views_info else None,
        "timings_s": {
            "analyse_proxy": round(t.get("analyse", 0.0) + t["proxy"], 2),
            "init": round(t["init"], 2),
            "fit": round(t["fit"], 2),
        },
        "fit_last": ctx.info_fit.get("history", [])[-1:],
        "photo_camera_rotation_deg": float(
            np.degrees(np.arccos(np.clip((np.trace(c2w[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)))
        ),
    }
    return avatar, an.pose.landmarks_world(), info
