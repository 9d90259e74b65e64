"""The teeth's and tongue's colours from the photo where it shows them (engine.asset.build's atlas): the pixels
inside the inner lips (mediapipe's ring of 20 landmarks), the teeth the light and unsaturated among them, the
tongue the red ones; the template's flat colours (engine.asset.texture) where the photo's mouth is closed or shows
too little of either. The photo's colours keep its light, as the baked skin beside them does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from engine.asset.maps import _inside_polygon
from engine.asset.texture import TEETH_RGB, TONGUE_RGB
from engine.conventions import CV_FROM_GL
from engine.io.manifest import BUNDLE_FILES

INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
"""mediapipe's inner-lip ring, in order round the mouth."""
MIN_PIXELS = 40
"""Fewer photo pixels than this inside the inner lips (a closed mouth) or of a part: that part's flat colour."""
TEETH_MAX_SATURATION, TEETH_MIN_VALUE = 0.35, 0.45
"""A mouth pixel is tooth when its HSV saturation is at most, and its value at least, these."""
TONGUE_RED = 1.25
"""A mouth pixel that is not tooth is tongue when its red is this many times its green and its value 0.15-0.85."""


def photo_pixels(avatar, points_world: np.ndarray) -> np.ndarray:
    """(N, 2) pixel (u, v) of world points (N, 3) in the bundle's photo crop (its work camera)."""
    p = np.c_[np.asarray(points_world, np.float64), np.ones(len(points_world))]
    cv = (CV_FROM_GL @ np.linalg.inv(avatar.photo_cam2world) @ p.T).T[:, :3]
    u, v = avatar.work_intrinsics.pixels(cv)
    return np.stack([u, v], -1)


def mouth_colours(photo: np.ndarray, lips_px: np.ndarray) -> dict:
    """``{"teeth_rgb", "tongue_rgb", "from_photo": {"teeth", "tongue"}, "mouth_px", "teeth_px", "tongue_px"}``
    from a photo (H, W, 3) float in [0, 1] and the inner lips' pixels (20, 2) (:data:`INNER_LIPS` order)."""
    h, w = photo.shape[:2]
    lo = np.floor(lips_px.min(0)).astype(int).clip(0, [w - 1, h - 1])
    hi = np.ceil(lips_px.max(0)).astype(int).clip(0, [w - 1, h - 1])
    uu, vv = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
    xy = np.stack([uu.ravel(), vv.ravel()], -1).astype(np.float64) + 0.5
    inside, dist = _inside_polygon(xy, np.asarray(lips_px, np.float64))
    keep = inside & (dist >= 1.0)  # off the lips' own edge
    rgb = photo[vv.ravel()[keep], uu.ravel()[keep]].reshape(-1, 3)
    value = rgb.max(1)
    sat = (value - rgb.min(1)) / np.maximum(value, 1e-6)
    teeth = (sat <= TEETH_MAX_SATURATION) & (value >= TEETH_MIN_VALUE)
    tongue = ~teeth & (rgb[:, 0] >= TONGUE_RED * rgb[:, 1]) & (value >= 0.15) & (value <= 0.85)
    open_mouth = len(rgb) >= MIN_PIXELS
    use_teeth, use_tongue = open_mouth and teeth.sum() >= MIN_PIXELS, open_mouth and tongue.sum() >= MIN_PIXELS
    teeth_rgb = np.median(rgb[teeth], 0) if use_teeth else np.array(TEETH_RGB)
    tongue_rgb = np.median(rgb[tongue], 0) if use_tongue else np.array(TONGUE_RGB)
    return {
        "teeth_rgb": [round(float(c), 3) for c in teeth_rgb],
        "tongue_rgb": [round(float(c), 3) for c in tongue_rgb],
        "from_photo": {"teeth": bool(use_teeth), "tongue": bool(use_tongue)},
        "mouth_px": int(len(rgb)),
        "teeth_px": int(teeth.sum()),
        "tongue_px": int(tongue.sum()),
    }


def bundle_mouth_colours(avatar, landmarks_world: np.ndarray) -> dict:
    """:func:`mouth_colours` of a loaded bundle: its photo crop and its (478, 3) landmarks in world metres; the
    flat colours (``from_photo`` false, ``mouth_px`` 0) when the bundle has no photo crop."""
    path = Path(avatar.path) / (avatar.manifest.get("files") or {}).get("photo_crop", BUNDLE_FILES["photo_crop"])
    if not path.is_file():
        return mouth_colours(np.zeros((1, 1, 3), np.float32), np.zeros((len(INNER_LIPS), 2)))
    photo = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
    return mouth_colours(photo, photo_pixels(avatar, np.asarray(landmarks_world)[list(INNER_LIPS)]))
