"""Camera tools: turntable rig, dolly zoom (perspective manipulation), back to the photo camera."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

from .. import scene_io
from .common import AVATAR, require_avatar, require_frame_range


class LIKENESS_OT_turntable(bpy.types.Operator):
    """Add a turntable: a camera orbiting the head's centre once over the frame range (keyframed)"""

    bl_idname = "likeness.turntable"
    bl_label = "Turntable"
    bl_options = {"REGISTER", "UNDO"}

    avatar: AVATAR
    frame_start: IntProperty(name="Start", default=1, min=0)
    frame_end: IntProperty(name="End", default=72, min=1)
    focal_length: FloatProperty(
        name="Focal Length",
        default=0.0,
        min=0.0,
        soft_max=300.0,
        unit="CAMERA",
        description="Lens in mm on a 36 mm sensor (0 = the photo camera's)",
    )
    distance: FloatProperty(
        name="Distance",
        default=0.0,
        min=0.0,
        soft_max=20.0,
        unit="LENGTH",
        description="Camera distance from the head centre (0 = keep the photo's framing at this focal length)",
    )
    pitch: FloatProperty(
        name="Pitch", default=5.0, min=-89.0, max=89.0, description="Degrees above the head centre (negative: below)"
    )
    clockwise: BoolProperty(name="Clockwise", default=False, description="Seen from above")

    def execute(self, context):
        avatar = require_avatar(self, context, self.avatar)
        if avatar is None:
            return {"CANCELLED"}
        if not require_frame_range(self, self.frame_start, self.frame_end):
            return {"CANCELLED"}
        photo = avatar.camera
        lens0 = photo.data.lens if photo is not None else 50.0
        dist0 = (photo.matrix_world.translation - scene_io.head_centre(avatar)).length if photo else 1.5
        lens = self.focal_length or lens0
        distance = self.distance or dist0 * lens / lens0
        cam = scene_io.make_turntable(
            context.scene,
            avatar,
            frame_start=self.frame_start,
            frame_end=self.frame_end,
            lens_mm=lens,
            distance_m=distance,
            pitch_deg=self.pitch,
            clockwise=self.clockwise,
        )
        self.report(
            {"INFO"}, f"{cam.name}: {self.frame_end - self.frame_start + 1} frames, {lens:.0f} mm, {distance:.2f} m"
        )
        return {"FINISHED"}


class LIKENESS_OT_dolly_zoom(bpy.types.Operator):
    """Dolly zoom: a camera moving along its axis while the focal length changes so the face keeps its size
    (perspective manipulation)"""

    bl_idname = "likeness.dolly_zoom"
    bl_label = "Dolly Zoom"
    bl_options = {"REGISTER", "UNDO"}

    avatar: AVATAR
    camera: StringProperty(
        name="Camera", options={"SKIP_SAVE"}, description="Camera to start from (empty: the avatar's photo camera)"
    )
    frame_start: IntProperty(name="Start", default=1, min=0)
    frame_end: IntProperty(name="End", default=48, min=1)
    end_focal_length: FloatProperty(
        name="End Focal Length",
        default=24.0,
        min=1.0,
        soft_max=300.0,
        unit="CAMERA",
        description="Lens at the end frame in mm; shorter = closer and wider",
    )
    ease: BoolProperty(name="Ease In/Out", default=True)

    def execute(self, context):
        avatar = require_avatar(self, context, self.avatar)
        if avatar is None:
            return {"CANCELLED"}
        source = bpy.data.objects.get(self.camera) if self.camera else avatar.camera
        if source is None or source.type != "CAMERA":
            self.report({"ERROR"}, f"{self.camera or 'The photo camera'} is not a camera")
            return {"CANCELLED"}
        if not require_frame_range(self, self.frame_start, self.frame_end):
            return {"CANCELLED"}
        try:
            cam = scene_io.make_dolly_zoom(
                context.scene,
                avatar,
                source,
                frame_start=self.frame_start,
                frame_end=self.frame_end,
                end_lens_mm=self.end_focal_length,
                ease=self.ease,
            )
        except ValueError:
            self.report(
                {"ERROR"},
                f"{self.end_focal_length:.0f} mm would put the camera inside the head; use a longer focal length",
            )
            return {"CANCELLED"}
        d = cam["likeness_dolly"]
        self.report({"INFO"}, f"{cam.name}: {d['lens_start']:.0f} mm -> {d['lens_end']:.0f} mm")
        return {"FINISHED"}


class LIKENESS_OT_photo_camera(bpy.types.Operator):
    """Look through the avatar's photo camera again, at the photo's size"""

    bl_idname = "likeness.photo_camera"
    bl_label = "Photo Camera"
    bl_options = {"REGISTER", "UNDO"}

    avatar: AVATAR

    def execute(self, context):
        avatar = require_avatar(self, context, self.avatar)
        if avatar is None:
            return {"CANCELLED"}
        if avatar.camera is None:
            self.report({"ERROR"}, f"{avatar.name} has no photo camera (was it deleted?)")
            return {"CANCELLED"}
        scene_io.use_photo_camera(context, avatar)
        return {"FINISHED"}


CLASSES = (LIKENESS_OT_turntable, LIKENESS_OT_dolly_zoom, LIKENESS_OT_photo_camera)
