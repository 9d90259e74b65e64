"""The neck blend of a fitted head and of a loaded avatar, and posing an avatar for a render (the head bone turned
by Live Link angles, the render's ``pose``): what engine/rig/pose.py's skinning needs from the prior and the
bundle. The asset GLB (glb_scene.py) skins its skin and hair by :func:`neck_blend` and records it, so the neural
render skins the field as the GLB skins the mesh (docs/RIG.md "Head rotation")."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping

import numpy as np
import torch

from engine.rig.pose import (
    HEAD_BLEND,
    ROOT_FADE,
    NeckBlend,
    PoseDeform,
    about_joint,
    body_pose,
    check_pose,
    eye_gaze,
    fit_plane,
    rotation_matrix,
)

JOINTS_TEMPLATE = {"neck": (0.0, -0.11, -0.02), "head": (0.0, -0.04, -0.01)}
"""Joint heads on the neutral template (metres, the prior's frame); the eye joints sit at the eyeballs' centres."""
NECK_BLEND_KEY = "likeness_neck_blend"
"""The asset GLB's skin extras entry holding the neck blend (:meth:`NeckBlend.to_dict`)."""


def neck_blend(prior, similarity, vertices_world: np.ndarray | None = None) -> NeckBlend:
    """The neck blend of a template fitted by ``similarity`` (s, R, t) (template -> world): the plane through the
    neck cut's vertices of ``vertices_world`` (V, 3) (the fitted head, template-indexed; default the template's own
    moved by the similarity)."""
    from engine.prior.fit import neck_cut_edges

    s, rot, t = similarity
    rot, t = np.asarray(rot, np.float64), np.asarray(t, np.float64)
    world = lambda p: float(s) * np.asarray(p, np.float64) @ rot.T + t  # noqa: E731
    verts = world(prior.vertices) if vertices_world is None else np.asarray(vertices_world, np.float64)
    head = world(JOINTS_TEMPLATE["head"])
    c, n = fit_plane(verts[np.unique(neck_cut_edges(prior))], head)
    return NeckBlend(c, n, float(s) * HEAD_BLEND, float(s) * ROOT_FADE, world(JOINTS_TEMPLATE["neck"]), head)


def neck_blend_for_avatar(avatar) -> NeckBlend:
    """A loaded avatar's neck blend: its asset GLB's (the skin's extras, so the field is skinned as the asset is)
    when the bundle has one that records it, else the prior fitted to the bundle's landmarks (cached per bundle).
    BundleError when neither can be had (no asset and no prepared prior)."""
    from pathlib import Path

    from engine.errors import BackendUnavailable, BundleError
    from engine.io.bundle import bundle_file, bundle_label

    path = Path(avatar.path)
    glb = bundle_file(path, avatar.manifest, "asset_glb", required=False)
    key = (str(path.resolve()), glb.stat().st_mtime if glb is not None and glb.is_file() else None)
    with _LOCK:
        if key in _BLENDS:
            return _BLENDS[key]
    blend = None
    if key[1] is not None:
        blend = _blend_from_glb(glb)
    if blend is None:
        try:
            from engine.avatar import load_landmarks_world
            from engine.prior.fit import fit_to_landmarks
            from engine.prior.model import load_prior

            prior = load_prior()
            fitted = fit_to_landmarks(prior, load_landmarks_world(avatar))
            s, rot, t = fitted.similarity
            blend = neck_blend(prior, fitted.similarity, s * prior.shaped(fitted.coeffs) @ np.asarray(rot).T + t)
        except (BackendUnavailable, OSError, ValueError, KeyError) as exc:
            msg = getattr(exc, "message", str(exc))
            raise BundleError(f"{bundle_label(path)}: no neck and head joints to pose ({msg})",
                              "make the asset first: likeness asset BUNDLE") from exc  # fmt: skip
    with _LOCK:
        _BLENDS[key] = blend
        while len(_BLENDS) > 8:
            _BLENDS.pop(next(iter(_BLENDS)))
    return blend


def _blend_from_glb(glb) -> NeckBlend | None:
    """The neck blend an asset GLB records in its skin's extras; None for an older asset or an unreadable one."""
    from engine.rig.gltf import read_glb

    try:
        g, _ = read_glb(glb.read_bytes())
        return NeckBlend.from_dict(g["skins"][0]["extras"][NECK_BLEND_KEY])
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


_BLENDS: dict = {}
_LOCK = threading.Lock()


def pose_deform(avatar, pose: Mapping[str, object] | None, inner=None):
    """The deform to render a loaded avatar under the neck and head bones of ``pose`` ({bone: 4x4}, checked by
    :func:`check_pose`) and an ``inner`` deform (an expression's, or None): ``inner`` itself when they are at
    rest. The eye bones are :func:`render_deform`'s. InputError for a bad pose, BundleError when the bundle has no
    joints to pose."""
    return _posed(avatar, body_pose(check_pose(pose)), inner)


def _posed(avatar, body: Mapping[str, np.ndarray], inner):
    """``inner`` under the checked neck and head bones ``body`` (itself when there are none)."""
    if not body:
        return inner
    return PoseDeform(neck_blend_for_avatar(avatar), body, avatar.scale, inner, avatar.field.box_center.device)


def render_deform(avatar, expression: Mapping[str, float] | None, pose: Mapping[str, object] | None, rig="auto"):
    """The deform of one render (None for the avatar as photographed): ARKit ``expression`` on ``rig`` (None: the
    photo's own), the eye bones of ``pose`` turning the eyeballs (:func:`engine.rig.pose.eye_gaze`, the asset's
    rig), then its neck and head bones (:func:`pose_deform`). InputError / BundleError as the parts raise them."""
    from engine.rig import deform_for_avatar

    mats = check_pose(pose)
    gaze = eye_gaze(mats)
    deform = None
    if expression is not None or gaze:
        deform = deform_for_avatar(avatar, expression, rig=rig, gaze=gaze)
    return _posed(avatar, body_pose(mats), deform)


def head_pose(avatar, yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> dict[str, np.ndarray]:
    """``{"head": 4x4}``: the head bone turned by Live Link yaw / pitch / roll (degrees, :func:`rotation_matrix`)
    about its joint (the CLI's ``--head``)."""
    rot = rotation_matrix(*(math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg)))
    return {"head": about_joint(rot, neck_blend_for_avatar(avatar).head_joint)}


def live_link_pose(avatar, head_deg=(0.0, 0.0, 0.0), eyes_deg: Mapping | None = None) -> dict[str, np.ndarray]:
    """The render ``pose`` of a Live Link frame: the head bone turned by ``head_deg`` (yaw, pitch, roll degrees) as
    :func:`head_pose` does, and each eye of ``eyes_deg`` ({"eye_L" | "eye_R": (yaw, pitch, roll) degrees}) turned
    about its eyeball's centre on the turned head, as the add-on's Live Link import keys the asset's eye bones.
    The eyes need the asset's rig (its eyeball centres): InputError without one."""
    from engine.rig import rig_named

    pose = head_pose(avatar, *head_deg) if any(head_deg) else {}
    head = pose.get("head", np.eye(4))
    eyes = getattr(rig_named(avatar, "auto"), "eyes", None) if eyes_deg else None
    if eyes_deg and eyes is None:
        from engine.errors import InputError

        raise InputError(
            "the take's eye rotations turn the asset's eyes, and this bundle has none",
            hint="make the asset first (likeness asset BUNDLE), or leave the eye columns out",
        )
    for bone, angles in (eyes_deg or {}).items():
        rot = rotation_matrix(*(math.radians(a) for a in angles))
        pose[bone] = head @ about_joint(rot, eyes["left" if bone == "eye_L" else "right"][0])
    return pose


def posed_frame_seconds(avatar, size: int = 512, repeats: int = 1) -> dict:
    """Benchmark: seconds for one ``size``² neural frame with the head turned (25 deg yaw, 10 deg pitch) from the
    photo camera's direction, the pose's warp built from scratch, beside the same frame at rest. Returns
    ``{"posed_s", "rest_s", "size", "device"}`` (best of ``repeats``)."""
    import time

    cam, intr = avatar.orbit(0.0, 0.0, size)
    dev = avatar.field.box_center.device
    sync = torch.cuda.synchronize if str(dev).startswith("cuda") else (lambda: None)
    best = {"posed_s": math.inf, "rest_s": math.inf}
    for _ in range(max(1, repeats)):
        sync()
        t0 = time.perf_counter()
        avatar.render(cam, intr, deform=pose_deform(avatar, head_pose(avatar, 25.0, 10.0)))
        sync()
        t1 = time.perf_counter()
        avatar.render(cam, intr)
        sync()
        best["posed_s"] = min(best["posed_s"], t1 - t0)
        best["rest_s"] = min(best["rest_s"], time.perf_counter() - t1)
    return {**{k: round(v, 4) for k, v in best.items()}, "size": size, "device": str(dev)}
