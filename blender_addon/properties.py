"""Registered properties: ``Scene.likeness`` (what the panel edits, saved with the file),
``WindowManager.likeness`` (session state: the engine's avatar list and connection status, not saved) and
``Collection.likeness_asset`` (an imported asset's level of detail; ``Collection["likeness"]`` is already the
avatar's bundle info, an ID property, hence the other name)."""

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

from . import scene_io

QUALITY_ITEMS = (
    ("draft", "Draft", "Fastest, lower resolution (about a minute on a CPU)"),
    ("standard", "Standard", "Good quality (several minutes on a CPU)"),
    ("high", "High", "Best quality (needs a GPU to be quick)"),
)
UV_LAYOUT_ITEMS = (
    ("shared", "Shared", "One UV layout for every head: textures, weight maps and retopology transfer exactly"),
    ("subject", "Per Head", "The shared layout relaxed on this head: less face stretch, transfers only roughly"),
)
PHOTO_SOURCE_ITEMS = (
    ("FILE", "File", "A photo file on disk"),
    ("IMAGE", "Image", "An image already in this .blend"),
)
#: One item per level of detail, numbered as the subdivision level (higher is finer; game engines count the other
#: way). Module constants: Blender keeps no reference to the strings a dynamic enum's callback returns.
LOD_ITEMS = (
    ("LOD0", "LOD 0", "The asset's skin as in head.glb (the template's quads)", 0),
    ("LOD1", "LOD 1", "The skin subdivided once (head_subd1.glb, 4 times the quads)", 1),
    ("LOD2", "LOD 2", "The skin subdivided twice (head_subd2.glb, 16 times the quads)", 2),
)
RENDER_MODE_ITEMS = (
    ("CURRENT", "Current Frame", "Render the active camera at the current frame"),
    ("RANGE", "Frame Range", "Render every frame of the scene's range, following the camera animation"),
)

RENDER_RIG_ITEMS = (
    ("AUTO", "Auto", "The asset skin's shape keys when the avatar has an asset, else the scan head's"),
    ("ASSET", "Asset", "The asset skin's shape keys (level 0): the neural render moves as the asset does"),
    ("SCAN", "Scan Head", "The scan head's shape keys: the bundle's own expression rig"),
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
    uv_layout: EnumProperty(name="Asset UVs", items=UV_LAYOUT_ITEMS, default="shared")
    import_after_build: BoolProperty(name="Import When Done", default=True)
    render_mode: EnumProperty(name="Frames", items=RENDER_MODE_ITEMS, default="CURRENT")
    render_as_background: BoolProperty(
        name="As Camera Background", default=True, description="Show the neural render behind the camera view"
    )
    render_rig: EnumProperty(
        name="Keys From",
        items=RENDER_RIG_ITEMS,
        default="AUTO",
        description="Whose shape keys set the neural render's expression (and which rig moves the field)",
    )


def _lod_items(self, context):
    """The levels the asset collection has skins for (LOD 0 alone when it has none: an enum needs an item)."""
    levels = scene_io.lod_skins(self.id_data)
    return [LOD_ITEMS[k] for k in levels] or [LOD_ITEMS[0]]


def _lod_update(self, context):
    if self.lod and self.id_data is not None and scene_io.lod_skins(self.id_data):
        scene_io.show_lod(self.id_data, lod_level(self.lod))


def lod_level(identifier: str) -> int:
    """``"LOD1"`` -> 1."""
    return int(identifier.removeprefix("LOD"))


class LIKENESS_PG_asset(bpy.types.PropertyGroup):
    """On an imported asset's collection (``{name} asset``)."""

    lod: EnumProperty(
        name="Level of Detail",
        items=_lod_items,
        default=0,
        update=_lod_update,
        description="Which skin shows in the viewport and in renders; the others are hidden. Every level has the "
        "same shape keys, driven by level 0's, and the same armature",
    )


CLASSES = (LIKENESS_PG_avatar_item, LIKENESS_PG_session, LIKENESS_PG_scene, LIKENESS_PG_asset)


def attach() -> None:
    bpy.types.Scene.likeness = PointerProperty(type=LIKENESS_PG_scene)
    bpy.types.WindowManager.likeness = PointerProperty(type=LIKENESS_PG_session)
    bpy.types.Collection.likeness_asset = PointerProperty(type=LIKENESS_PG_asset)


def detach() -> None:
    del bpy.types.Collection.likeness_asset
    del bpy.types.WindowManager.likeness
    del bpy.types.Scene.likeness
