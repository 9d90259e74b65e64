"""The engine's avatar list, and importing an avatar (from a bundle folder, or by id from the engine)."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
from bpy.props import BoolProperty, StringProperty

from .. import engine_link, jobs, scene_io
from ..bundle import IMPORT_KEYS, BundleInvalid, read_bundle
from ..preferences import download_dir, engine_settings
from .common import WAIT, finish, print_error


class LIKENESS_OT_refresh_avatars(bpy.types.Operator):
    """Fetch the list of avatars the engine has built"""

    bl_idname = "likeness.refresh_avatars"
    bl_label = "Refresh Avatars"
    bl_options = {"REGISTER"}

    wait: WAIT

    def execute(self, context):
        settings = engine_settings(context)

        def work(task):
            return engine_link.client_for(settings).avatars()

        def done(task):
            items = bpy.context.window_manager.likeness.avatars
            items.clear()
            for a in sorted(task.result, key=lambda a: a.created, reverse=True):
                item = items.add()
                item.name = a.input_name or a.id
                item.avatar_id, item.input_name, item.quality, item.created = a.id, a.input_name, a.quality, a.created

        task = jobs.submit("list", "List avatars", work, done, print_error)
        return finish(self, task, self.wait, "Fetching the engine's avatars...")


def _cached_bundle(root: Path, avatar_id: str) -> Path | None:
    """A complete earlier download of ``avatar_id`` under ``root`` (downloads are atomic: manifest = complete)."""
    path = root / avatar_id
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return path if isinstance(manifest, dict) and manifest.get("files") else None


class LIKENESS_OT_import_avatar(bpy.types.Operator):
    """Import an avatar: head mesh with its texture, the photo's camera (photo as background) and the depth and
    normal maps, in a new collection"""

    bl_idname = "likeness.import_avatar"
    bl_label = "Import Avatar"
    bl_options = {"REGISTER", "UNDO"}

    directory: StringProperty(
        name="Bundle Folder",
        subtype="DIR_PATH",
        options={"SKIP_SAVE"},
        description="An avatar bundle folder (holds manifest.json)",
    )
    avatar_id: StringProperty(
        name="Avatar ID",
        options={"SKIP_SAVE"},
        description="An avatar the engine built (downloaded first when no folder is given)",
    )
    engine_url: StringProperty(name="Engine URL", options={"SKIP_SAVE", "HIDDEN"})
    photo_path: StringProperty(
        name="Photo",
        subtype="FILE_PATH",
        options={"SKIP_SAVE"},
        description="The whole photo for the camera background (default: the bundle's photo)",
    )
    photo_image: StringProperty(
        name="Photo Image",
        options={"SKIP_SAVE"},
        description="Name of an image datablock to use as the camera background",
    )
    set_render_size: BoolProperty(
        name="Set Render Size",
        default=True,
        description="Set the scene's resolution to the photo's, so the camera frame matches the photo",
    )
    wait: WAIT

    def invoke(self, context, event):
        if self.directory or self.avatar_id:
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        if not self.directory and self.avatar_id:
            cached = _cached_bundle(Path(download_dir(context)), self.avatar_id)
            if cached is None:
                return self._download_then_import(context)
            self.directory = str(cached)
        if not self.directory:
            self.report({"ERROR"}, "Choose a bundle folder or an avatar")
            return {"CANCELLED"}
        try:
            bundle = read_bundle(bpy.path.abspath(self.directory))
        except BundleInvalid as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        avatar = scene_io.import_bundle(
            context,
            bundle,
            photo_path=bpy.path.abspath(self.photo_path) if self.photo_path else "",
            photo_image=bpy.data.images.get(self.photo_image) if self.photo_image else None,
            avatar_id=self.avatar_id,
            engine_url=self.engine_url,
            set_render_size=self.set_render_size,
        )
        for obj in context.view_layer.objects:
            obj.select_set(False)
        if avatar.head is not None and avatar.head.name in context.view_layer.objects:
            avatar.head.select_set(True)
            context.view_layer.objects.active = avatar.head
        self.report({"INFO"}, f"Imported {avatar.name} from {bundle.path}")
        for warning in [*bundle.warnings, *avatar.warnings]:
            self.report({"WARNING"}, warning)
        return {"FINISHED"}

    def _download_then_import(self, context):
        settings, root = engine_settings(context), Path(download_dir(context))
        avatar_id, photo_path, photo_image = self.avatar_id, self.photo_path, self.photo_image
        set_size = self.set_render_size

        def work(task):
            client = engine_link.client_for(settings)
            task.report("downloading", 0.0)
            path = client.download_bundle(avatar_id, root / avatar_id, IMPORT_KEYS, should_cancel=task.cancelled)
            return {"bundle_dir": str(path), "engine_url": client.base_url}

        def done(task):
            bpy.ops.likeness.import_avatar(
                "EXEC_DEFAULT",
                True,
                directory=task.result["bundle_dir"],
                avatar_id=avatar_id,
                engine_url=task.result["engine_url"],
                photo_path=photo_path,
                photo_image=photo_image,
                set_render_size=set_size,
            )

        task = jobs.submit("download", f"Download {avatar_id}", work, done, print_error)
        return finish(self, task, self.wait, f"Downloading avatar {avatar_id}...")


CLASSES = (LIKENESS_OT_refresh_avatars, LIKENESS_OT_import_avatar)
