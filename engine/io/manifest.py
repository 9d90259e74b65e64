"""THE list of an avatar bundle's files: manifest key -> file name. The pipeline writes these names, readers look
files up by key (engine.io.bundle resolves them inside the bundle), the server serves them by key, and the
add-on's bpy-free copy (blender_addon/bundle.py, BUNDLE_FILES) is checked against this one by a test.
docs/ARCHITECTURE.md, "Add a bundle file", is the recipe."""

from __future__ import annotations

BUNDLE_FILES: dict[str, str] = {
    "glb": "head.glb",
    "obj": "head.obj",
    "mtl": "head.mtl",
    "texture": "texture.png",
    "depth_exr": "depth.exr",
    "depth_png": "depth.png",
    "normal": "normal.png",
    "alpha": "alpha.png",
    "photo": "photo.png",
    "photo_crop": "photo_crop.png",
    "input_render": "input_render.png",
    "field": "field.safetensors",
    "landmarks": "landmarks.json",
    "turntable_mp4": "turntable.mp4",
    "expression": "expression.json",
    "shape_keys": "shape_keys.npz",
}
"""Every fixed file of a bundle (novel views and turntable frames are named by the functions below)."""
ASSET_DIR = "asset"
OPTIONAL_FILES: dict[str, str] = {
    "prior_obj": "prior_head.obj",
    "asset_glb": f"{ASSET_DIR}/head.glb",
    "asset_texture": f"{ASSET_DIR}/texture.png",
    "asset_albedo": f"{ASSET_DIR}/albedo.png",
    "asset_normal": f"{ASSET_DIR}/normal.png",
    "asset_roughness": f"{ASSET_DIR}/roughness.png",
    "asset_skin_obj": f"{ASSET_DIR}/skin.obj",
    "asset_subd1_glb": f"{ASSET_DIR}/head_subd1.glb",
    "asset_skin_subd1_obj": f"{ASSET_DIR}/skin_subd1.obj",
    "asset_subd2_glb": f"{ASSET_DIR}/head_subd2.glb",
    "asset_skin_subd2_obj": f"{ASSET_DIR}/skin_subd2.obj",
    "asset_info": f"{ASSET_DIR}/asset.json",
    "asset_hair_obj": f"{ASSET_DIR}/hair.obj",
    "asset_hair_mtl": f"{ASSET_DIR}/hair.mtl",
    "asset_hair_texture": f"{ASSET_DIR}/hair.png",
}
"""Files only some builds write: ``prior_obj`` is the head prior fitted to the photo (the head-prior method):
the template's quads and UVs in the world frame, the base an artist mesh and rig build on. ``asset_*``: the
artist asset (engine/asset, docs/ASSET.md) in its own folder, written when the head prior is prepared (the
``subd*`` files, the skin subdivided once and twice, as ``likeness asset --subdiv`` or the build asks; the
``hair_*`` files, the hair part's OBJ, its .mtl and its own texture, only where the field has hair: a bald head
has none, and its GLBs no ``hair`` part)."""
TURNTABLE_DIR = "turntable"


def view_key(yaw_deg: float, pitch_deg: float) -> str:
    """The manifest key (and file stem) of a novel view, e.g. ``view_yaw+30_pitch+0``."""
    return f"view_yaw{yaw_deg:+.0f}_pitch{pitch_deg:+.0f}"


def turntable_frame(i: int) -> str:
    """The bundle-relative path of turntable frame ``i``."""
    return f"{TURNTABLE_DIR}/frame_{i:03d}.png"
