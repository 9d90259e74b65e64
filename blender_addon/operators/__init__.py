"""Operators (``bpy.ops.likeness.*``): validate, hand work to ``jobs``/``scene_io``, report. See docs/ADDON.md."""

from . import asset, avatars, build, camera, engine, livelink, render

CLASSES = (
    *engine.CLASSES,
    *build.CLASSES,
    *avatars.CLASSES,
    *asset.CLASSES,
    *camera.CLASSES,
    *livelink.CLASSES,
    *render.CLASSES,
)
