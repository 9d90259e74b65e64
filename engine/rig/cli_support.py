"""The CLI's side of the rig: ``likeness render BUNDLE --expression jawOpen=0.8 ...`` and ``likeness drive``."""

from __future__ import annotations

from collections.abc import Sequence

from engine.rig import deform_for_avatar
from engine.rig.arkit import parse_assignments


def deform_from_args(avatar, items: Sequence[str], rig: str = "auto"):
    """The deform callable for ``NAME=WEIGHT`` strings (any of the three spellings, weights 0..1) on ``rig``
    (engine.rig.RIG_SOURCES); raises :class:`engine.errors.InputError` with one clear line for anything else. No
    items: None (the photo as built)."""
    weights = parse_assignments(items)
    if not items:
        return None
    return deform_for_avatar(avatar, weights, rig=rig)


def drive_keyframes(
    avatar,
    photo: str | None = None,
    video: str | None = None,
    csv: str | None = None,
    same_person: bool = False,
    smooth_s: float = 0.04,
    fps: float | None = None,
    max_frames: int | None = None,
):
    """ARKit keyframes (a :class:`engine.rig.livelink.Take`) from exactly one of a driving photo, video or Live
    Link Face CSV. ``same_person`` fits against the avatar's own rig (the driver is the avatar's subject);
    otherwise the driver's own rig is built from its photo / first frame."""
    import numpy as np

    from engine.errors import InputError
    from engine.rig import rig_for_avatar
    from engine.rig.fit import drive_from_photo, drive_from_video
    from engine.rig.livelink import Take, read_csv

    if sum(x is not None for x in (photo, video, csv)) != 1:
        raise InputError("give exactly one of --photo, --video or --csv")
    rig = rig_for_avatar(avatar) if same_person else None
    if csv is not None:
        return read_csv(csv, fps)
    if photo is not None:
        from engine.io.images import load_photo

        ph = load_photo(photo)
        w = drive_from_photo(ph.rgb, rig, focal_35mm=float(ph.focal_35mm or 50.0))
        return Take(np.zeros(1), w[None], {}, fps or 60.0)
    keys = drive_from_video(video, rig, smooth_s=smooth_s, max_frames=max_frames)
    rate = 1.0 / float(np.diff(keys.times_s).mean()) if len(keys.times_s) > 1 else (fps or 30.0)
    return Take(keys.times_s, keys.weights, {}, round(rate, 3))
