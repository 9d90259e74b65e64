"""Shared by the scene_io modules: the ID-property keys, finding an imported avatar, cameras and images."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import bpy
from mathutils import Matrix, Vector

from .. import conventions as cv

PROP = "likeness"
ROLE = "likeness_role"


@dataclass
class AvatarScene:
    """The datablocks of one imported avatar."""

    collection: bpy.types.Collection
    head: bpy.types.Object | None
    camera: bpy.types.Object | None
    landmarks: bpy.types.Object | None = None
    warnings: list[str] = field(default_factory=list)
    """What the import left out (an asset level that did not import), for the operator to report."""

    @property
    def info(self) -> dict:
        return self.collection[PROP].to_dict() if PROP in self.collection else {}

    @property
    def name(self) -> str:
        return self.collection.name

    def role(self, role: str) -> bpy.types.Object | None:
        return next((o for o in self.collection.all_objects if o.get(ROLE) == role), None)


def avatar_from_collection(coll: bpy.types.Collection) -> AvatarScene | None:
    if coll is None or PROP not in coll:
        return None
    objs = list(coll.all_objects)

    def first(role):
        return next((o for o in objs if o.get(ROLE) == role), None)

    return AvatarScene(coll, first("head"), first("photo_camera"), first("landmarks"))


def avatars_in_scene(scene: bpy.types.Scene) -> list[AvatarScene]:
    found = [avatar_from_collection(c) for c in scene.collection.children_recursive]
    return [a for a in found if a is not None]


def find_avatar(context, name: str = "") -> AvatarScene | None:
    """The avatar named ``name`` (its collection name), else the one holding the active object, else the last
    one imported into the scene."""
    scene = context.scene
    avatars = avatars_in_scene(scene)
    if name:
        return next((a for a in avatars if a.name == name), None)
    obj = getattr(context, "active_object", None)
    if obj is not None:
        for a in avatars:
            if obj.name in a.collection.all_objects:
                return a
        cam_parent = obj.parent
        while cam_parent is not None:
            for a in avatars:
                if cam_parent.name in a.collection.all_objects:
                    return a
            cam_parent = cam_parent.parent
    return avatars[-1] if avatars else None


def link_object(obj: bpy.types.Object, coll: bpy.types.Collection, role: str) -> bpy.types.Object:
    coll.objects.link(obj)
    obj[ROLE] = role
    return obj


def remove_role(avatar: AvatarScene, role: str) -> None:
    for obj in [o for o in avatar.collection.all_objects if o.get(ROLE) == role]:
        data = obj.data
        bpy.data.objects.remove(obj)
        if data is not None and data.users == 0:
            if isinstance(data, bpy.types.Camera):
                bpy.data.cameras.remove(data)


def head_centre(avatar: AvatarScene) -> Vector:
    """The orbit centre: the head object's origin (the engine's head centre, between the ears)."""
    return avatar.head.matrix_world.translation.copy() if avatar.head is not None else Vector()


def load_image(path: Path, name: str, non_color: bool = False) -> bpy.types.Image:
    img = bpy.data.images.load(str(path), check_existing=False)
    img.name = name
    if non_color:
        img.colorspace_settings.is_data = True
    return img


def apply_camera_params(cam_data: bpy.types.Camera, p: cv.CameraParams) -> None:
    cam_data.type = "PERSP"
    cam_data.sensor_fit = p.sensor_fit
    cam_data.sensor_width = p.sensor_width_mm
    cam_data.lens = p.lens_mm
    cam_data.shift_x, cam_data.shift_y = p.shift_x, p.shift_y
    cam_data.clip_start, cam_data.clip_end = 0.01, 100.0


def apply_render_size(scene: bpy.types.Scene, p: cv.CameraParams) -> None:
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = p.resolution_x, p.resolution_y, 100
    r.pixel_aspect_x, r.pixel_aspect_y = p.pixel_aspect_x, p.pixel_aspect_y


def camera_intrinsics(scene: bpy.types.Scene, cam: bpy.types.Object) -> cv.Intrinsics:
    """The pixel intrinsics of ``cam`` at the scene's render size (percentage applied)."""
    r, d = scene.render, cam.data
    pct = r.resolution_percentage / 100.0
    return cv.intrinsics_from_camera_params(
        d.lens,
        d.sensor_width,
        d.sensor_height,
        d.sensor_fit,
        d.shift_x,
        d.shift_y,
        max(1, round(r.resolution_x * pct)),
        max(1, round(r.resolution_y * pct)),
        r.pixel_aspect_x,
        r.pixel_aspect_y,
    )


def set_camera_background(
    cam: bpy.types.Object, image: bpy.types.Image, frame_start: int = 1, frames: int = 0, replace_role: str = ""
) -> None:
    """Show ``image`` (a still, or a sequence of ``frames`` starting at ``frame_start``) behind the camera view.
    A background previously added with the same ``replace_role`` (an image ID property) is replaced."""
    data = cam.data
    if replace_role:
        for bg in list(data.background_images):
            if bg.image is not None and bg.image.get(ROLE) == replace_role:
                data.background_images.remove(bg)
    bg = data.background_images.new()
    bg.image = image
    bg.frame_method = "STRETCH"
    bg.alpha = 1.0
    bg.display_depth = "BACK"
    if frames:
        bg.image_user.frame_start = frame_start
        bg.image_user.frame_duration = frames
        bg.image_user.use_auto_refresh = True
    data.show_background_images = True


def linear_keys(obj) -> None:
    for fc in _fcurves(obj.animation_data):
        for kp in fc.keyframe_points:
            kp.interpolation = "LINEAR"


def _fcurves(anim) -> list:
    """All F-curves of an ``animation_data`` (Blender 5 keeps them in layered actions' channelbags)."""
    if anim is None or anim.action is None:
        return []
    action = anim.action
    if hasattr(action, "fcurves") and len(getattr(action, "layers", [])) == 0:
        return list(action.fcurves)
    slot = anim.action_slot
    out = []
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot) if slot is not None else None
            if bag is not None:
                out.extend(bag.fcurves)
    return out


def fcurves(id_data) -> list:
    return _fcurves(getattr(id_data, "animation_data", None))


def look_at_rotation(eye: Vector, target: Vector) -> Matrix:
    """3x3 rotation of a camera at ``eye`` looking at ``target`` with world +Z up."""
    return (target - eye).to_track_quat("-Z", "Y").to_matrix()
