"""Add-on preferences: which engine to use, and the snapshot of them that worker threads get."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

from .engine_link import EngineSettings

ADDON_ID = __package__


class LIKENESS_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    mode: EnumProperty(
        name="Engine",
        items=(
            (
                "LOCAL",
                "Local",
                "Start the engine from a Python environment on this computer when first needed, "
                "stop it when Blender quits",
            ),
            ("REMOTE", "Remote", "Connect to an engine that is already running (this or another computer)"),
        ),
        default="LOCAL",
    )
    python_path: StringProperty(
        name="Engine Python", subtype="FILE_PATH", description="The engine's venv folder or its python executable"
    )
    workspace: StringProperty(
        name="Workspace",
        subtype="DIR_PATH",
        description="Where the local engine keeps builds (empty: a temporary folder)",
    )
    port: IntProperty(name="Port", default=0, min=0, max=65535, description="Local engine port (0 = any free port)")
    url: StringProperty(name="URL", default="http://127.0.0.1:8765", description="The remote engine's address")
    token: StringProperty(name="Token", subtype="PASSWORD", description="Bearer token the remote engine expects")
    timeout_s: FloatProperty(
        name="Timeout",
        default=10.0,
        min=1.0,
        max=300.0,
        unit="TIME_ABSOLUTE",
        description="Seconds to wait for an answer to an ordinary request",
    )
    cache_dir: StringProperty(
        name="Download Folder",
        subtype="DIR_PATH",
        description="Where bundles downloaded from the engine go (empty: next to the workspace)",
    )

    def draw(self, context):
        from .ui.preferences import draw_preferences

        draw_preferences(self, context)


def get_preferences(context=None) -> LIKENESS_AP_preferences | None:
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def engine_settings(context=None) -> EngineSettings:
    """A plain snapshot of the engine preferences (main thread) for worker threads. Without registered
    preferences (the add-on's modules used directly) the defaults apply, overridable by LIKENESS_ENGINE_*
    environment variables (PYTHON, URL, TOKEN, MODE)."""
    import os

    p = get_preferences(context)
    env = os.environ
    if p is None:
        return EngineSettings(
            mode=env.get("LIKENESS_ENGINE_MODE", "REMOTE" if env.get("LIKENESS_ENGINE_URL") else "LOCAL"),
            python=env.get("LIKENESS_ENGINE_PYTHON", ""),
            url=env.get("LIKENESS_ENGINE_URL", "http://127.0.0.1:8765"),
            token=env.get("LIKENESS_ENGINE_TOKEN", ""),
        )
    return EngineSettings(
        mode=p.mode,
        python=bpy.path.abspath(p.python_path) if p.python_path else "",
        workspace=bpy.path.abspath(p.workspace) if p.workspace else "",
        port=p.port,
        url=p.url,
        token=p.token,
        timeout_s=p.timeout_s,
    )


def download_dir(context=None) -> str:
    import os

    from .engine_link import default_workspace

    p = get_preferences(context)
    if p is not None and p.cache_dir:
        return bpy.path.abspath(p.cache_dir)
    base = bpy.path.abspath(p.workspace) if p is not None and p.workspace else default_workspace()
    return os.path.join(base, "downloads")


CLASSES = (LIKENESS_AP_preferences,)
