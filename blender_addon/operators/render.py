"""Neural render: the engine renders the radiance field from the active camera (current frame or frame range)."""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from .. import engine_link, jobs, scene_io
from ..client import Cancelled, NotFound
from ..preferences import engine_settings
from ..properties import RENDER_MODE_ITEMS, RENDER_RIG_ITEMS
from .common import AVATAR, WAIT, finish, idle, print_error, require_avatar

UPLOADED_ID = "uploaded_avatar_id"
"""Key in ``collection["likeness"]``: the id an engine gave the bundle folder when the add-on uploaded it."""


def _find_avatar_id(client, info: dict) -> str | None:
    """The engine's id for an avatar imported from a folder: matched on its photo name and creation time."""
    for a in client.avatars():
        if a.input_name == info.get("input_name") and a.created == info.get("created"):
            return a.id
    return None


def engine_avatar_id(client, info: dict, task) -> tuple[str, bool]:
    """(id, uploaded): the engine's id for the avatar -- the one it built, the one an earlier upload got, or one it
    lists with the same photo name and creation time; else the avatar's bundle folder is uploaded (its field and
    what expressions need, ``POST /v1/avatars``) and the engine's new id returned. Worker thread; no bpy."""
    for candidate in (info.get("avatar_id"), info.get(UPLOADED_ID)):
        if candidate and client.has_avatar(candidate):
            return candidate, False
    found = _find_avatar_id(client, info)
    if found:
        return found, False
    folder = info.get("bundle_dir") or ""
    if not folder or not Path(folder).is_dir():
        raise NotFound(
            "the engine does not know this avatar and its bundle folder is gone",
            "import the avatar again from its bundle folder, or connect to the engine that built it",
        )
    task.report("sending the avatar's field to the engine", 0.0)
    return client.upload_bundle(folder), True


def output_folder(context, output_dir: str) -> Path:
    if output_dir:
        return Path(bpy.path.abspath(output_dir))
    if bpy.data.filepath:
        return Path(bpy.path.abspath("//likeness_renders"))
    return Path(tempfile.gettempdir()) / "likeness_renders"


class LIKENESS_OT_neural_render(bpy.types.Operator):
    """Render the avatar's radiance field through the engine from the scene camera (current frame or the whole
    frame range); the result arrives as an image or image sequence"""

    bl_idname = "likeness.neural_render"
    bl_label = "Neural Render"
    bl_options = {"REGISTER"}

    avatar: AVATAR
    mode: EnumProperty(name="Frames", items=RENDER_MODE_ITEMS, default="CURRENT")
    keys_from: EnumProperty(
        name="Keys From", items=RENDER_RIG_ITEMS, default="AUTO", description="Whose shape keys set the expression"
    )
    camera: StringProperty(name="Camera", options={"SKIP_SAVE"}, description="Camera (empty: the scene camera)")
    as_background: BoolProperty(
        name="As Camera Background", default=True, description="Show the result behind that camera's view"
    )
    output_dir: StringProperty(
        name="Output Folder",
        subtype="DIR_PATH",
        options={"SKIP_SAVE"},
        description="Where the PNGs go (empty: //likeness_renders, or a temp folder)",
    )
    use_panel: BoolProperty(name="Use Panel Settings", default=False, options={"SKIP_SAVE", "HIDDEN"})
    wait: WAIT

    @classmethod
    def poll(cls, context):
        return idle(cls, "render", "A neural render is already running")

    def execute(self, context):
        scene = context.scene
        if self.use_panel:
            self.mode, self.as_background = scene.likeness.render_mode, scene.likeness.render_as_background
            self.keys_from = scene.likeness.render_rig
        avatar = require_avatar(self, context, self.avatar)
        if avatar is None:
            return {"CANCELLED"}
        cam = bpy.data.objects.get(self.camera) if self.camera else scene.camera
        if cam is None or cam.type != "CAMERA":
            self.report({"ERROR"}, "No camera to render from: set the scene camera")
            return {"CANCELLED"}
        frames = (
            [scene.frame_current] if self.mode == "CURRENT" else list(range(scene.frame_start, scene.frame_end + 1))
        )
        try:
            requests = scene_io.frame_requests(scene, cam, avatar, frames, self.keys_from)
        except ValueError as exc:
            self.report({"ERROR"}, f"{exc}: set Keys From to Scan Head or Auto")
            return {"CANCELLED"}
        out_dir = output_folder(context, self.output_dir)
        prefix = "neural_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", cam.name)
        info, settings, coll_name = avatar.info, engine_settings(context), avatar.collection.name
        cam_name, as_background, single = cam.name, self.as_background, self.mode == "CURRENT"

        def work(task):
            client = engine_link.client_for(settings)
            avatar_id, uploaded = engine_avatar_id(client, info, task)
            out_dir.mkdir(parents=True, exist_ok=True)
            paths, t0 = [], time.monotonic()
            for i, (frame, cam2world, intrinsics, expression, rig, pose) in enumerate(requests):
                if task.cancelled():
                    raise Cancelled("the neural render was cancelled")
                png = client.render(avatar_id, cam2world, intrinsics, expression, "png", rig=rig, pose=pose)
                path = out_dir / f"{prefix}_{frame:04d}.png"
                tmp = path.with_suffix(".part")
                tmp.write_bytes(png)
                os.replace(tmp, path)
                paths.append(str(path))
                per_frame = (time.monotonic() - t0) / (i + 1)
                task.report(
                    f"frame {frame} ({i + 1}/{len(requests)})",
                    (i + 1) / len(requests),
                    per_frame * (len(requests) - i - 1),
                )
            return {"paths": paths, "avatar_id": avatar_id, "uploaded": uploaded}

        def done(task):
            paths = task.result["paths"]
            coll = bpy.data.collections.get(coll_name)
            if task.result["uploaded"] and coll is not None and scene_io.PROP in coll:
                coll[scene_io.PROP][UPLOADED_ID] = task.result["avatar_id"]  # the next render skips the upload
            name = f"Neural {cam_name}" if single else f"Neural {cam_name} sequence"
            img = scene_io.load_render(Path(paths[0]), name, sequence_frames=0 if single else len(paths))
            target = bpy.data.objects.get(cam_name)
            if as_background and target is not None:
                scene_io.set_camera_background(
                    target, img, frame_start=frames[0], frames=0 if single else len(paths), replace_role="neural_render"
                )
                if not single:
                    bg = target.data.background_images[-1]
                    bg.image_user.frame_offset = frames[0] - 1  # file numbers are scene frame numbers

        task = jobs.submit(
            "render", f"Neural render ({len(frames)} frame{'s' if len(frames) > 1 else ''})", work, done, print_error
        )
        return finish(self, task, self.wait, f"Rendering {len(frames)} frame(s) with the engine...")


CLASSES = (LIKENESS_OT_neural_render,)
