"""The artist asset in the scene: show it or the scan head (its level of detail is a property,
``Collection.likeness_asset.lod``)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty

from .. import scene_io
from .common import AVATAR, require_avatar


class LIKENESS_OT_show_asset(bpy.types.Operator):
    """Show the avatar's artist asset (skin, eyes, teeth, tongue, armature) and hide the scan head, or the other
    way round"""

    bl_idname = "likeness.show_asset"
    bl_label = "Show Asset"
    bl_options = {"REGISTER", "UNDO"}

    avatar: AVATAR
    show: BoolProperty(name="Show Asset", default=True, description="Off: show the scan head instead")

    def execute(self, context):
        avatar = require_avatar(self, context, self.avatar)
        if avatar is None:
            return {"CANCELLED"}
        try:
            coll = scene_io.show_asset(context.view_layer, avatar, self.show)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        shown = f"{coll.name}, level {scene_io.shown_lod(coll)}" if self.show else f"{avatar.name}'s scan head"
        self.report({"INFO"}, f"Showing {shown}")
        return {"FINISHED"}


CLASSES = (LIKENESS_OT_show_asset,)
