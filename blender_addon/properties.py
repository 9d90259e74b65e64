"""Registered properties: ``Scene.likeness`` (what the panel edits, saved with the file) and
``WindowManager.likeness`` (session state: the engine's avatar list and connection status, not saved)."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

QUALITY_ITEMS = (
    ("draft", "Draft", "Fastest, lower resolution (about a minute on a CPU)"),
    ("standard", "Standard", "Good quality (several minutes on a CPU)"),
    ("high", "High", "Best quality (needs a GPU to be quick)"),
)
PHOTO_SOURCE_ITEMS = (
    ("FILE", "File", "A photo file on disk"),
    ("IMAGE", "Image", "An image already in this .blend"),
)
RENDER_MODE_ITEMS = (
    ("CURRENT", "Current Frame", "Render the active camera at the current frame"),
    ("RANGE", "Frame Range", "Render every frame of the scene's range, following the camera animation"),
)


class LIKENESS_PG_avatar_item(bpy.types.PropertyGroup):
    """One avatar the engine knows (``GET /v1/avatars``)."""

    avatar_id: StringProperty(name="ID")
    input_name: StringProperty(name="Photo")
    quality: StringProperty(name="Quality")
    created: StringProperty(name="Created")


class LIKENESS_PG_session(bpy.types.PropertyGroup):
    avatars: CollectionProperty(type=LIKENESS_PG_avatar_item)
    avatar_index: IntProperty(name="Avatar", default=0)
    engine_status: StringProperty(name="Engine", description="Result of the last connection test")


class LIKENESS_PG_scene(bpy.types.PropertyGroup):
    photo_source: EnumProperty(name="Photo From", items=PHOTO_SOURCE_ITEMS, default="FILE")
    photo_path: StringProperty(name="Photo", subtype="FILE_PATH", description="Portrait photo (JPEG, PNG, WebP)")
    photo_image: PointerProperty(name="Image", type=bpy.types.Image, description="A photo already in this file")
    quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="standard")
    face_index: IntProperty(
        name="Face", default=0, min=0, description="Which face when the photo shows several (0 = the largest)"
    )
    focal_35mm: FloatProperty(
        name="Focal (35 mm)",
        default=0.0,
        min=0.0,
        soft_max=300.0,
        description="35 mm-equivalent focal length; 0 = from EXIF, else 50 mm",
    )
    import_after_build: BoolProperty(name="Import When Done", default=True)
    render_mode: EnumProperty(name="Frames", items=RENDER_MODE_ITEMS, default="CURRENT")
    render_as_background: BoolProperty(
        name="As Camera Background", default=True, description="Show the neural render behind the camera view"
    )


CLASSES = (LIKENESS_PG_avatar_item, LIKENESS_PG_session, LIKENESS_PG_scene)


def attach() -> None:
    bpy.types.Scene.likeness = PointerProperty(type=LIKENESS_PG_scene)
    bpy.types.WindowManager.likeness = PointerProperty(type=LIKENESS_PG_session)


def detach() -> None:
    del bpy.types.WindowManager.likeness
    del bpy.types.Scene.likeness
