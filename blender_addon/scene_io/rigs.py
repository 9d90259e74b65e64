"""Camera rigs on an imported avatar: turntable, dolly zoom, back to the photo camera."""

from __future__ import annotations

import math

import bpy
from mathutils import Matrix, Vector

from .. import conventions as cv
from .common import AvatarScene, apply_render_size, head_centre, linear_keys, link_object, look_at_rotation, remove_role

MIN_CLEARANCE_M = 0.1  # the dolly camera stays at least this far in front of the nearest face point


def make_turntable(
    scene: bpy.types.Scene,
    avatar: AvatarScene,
    *,
    frame_start: int,
    frame_end: int,
    lens_mm: float,
    distance_m: float,
    pitch_deg: float,
    clockwise: bool = False,
) -> bpy.types.Object:
    """An empty at the head centre spun once (linear keys; frame_end + 1 == 360 deg so loops are seamless) with a
    camera parented to it, looking at the head. Replaces the avatar's previous turntable. Returns the camera."""
    remove_role(avatar, "turntable_camera")
    remove_role(avatar, "turntable_pivot")
    name = avatar.name.removeprefix("Likeness ")
    pivot = link_object(bpy.data.objects.new(f"{name} turntable pivot", None), avatar.collection, "turntable_pivot")
    pivot.empty_display_type = "CIRCLE"
    pivot.empty_display_size = distance_m
    pivot.location = head_centre(avatar)
    cam_data = bpy.data.cameras.new(f"{name} turntable camera")
    cam_data.lens, cam_data.sensor_width, cam_data.sensor_fit = lens_mm, cv.DEFAULT_SENSOR_WIDTH_MM, "HORIZONTAL"
    cam_data.clip_start, cam_data.clip_end = 0.01, 100.0
    cam = link_object(bpy.data.objects.new(f"{name} turntable camera", cam_data), avatar.collection, "turntable_camera")
    cam.parent = pivot
    eye = Vector(cv.orbit_offset_blender(distance_m, 0.0, pitch_deg))
    cam.matrix_basis = Matrix.Translation(eye) @ look_at_rotation(eye, Vector()).to_4x4()
    turn = -2.0 * math.pi if clockwise else 2.0 * math.pi
    pivot.rotation_mode = "XYZ"
    for frame, angle in ((frame_start, 0.0), (frame_end + 1, turn)):
        pivot.rotation_euler = (0.0, 0.0, angle)
        pivot.keyframe_insert("rotation_euler", index=2, frame=frame)
    linear_keys(pivot)
    scene.frame_start, scene.frame_end = frame_start, frame_end
    scene.camera = cam
    return cam


def face_points_world(avatar: AvatarScene) -> list[Vector]:
    """Points whose image size the dolly zoom keeps: the landmarks, else the head's bounding-box corners."""
    if avatar.landmarks is not None:
        mw = avatar.landmarks.matrix_world
        return [mw @ v.co for v in avatar.landmarks.data.vertices]
    if avatar.head is not None:
        mw = avatar.head.matrix_world
        return [mw @ Vector(c) for c in avatar.head.bound_box]
    return [Vector()]


def face_width_depth(points_cam: list[Vector]) -> float:
    """The z-depth (metres) at which the face's width is measured: the mean depth of the leftmost and rightmost
    points in the image (points in camera axes, in front: z < 0). Keeping lens / this depth constant keeps the
    face's width in pixels."""
    xs = [p.x / -p.z for p in points_cam]
    left, right = points_cam[xs.index(min(xs))], points_cam[xs.index(max(xs))]
    return 0.5 * (-left.z - right.z)


def make_dolly_zoom(
    scene: bpy.types.Scene,
    avatar: AvatarScene,
    source: bpy.types.Object,
    *,
    frame_start: int,
    frame_end: int,
    end_lens_mm: float,
    ease: bool = True,
) -> bpy.types.Object:
    """A copy of camera ``source`` that moves along its optical axis while its focal length changes from the
    source's lens to ``end_lens_mm`` so the face keeps its width (lens / depth of the face's sides constant).
    Keyed on every frame (location and lens). Replaces the avatar's previous dolly camera. Returns the camera."""
    remove_role(avatar, "dolly_camera")
    name = avatar.name.removeprefix("Likeness ")
    cam = link_object(source.copy(), avatar.collection, "dolly_camera")
    cam.data = source.data.copy()
    cam.name = cam.data.name = f"{name} dolly camera"
    cam.pop("likeness_intrinsics", None)
    cam.animation_data_clear()
    cam.data.animation_data_clear()
    for bg in list(cam.data.background_images):
        cam.data.background_images.remove(bg)
    cam.data.show_background_images = False
    cam.parent = None
    cam.matrix_world = source.matrix_world.copy()
    lens0 = source.data.lens
    local = [source.matrix_world.inverted() @ p for p in face_points_world(avatar)]
    depth0 = face_width_depth(local)
    nearest = min(-p.z for p in local)
    if nearest + cv.dolly_move_for_lens(lens0, depth0, end_lens_mm) < MIN_CLEARANCE_M:
        raise ValueError(f"a {end_lens_mm:.0f} mm lens would put the camera inside the head")
    loc0 = cam.matrix_world.translation.copy()
    back = (cam.matrix_world.to_3x3() @ Vector((0.0, 0.0, 1.0))).normalized()
    span = max(1, frame_end - frame_start)
    for frame in range(frame_start, frame_end + 1):
        t = (frame - frame_start) / span
        s = t * t * (3.0 - 2.0 * t) if ease else t
        lens = lens0 + (end_lens_mm - lens0) * s
        cam.location = loc0 + back * cv.dolly_move_for_lens(lens0, depth0, lens)
        cam.data.lens = lens
        cam.keyframe_insert("location", frame=frame)
        cam.data.keyframe_insert("lens", frame=frame)
    linear_keys(cam)
    linear_keys(cam.data)
    cam["likeness_dolly"] = {"lens_start": lens0, "lens_end": end_lens_mm, "face_depth_m": depth0}
    scene.frame_start, scene.frame_end = frame_start, frame_end
    scene.camera = cam
    return cam


def use_photo_camera(context, avatar: AvatarScene) -> bpy.types.Object:
    """Make the avatar's photo camera the scene camera at the photo's render size; look through it when a 3D
    view is at hand."""
    scene, cam = context.scene, avatar.camera
    intr = cv.Intrinsics.from_dict(dict(cam["likeness_intrinsics"]))
    apply_render_size(scene, cv.camera_params_from_intrinsics(intr))
    scene.camera = cam
    space = getattr(context, "space_data", None)
    if space is not None and space.type == "VIEW_3D" and space.region_3d is not None:
        space.region_3d.view_perspective = "CAMERA"
    return cam
