"""The animatable avatar: an ARKit-52 expression rig that moves the radiance field and the mesh.

The entry points other parts of Likeness use::

    deform = deform_for_avatar(avatar, {"jawOpen": 0.8})   # -> render(..., deform=deform)
    photo_weights(avatar)                                  # the photo's own expression
    expressed_frame_seconds(bundle, size=512)              # the benchmark's number

Weights are absolute ARKit weights in [0, 1]; names in any of the three spellings; a name not given is 0, so
``{}`` is the neutral face and ``photo_weights(avatar)`` reproduces the photo. See docs/RIG.md."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from engine.config import RIG_SOURCES
from engine.errors import InputError
from engine.rig.arkit import ARKIT_NAMES, parse_weights, to_dict, to_vector
from engine.rig.bundle import rig_for_avatar

__all__ = [
    "ARKIT_NAMES",
    "RIG_SOURCES",
    "deform_for_avatar",
    "expressed_frame_seconds",
    "photo_weights",
    "resolve_rig",
    "rig_for_avatar",
]

log = logging.getLogger("likeness.rig")

_DEFORMS: OrderedDict = OrderedDict()
_DEFORM_CACHE = 8
_LOCK = threading.Lock()


def deform_for_avatar(
    avatar, weights: Mapping[str, float] | None, device=None, rig: str = "auto", gaze: Mapping | None = None
):
    """The backward warp (an :class:`engine.rig.expression.ExpressionDeform`) for ARKit ``weights`` on a loaded
    avatar, to pass as ``deform=`` to ``Avatar.render`` / ``render_image``; ``rig`` is one of
    :data:`RIG_SOURCES` (``auto``: the asset's keys when the bundle has an asset, else the proxy's). ``weights``
    None is the photo's own expression. ``gaze`` ({"eye_L" | "eye_R": (3, 3) rotation relative to the head}, the
    asset's eye bones: engine.rig.pose.eye_gaze) turns the eyeballs instead of the look keys' eyeball motion; it
    needs the asset's rig. Raises :class:`engine.errors.InputError` for an unknown name, a weight outside [0, 1],
    an unknown rig or a gaze on the proxy's rig, :class:`engine.errors.BundleError` for ``rig="asset"`` on a
    bundle without a usable asset. Recent expressions are cached (a turntable re-uses one warp); safe to call
    from several threads."""
    from engine.rig.expression import ExpressionDeform

    w = None if weights is None else to_vector(parse_weights(weights))
    dev = device if device is not None else avatar.field.box_center.device
    rig = rig_named(avatar, rig)
    gaze = {k: np.asarray(v, np.float64) for k, v in (gaze or {}).items()}
    if gaze and getattr(rig, "eyes", None) is None:
        raise InputError(
            "the eye bones turn the asset's eyes, and this render uses the proxy's rig",
            hint="render with rig 'asset' (the bundle needs its asset: likeness asset BUNDLE), or leave the eyes out",
        )
    w = rig.photo_weights if w is None else w
    eyes = b"".join(k.encode() + gaze[k].round(6).tobytes() for k in sorted(gaze))
    key = (id(rig), str(dev), float(avatar.scale), np.asarray(w).round(6).tobytes(), eyes)
    with _LOCK:
        if key in _DEFORMS:
            _DEFORMS.move_to_end(key)
            return _DEFORMS[key]
    d = ExpressionDeform(rig, w, avatar.scale, dev, gaze=gaze or None)
    with _LOCK:
        _DEFORMS[key] = d
        while len(_DEFORMS) > _DEFORM_CACHE:
            _DEFORMS.popitem(last=False)
    return d


def rig_named(avatar, rig: str = "auto"):
    """The rig (:data:`RIG_SOURCES`) of a loaded avatar whose shapes move its field; ``auto`` is
    :func:`resolve_rig`'s choice."""
    from engine.rig.asset_rig import asset_rig_for_avatar

    rig = resolve_rig(avatar, rig)
    return asset_rig_for_avatar(avatar) if rig == "asset" else rig_for_avatar(avatar)


def resolve_rig(avatar, rig: str = "auto") -> str:
    """``proxy`` or ``asset``: ``rig`` itself, or for ``auto`` the asset when the bundle has one whose keys can
    drive the field (a bundle without an asset, or whose asset cannot be read, gets the proxy, the latter with
    one warning line). InputError for a name not in :data:`RIG_SOURCES`."""
    if rig not in RIG_SOURCES:
        raise InputError(f"rig is one of {', '.join(RIG_SOURCES)}, not {rig!r}")
    if rig != "auto":
        return rig
    from engine.errors import BundleError
    from engine.rig.asset_rig import asset_rig_for_avatar, has_asset

    rig_for_avatar(avatar)  # both rigs move the proxy: its own refusal is the bundle's, not the asset's
    try:
        if not has_asset(avatar):
            return "proxy"
        asset_rig_for_avatar(avatar)
    except BundleError as exc:
        key = ("auto-fallback", str(avatar.path))
        with _LOCK:
            first = key not in _WARNED
            _WARNED.add(key)
        if first:
            log.warning("%s; expressions use the proxy rig", exc.message)
        return "proxy"
    return "asset"


_WARNED: set = set()


def photo_weights(avatar, rig: str = "auto") -> dict[str, float]:
    """The photo's estimated ARKit weights (non-zero ones) in ``rig``'s shapes (:data:`RIG_SOURCES`)."""
    return to_dict(rig_named(avatar, rig).photo_weights, skip_zero=True)


def expressed_frame_seconds(avatar, size: int = 512, weights: Mapping[str, float] | None = None, repeats: int = 1):
    """Benchmark: seconds for one expressed ``size``² neural frame of a loaded ``avatar`` from the photo camera's
    direction, the warp built from scratch (no cache) and the render included; also the same frame without an
    expression and the warp's build alone. Returns ``{"expressed_s", "plain_render_s", "warp_build_s", "size",
    "device"}`` (best of ``repeats``)."""
    from engine.rig.expression import ExpressionDeform

    w = to_vector(parse_weights(weights or {"jawOpen": 0.7, "eyeBlinkLeft": 1.0, "mouthSmileRight": 0.6}))
    rig = rig_for_avatar(avatar)
    cam, intr = avatar.orbit(0.0, 0.0, size)
    dev = avatar.field.box_center.device
    best = {"expressed_s": np.inf, "plain_render_s": np.inf, "warp_build_s": np.inf}
    for _ in range(max(1, repeats)):
        _sync(dev)
        t0 = time.perf_counter()
        d = ExpressionDeform(rig, w, avatar.scale, dev)
        t1 = time.perf_counter()
        avatar.render(cam, intr, deform=d)
        _sync(dev)
        t2 = time.perf_counter()
        avatar.render(cam, intr)
        _sync(dev)
        t3 = time.perf_counter()
        best["warp_build_s"] = min(best["warp_build_s"], t1 - t0)
        best["expressed_s"] = min(best["expressed_s"], t2 - t0)
        best["plain_render_s"] = min(best["plain_render_s"], t3 - t2)
    return {**{k: round(v, 4) for k, v in best.items()}, "size": size, "device": str(dev)}


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
