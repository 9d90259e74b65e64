"""The only package that creates datablocks: the imported avatar (collection, head mesh with UVs, material and
shape keys, photo camera with its background, depth/normal/alpha images), camera rigs, Live Link Face keyframes
and neural-render images.

Main thread only (see ``jobs.py``). Functions take plain values and return the objects they made; operators
decide what to report. Links back to the bundle live in ID properties (they survive without the add-on):

* ``collection["likeness"]``: ``bundle_dir``, ``avatar_id``, ``engine_url``, ``engine_version``, ``input_name``,
  ``quality``, ``created``, ``photo_width``, ``photo_height`` (and ``uploaded_avatar_id``, written by a neural
  render that sent the bundle's field to an engine);
* ``object["likeness_role"]``: ``head`` | ``photo_camera`` | ``landmarks`` | ``turntable_pivot`` |
  ``turntable_camera`` | ``dolly_camera`` | ``key_light`` | ``fill_light`` | ``rim_light``, and the asset's
  ``asset_<part>`` (``asset_skin``, ``asset_skin_lod1``, ``asset_skin_lod2``, ``asset_eye_L``, ...) with
  ``object["likeness_lod"]`` on its skins and ``collection["likeness_role"] = "asset"`` on its collection;
* ``image["likeness_role"] = "neural_render"`` on neural renders.
"""

from .common import (
    PROP,
    ROLE,
    AvatarScene,
    apply_camera_params,
    apply_render_size,
    avatar_from_collection,
    avatars_in_scene,
    camera_intrinsics,
    fcurves,
    find_avatar,
    head_centre,
    load_image,
    look_at_rotation,
    set_camera_background,
)
from .importer import add_shape_keys, head_material, import_bundle, mesh_from_data
from .livelink import (
    KeyedTake,
    LiveLinkTargets,
    arkit_blocks,
    key_take,
    livelink_targets,
    set_expression,
    target_shapes,
)
from .lod import LOD_PROP, asset_collection, asset_shown, lod_skins, show_asset, show_lod, shown_lod
from .renders import (
    add_studio_lights,
    bone_pose,
    expression_source,
    expression_weights,
    frame_requests,
    load_render,
    pose_armature,
)
from .rigs import (
    MIN_CLEARANCE_M,
    face_points_world,
    face_width_depth,
    make_dolly_zoom,
    make_turntable,
    use_photo_camera,
)

__all__ = [
    "MIN_CLEARANCE_M",
    "PROP",
    "ROLE",
    "AvatarScene",
    "LOD_PROP",
    "KeyedTake",
    "LiveLinkTargets",
    "add_shape_keys",
    "add_studio_lights",
    "apply_camera_params",
    "apply_render_size",
    "arkit_blocks",
    "asset_collection",
    "asset_shown",
    "avatar_from_collection",
    "avatars_in_scene",
    "bone_pose",
    "camera_intrinsics",
    "expression_source",
    "expression_weights",
    "face_points_world",
    "face_width_depth",
    "fcurves",
    "find_avatar",
    "frame_requests",
    "head_centre",
    "head_material",
    "import_bundle",
    "key_take",
    "livelink_targets",
    "load_image",
    "load_render",
    "lod_skins",
    "look_at_rotation",
    "make_dolly_zoom",
    "make_turntable",
    "mesh_from_data",
    "pose_armature",
    "set_camera_background",
    "set_expression",
    "show_asset",
    "show_lod",
    "shown_lod",
    "target_shapes",
    "use_photo_camera",
]
