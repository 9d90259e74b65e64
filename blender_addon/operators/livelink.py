"""Import a Live Link Face CSV take as keyframes: the avatar's ARKit shape keys and its head and eye bones."""

from __future__ import annotations

import math
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from .. import scene_io
from ..livelink import TakeInvalid, read_csv
from .common import AVATAR

RATE_ITEMS = (
    ("SCENE", "Scene Rate", "Map the take's times onto the scene's frame rate (keys may fall between frames)"),
    ("TAKE", "Take Rate", "Set the scene's frame rate to the take's, so each row of the app lands on a frame"),
)
UNIT_ITEMS = (
    ("RADIANS", "Radians", "Head and eye rotations in radians (recent Live Link Face versions)"),
    ("DEGREES", "Degrees", "Head and eye rotations in degrees"),
)


def set_scene_rate(scene: bpy.types.Scene, fps: float) -> None:
    """``fps`` as Blender writes rates: a whole ``fps`` and ``fps_base`` (59.94 -> 60 / 1.001)."""
    whole = max(1, round(fps))
    scene.render.fps, scene.render.fps_base = whole, whole / fps


class LIKENESS_OT_import_livelink_csv(bpy.types.Operator, ImportHelper):
    """Key a Live Link Face CSV take onto the avatar: its ARKit shape keys, and the head and eye bones of its
    asset armature"""

    bl_idname = "likeness.import_livelink_csv"
    bl_label = "Import Live Link CSV"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".csv"
    filter_glob: StringProperty(default="*.csv", options={"HIDDEN"})
    avatar: AVATAR
    frame_start: IntProperty(
        name="Start Frame",
        options={"SKIP_SAVE"},
        description="Scene frame of the take's first row (not set: the current frame)",
    )
    rate: EnumProperty(name="Frame Rate", items=RATE_ITEMS, default="SCENE")
    take_fps: FloatProperty(
        name="Timecode Rate",
        default=0.0,
        min=0.0,
        soft_max=120.0,
        description="Frame rate of the timecodes' frame numbers (0 = inferred from them; the app records at 60)",
    )
    step: IntProperty(
        name="Key Every", default=1, min=1, soft_max=10, description="Key every n-th row (and the last); 1 = every row"
    )
    head_rotation: BoolProperty(
        name="Head Rotation", default=True, description="Key the asset armature's head bone from HeadYaw/Pitch/Roll"
    )
    eye_rotation: BoolProperty(
        name="Eye Rotation",
        default=True,
        description="Key the asset armature's eye_L / eye_R bones from Left/RightEyeYaw/Pitch/Roll",
    )
    rotation_units: EnumProperty(name="Rotation Units", items=UNIT_ITEMS, default="RADIANS")

    def invoke(self, context, event):
        if not self.properties.is_property_set("frame_start"):
            self.frame_start = context.scene.frame_current
        return ImportHelper.invoke(self, context, event)

    def execute(self, context):
        scene = context.scene
        if not self.filepath:
            self.report({"ERROR"}, "Choose a Live Link Face CSV file")
            return {"CANCELLED"}
        try:
            take = read_csv(self.filepath, self.take_fps or None)
        except TakeInvalid as exc:
            self.report({"ERROR"}, f"Live Link CSV: {exc}")
            return {"CANCELLED"}
        targets = scene_io.livelink_targets(context, self.avatar)
        if targets is None or not scene_io.target_shapes(targets) & set(take.shapes):
            where = targets.label if targets else "this scene"
            self.report({"ERROR"}, f"No mesh in {where} has shape keys named after the take's ARKit shapes")
            return {"CANCELLED"}
        # the input is good: from here on the scene changes
        start = self.frame_start if self.properties.is_property_set("frame_start") else scene.frame_current
        if self.rate == "TAKE":
            set_scene_rate(scene, take.fps)
        scene_fps = scene.render.fps / scene.render.fps_base
        keyed = scene_io.key_take(
            scene,
            targets,
            take,
            frame_start=start,
            scene_fps=scene_fps,
            step=self.step,
            head=self.head_rotation,
            eyes=self.eye_rotation,
            angle_scale=math.pi / 180.0 if self.rotation_units == "DEGREES" else 1.0,
        )
        self.report({"INFO"}, _summary(Path(self.filepath).name, take, keyed, scene_fps, self._bones_note(targets)))
        return {"FINISHED"}

    def _bones_note(self, targets) -> str:
        if not (self.head_rotation or self.eye_rotation) or targets.armature is not None:
            return ""
        return " (no armature with a head bone: rotations not keyed)"


def _summary(name: str, take, keyed, scene_fps: float, note: str) -> str:
    frames = keyed.frames
    bones = f"{keyed.bone_curves} curves on {', '.join(keyed.bones)}" if keyed.bones else "none"
    if keyed.muted_looks > 0:
        note += f"; the eyeballs' {keyed.muted_looks} look keys muted (the eye bones turn them)"
    elif keyed.muted_looks < 0:
        note += f"; the eyeballs' {-keyed.muted_looks} look keys unmuted (no eye bones keyed)"
    return (
        f"{name}: {len(frames)} of {take.rows} rows keyed on frames {frames[0]:g}-{frames[-1]:g} "
        f"(take {take.fps:g} fps by {take.timed_by} on a {scene_fps:g} fps scene); "
        f"{keyed.shape_curves} shape-key curves on {keyed.meshes} meshes, bones: {bones}{note}; {keyed.keys} keys"
    )


CLASSES = (LIKENESS_OT_import_livelink_csv,)
