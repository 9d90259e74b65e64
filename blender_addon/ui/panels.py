"""The "Likeness" tab in the 3D viewport's sidebar (N panel) and the status bar item."""

from __future__ import annotations

import bpy

from .. import jobs, scene_io
from .common import draw_task, task_text


class _Tab:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Likeness"


class LIKENESS_UL_avatars(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row()
        row.label(text=item.input_name or item.avatar_id, icon="USER")
        row.label(text=f"{item.quality} {item.created[:16].replace('T', ' ')}")


class LIKENESS_PT_build(_Tab, bpy.types.Panel):
    bl_label = "Build"

    def draw(self, context):
        s, layout = context.scene.likeness, self.layout
        layout.row().prop(s, "photo_source", expand=True)
        if s.photo_source == "FILE":
            layout.prop(s, "photo_path", text="")
        else:
            layout.template_ID(s, "photo_image", open="image.open")
        col = layout.column(align=True)
        col.prop(s, "quality")
        col.prop(s, "face_index")
        col.prop(s, "focal_35mm")
        col.prop(s, "uv_layout")
        layout.prop(s, "import_after_build")
        task = jobs.latest("build")
        if task is None or task.finished:
            layout.operator("likeness.build", icon="PLAY").use_panel = True
        draw_task(layout, task, "build")


class LIKENESS_PT_avatars(_Tab, bpy.types.Panel):
    bl_label = "Avatars"

    def draw(self, context):
        wm, layout = context.window_manager.likeness, self.layout
        row = layout.row()
        row.template_list("LIKENESS_UL_avatars", "", wm, "avatars", wm, "avatar_index", rows=3)
        row.operator("likeness.refresh_avatars", text="", icon="FILE_REFRESH")
        row = layout.row(align=True)
        if 0 <= wm.avatar_index < len(wm.avatars):
            row.operator("likeness.import_avatar", icon="IMPORT").avatar_id = wm.avatars[wm.avatar_index].avatar_id
        row.operator("likeness.import_avatar", text="Import Folder...", icon="FILE_FOLDER")
        draw_task(layout, jobs.latest("download"), "download")
        draw_task(layout, jobs.latest("list"), "ALL")


class LIKENESS_PT_camera(_Tab, bpy.types.Panel):
    bl_label = "Camera"

    def draw(self, context):
        layout = self.layout
        avatar = scene_io.find_avatar(context)
        layout.label(text=avatar.name if avatar else "No avatar imported", icon="OUTLINER_COLLECTION")
        col = layout.column(align=True)
        col.enabled = avatar is not None
        col.operator("likeness.photo_camera", icon="CAMERA_DATA")
        col.operator("likeness.turntable", icon="FILE_REFRESH")
        col.operator("likeness.dolly_zoom", icon="VIEW_ZOOM")


class LIKENESS_PT_asset(_Tab, bpy.types.Panel):
    """The artist asset of the active (else last) avatar: asset or scan head, its level of detail."""

    bl_label = "Asset"

    def draw(self, context):
        layout = self.layout
        avatar = scene_io.find_avatar(context)
        coll = scene_io.asset_collection(avatar)
        if coll is None:
            layout.label(text="No asset in this avatar" if avatar else "No avatar imported", icon="INFO")
            return
        shown = scene_io.asset_shown(context.view_layer, coll)
        layout.label(text=coll.name, icon="OUTLINER_COLLECTION")
        row = layout.row(align=True)
        op = row.operator("likeness.show_asset", text="Asset", icon="MESH_MONKEY", depress=shown)
        op.avatar, op.show = avatar.name, True
        op = row.operator("likeness.show_asset", text="Scan Head", icon="MESH_UVSPHERE", depress=not shown)
        op.avatar, op.show = avatar.name, False
        asset = coll.likeness_asset
        col = layout.column()
        col.enabled = len(scene_io.lod_skins(coll)) > 1
        col.row().prop(asset, "lod", expand=True)


class LIKENESS_PT_asset_expression(_Tab, bpy.types.Panel):
    """The asset's shape keys as sliders: level 0's skin's, which drive the other levels' and parts' keys."""

    bl_label = "Expression"
    bl_parent_id = "LIKENESS_PT_asset"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context):
        return bool(scene_io.lod_skins(scene_io.asset_collection(scene_io.find_avatar(context))))

    def draw(self, context):
        skin = scene_io.lod_skins(scene_io.asset_collection(scene_io.find_avatar(context))).get(0)
        keys = skin.data.shape_keys if skin is not None else None
        if keys is None:
            return
        col = self.layout.column(align=True)
        col.label(text="Level 0's skin drives every level and part", icon="DRIVER")
        for kb in list(keys.key_blocks)[1:]:
            col.prop(kb, "value", text=kb.name, slider=True)


class LIKENESS_PT_animation(_Tab, bpy.types.Panel):
    bl_label = "Animation"

    def draw(self, context):
        layout = self.layout
        targets = scene_io.livelink_targets(context)
        layout.label(text=targets.label if targets else "No avatar imported", icon="SHAPEKEY_DATA")
        col = layout.column(align=True)
        col.enabled = targets is not None
        col.operator("likeness.import_livelink_csv", text="Import Live Link CSV...", icon="IMPORT")


class LIKENESS_PT_neural_render(_Tab, bpy.types.Panel):
    bl_label = "Neural Render"

    def draw(self, context):
        s, layout = context.scene.likeness, self.layout
        layout.row().prop(s, "render_mode", expand=True)
        layout.prop(s, "render_as_background")
        layout.prop(s, "render_rig")
        avatar = scene_io.find_avatar(context)
        if avatar is not None:
            try:
                source, _ = scene_io.expression_source(avatar, s.render_rig)
            except ValueError:
                layout.label(text="This avatar has no asset skin", icon="ERROR")
            else:
                layout.label(text=f"Expression: {source.name if source else 'as photographed'}", icon="SHAPEKEY_DATA")
        task = jobs.latest("render")
        if task is None or task.finished:
            layout.operator("likeness.neural_render", icon="RENDER_STILL").use_panel = True
        draw_task(layout, task, "render")


class LIKENESS_PT_engine(_Tab, bpy.types.Panel):
    bl_label = "Engine"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        status = context.window_manager.likeness.engine_status
        if status:
            layout.label(text=status, icon="CHECKMARK" if status.startswith("Connected") else "INFO")
        row = layout.row(align=True)
        row.operator("likeness.test_connection", icon="LINKED")
        row.operator("likeness.stop_engine", text="", icon="X")


def draw_status_bar(self, context):
    """Appended to the status bar: the running tasks with stage, progress and ETA."""
    for task in jobs.active():
        self.layout.separator()
        self.layout.progress(factor=task.progress, type="RING", text=f"Likeness {task.label}: {task_text(task)}")


CLASSES = (
    LIKENESS_UL_avatars,
    LIKENESS_PT_build,
    LIKENESS_PT_avatars,
    LIKENESS_PT_camera,
    LIKENESS_PT_asset,
    LIKENESS_PT_asset_expression,
    LIKENESS_PT_animation,
    LIKENESS_PT_neural_render,
    LIKENESS_PT_engine,
)
