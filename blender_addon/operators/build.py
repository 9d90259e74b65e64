"""Build an avatar from a photo through the engine, without blocking Blender; cancel a running task."""

from __future__ import annotations

import os
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from .. import engine_link, jobs
from ..bundle import IMPORT_KEYS
from ..client import BuildOptions, Cancelled
from ..preferences import download_dir, engine_settings
from ..properties import QUALITY_ITEMS, UV_LAYOUT_ITEMS
from .common import WAIT, finish, idle, print_error


def photo_bytes(context, filepath: str, image_name: str) -> tuple[bytes, str, str]:
    """(bytes, file name, path on disk or '') of the photo given by path or by image datablock name."""
    if image_name:
        img = bpy.data.images.get(image_name)
        if img is None:
            raise ValueError(f"no image named {image_name!r} in this file")
        if img.packed_file is not None:
            name = os.path.basename(img.filepath) or f"{img.name}.png"
            return bytes(img.packed_file.data), name, ""
        filepath = img.filepath_from_user()
        if not filepath:
            raise ValueError(f"image {image_name!r} is neither packed nor saved to a file")
    if not filepath:
        raise ValueError("no photo chosen")
    path = Path(bpy.path.abspath(filepath))
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    return path.read_bytes(), path.name, str(path)


class LIKENESS_OT_build(bpy.types.Operator):
    """Build an avatar from a portrait photo with the Likeness engine (runs in the background)"""

    bl_idname = "likeness.build"
    bl_label = "Build Avatar"
    bl_options = {"REGISTER"}

    filepath: StringProperty(
        name="Photo", subtype="FILE_PATH", options={"SKIP_SAVE"}, description="Photo file (empty: the panel's photo)"
    )
    image: StringProperty(
        name="Image", options={"SKIP_SAVE"}, description="Name of an image datablock to build from instead of a file"
    )
    quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="standard")
    face_index: IntProperty(name="Face", default=0, min=0, description="Which face (0 = the largest)")
    focal_35mm: FloatProperty(
        name="Focal (35 mm)", default=0.0, min=0.0, description="35 mm-equivalent focal length; 0 = EXIF or 50 mm"
    )
    uv_layout: EnumProperty(name="Asset UVs", items=UV_LAYOUT_ITEMS, default="shared")
    import_after: BoolProperty(name="Import When Done", default=True)
    use_panel: BoolProperty(
        name="Use Panel Settings",
        default=False,
        options={"SKIP_SAVE", "HIDDEN"},
        description="Take photo, quality, face, focal and asset UVs from the panel (Scene.likeness)",
    )
    wait: WAIT

    @classmethod
    def poll(cls, context):
        return idle(cls, "build", "A build is already running")

    def execute(self, context):
        if self.use_panel:
            s = context.scene.likeness
            self.quality, self.face_index, self.focal_35mm = s.quality, s.face_index, s.focal_35mm
            self.uv_layout = s.uv_layout
            self.import_after = s.import_after_build
            if s.photo_source == "IMAGE":
                self.image = s.photo_image.name if s.photo_image else ""
                if not self.image:
                    self.report({"ERROR"}, "Pick an image to build from")
                    return {"CANCELLED"}
            else:
                self.filepath = s.photo_path
        try:
            data, name, disk_path = photo_bytes(context, self.filepath, self.image)
            options = BuildOptions(self.quality, self.face_index, self.focal_35mm, self.uv_layout)
        except (ValueError, OSError) as exc:
            self.report({"ERROR"}, f"Cannot build: {exc}")
            return {"CANCELLED"}
        settings, dest_root = engine_settings(context), download_dir(context)
        image_name, import_after = self.image, self.import_after

        def work(task):
            task.report("connecting", 0.0)
            client = engine_link.client_for(settings)
            if task.cancelled():
                raise Cancelled("the build was cancelled")
            task.report("uploading", 0.0)
            job = client.submit_build(data, name, options)
            job = client.wait(
                job.id,
                on_update=lambda j: task.report(j.stage or j.state, j.progress, j.eta_s),
                should_cancel=task.cancelled,
            )
            task.report("downloading", 1.0)
            path = client.download_bundle(
                job.avatar_id, Path(dest_root) / job.avatar_id, IMPORT_KEYS, should_cancel=task.cancelled
            )
            return {
                "avatar_id": job.avatar_id,
                "bundle_dir": str(path),
                "engine_url": client.base_url,
                "warnings": list(job.warnings),  # e.g. several faces in the photo: shown under the panel
            }

        def done(task):
            r = task.result
            bpy.ops.likeness.refresh_avatars("EXEC_DEFAULT")
            if import_after:
                bpy.ops.likeness.import_avatar(
                    "EXEC_DEFAULT",
                    True,
                    directory=r["bundle_dir"],
                    avatar_id=r["avatar_id"],
                    engine_url=r["engine_url"],
                    photo_path=disk_path,
                    photo_image=image_name,
                )

        task = jobs.submit("build", f"Build {name}", work, done, print_error)
        return finish(self, task, self.wait, f"Building an avatar from {name} ({self.quality})...")


class LIKENESS_OT_cancel(bpy.types.Operator):
    """Cancel running Likeness work (a build, a download, a neural render)"""

    bl_idname = "likeness.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    kind: EnumProperty(
        name="What",
        items=(
            ("ALL", "All", ""),
            ("build", "Build", ""),
            ("render", "Neural Render", ""),
            ("download", "Download", ""),
        ),
        default="ALL",
    )

    def execute(self, context):
        tasks = jobs.active(None if self.kind == "ALL" else self.kind)
        for t in tasks:
            t.cancel()
        self.report({"INFO"}, f"Cancelling {len(tasks)} task(s)" if tasks else "Nothing is running")
        return {"FINISHED"}


CLASSES = (LIKENESS_OT_build, LIKENESS_OT_cancel)
