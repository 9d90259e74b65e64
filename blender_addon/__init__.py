"""Likeness for Blender: build an avatar from a portrait photo with the Likeness engine, import it with the
photo's camera, and make turntables, dolly zooms and neural renders. Registration lives here, over one tuple.

Without ``bpy`` (plain Python: unit tests, other tools) only the bpy-free modules are usable -- ``client``,
``conventions``, ``bundle``, ``gltf_mesh``, ``arkit``, ``livelink`` -- and nothing is registered.
"""

from __future__ import annotations

try:
    import bpy
except ImportError:  # not inside Blender
    bpy = None

if bpy is not None:
    from . import engine_link, jobs, operators, preferences, properties
    from .ui import panels

    CLASSES = (
        *properties.CLASSES,
        *preferences.CLASSES,
        *operators.CLASSES,
        *panels.CLASSES,
    )

    def register() -> None:
        for cls in CLASSES:
            bpy.utils.register_class(cls)
        properties.attach()
        bpy.types.STATUSBAR_HT_header.append(panels.draw_status_bar)

    def unregister() -> None:
        jobs.shutdown()
        engine_link.stop_local_engine()
        bpy.types.STATUSBAR_HT_header.remove(panels.draw_status_bar)
        properties.detach()
        for cls in reversed(CLASSES):
            bpy.utils.unregister_class(cls)
