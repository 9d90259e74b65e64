"""Helpers shared by the operators: the ``wait`` and ``avatar`` arguments, one running task of a kind at a time,
argument checks that report, turning a finished task into a report."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, StringProperty

from .. import jobs, scene_io

WAIT = BoolProperty(
    name="Wait",
    default=False,
    options={"SKIP_SAVE", "HIDDEN"},
    description="Block until the work is done (scripts and background mode; the UI never sets this)",
)
AVATAR = StringProperty(
    name="Avatar",
    default="",
    options={"SKIP_SAVE"},
    description="Collection name of the imported avatar (empty: the active object's avatar, else the last one)",
)


def finish(op: bpy.types.Operator, task: jobs.Task, wait: bool, started: str) -> set[str]:
    """The operator's return value for a submitted task: report at once, or wait and report the outcome."""
    if not wait:
        op.report({"INFO"}, started)
        return {"FINISHED"}
    jobs.wait(task)
    if task.state == "succeeded":
        return {"FINISHED"}
    op.report({"WARNING"} if task.state == "cancelled" else {"ERROR"}, f"{task.label}: {task.error}")
    return {"CANCELLED"}


def idle(cls, kind: str, message: str) -> bool:
    """``poll()`` of an operator that runs one task of ``kind`` at a time: False, with ``message`` as the reason
    Blender shows, while one runs."""
    if jobs.active(kind):
        cls.poll_message_set(message)
        return False
    return True


def require_frame_range(op: bpy.types.Operator, frame_start: int, frame_end: int) -> bool:
    if frame_end <= frame_start:
        op.report({"ERROR"}, "The end frame must come after the start frame")
        return False
    return True


def require_avatar(op: bpy.types.Operator, context, name: str) -> scene_io.AvatarScene | None:
    avatar = scene_io.find_avatar(context, name)
    if avatar is None:
        op.report(
            {"ERROR"},
            f"No Likeness avatar named {name!r} in this scene"
            if name
            else "No Likeness avatar in this scene: import one first",
        )
    return avatar


def print_error(task: jobs.Task) -> None:
    """on_error for UI tasks: the panel shows ``task.error``; the console keeps a line too."""
    print(f"Likeness: {task.label} {task.state}: {task.error}")
