"""Key a Live Link Face take onto an avatar: the ARKit shape-key values of every mesh that has them, and the asset
armature's ``head`` / ``eye_L`` / ``eye_R`` rotations. Main thread only; the operator checks its input first, so
nothing here runs on a take or a target it would refuse.

Keys go in one action per datablock (each mesh's shape-key datablock, the armature object), an existing action
reused. On every F-curve written, the keys inside the take's frame range are replaced and those outside are
kept. New keys are linear: one per keyed row, at ``frame_start + t_s * scene_fps`` (fractional frames where the
rates differ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import bpy
from mathutils import Quaternion

from ..arkit import ARKIT_52, canonical_name
from ..livelink import Take, rotation_quaternion
from .common import ROLE, AvatarScene, find_avatar
from .lod import driven_paths

ARKIT_NAMES = frozenset(ARKIT_52)
BONE_COLUMNS = {
    "head": ("HeadYaw", "HeadPitch", "HeadRoll"),
    "eye_L": ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll"),  # Live Link's "Left" is the subject's left, as eye_L
    "eye_R": ("RightEyeYaw", "RightEyePitch", "RightEyeRoll"),
}
_LINEAR = 1  # Keyframe.interpolation "LINEAR" as foreach_set wants it
_EPS_FRAMES = 1e-4


@dataclass
class LiveLinkTargets:
    """What a take is keyed onto: meshes with ARKit shape keys and the armature with the head/eye bones."""

    label: str
    meshes: list[bpy.types.Object]
    armature: bpy.types.Object | None = None


@dataclass
class KeyedTake:
    """What :func:`key_take` wrote: the scene frames of the keyed rows, and counts for the report."""

    frames: list[float]
    meshes: int = 0
    shape_curves: int = 0
    bone_curves: int = 0
    keys: int = 0
    bones: list[str] = field(default_factory=list)
    muted_looks: int = 0
    """Look keys of the asset's eyeballs muted because the take's eye columns keyed the eye bones (or, negative,
    unmuted again by a take keyed without them): see :func:`gaze_by_bones`."""


def arkit_blocks(obj: bpy.types.Object) -> list[bpy.types.ShapeKey]:
    """The shape keys of ``obj`` named after an ARKit shape (any spelling) that can be set or keyed: not those with
    a driver on their value (an asset LOD's skin follows level 0's, scene_io/lod.py; keys on them would be
    overridden by the driver). [] for anything else."""
    keys = obj.data.shape_keys if obj.type == "MESH" else None
    if not keys:
        return []
    driven = driven_paths(keys)
    return [
        kb
        for kb in keys.key_blocks
        if canonical_name(kb.name) in ARKIT_NAMES and kb.path_from_id("value") not in driven
    ]


def set_expression(targets: LiveLinkTargets, weights: dict[str, float]) -> int:
    """Set the ARKit shape keys of every target mesh to ``weights`` ({shape: 0..1}, any spelling; shapes not named
    are left as they are): the scan head and the asset's level-0 skin, eyes, teeth and tongue; the asset's finer
    skins follow level 0's through their drivers. Returns the number of keys set."""
    wanted = {canonical_name(k): min(1.0, max(0.0, float(v))) for k, v in weights.items()}
    n = 0
    for obj in targets.meshes:
        for kb in arkit_blocks(obj):
            value = wanted.get(canonical_name(kb.name))
            if value is not None:
                kb.value = value
                n += 1
    return n


def target_shapes(targets: LiveLinkTargets) -> set[str]:
    """The ARKit shapes (Apple spelling) some target mesh has a shape key for."""
    return {canonical_name(kb.name) for o in targets.meshes for kb in arkit_blocks(o)}


def livelink_targets(context, avatar_name: str = "") -> LiveLinkTargets | None:
    """The avatar named ``avatar_name``, or holding the active object: every mesh in its collection (the head,
    and the asset's skin, eyes, teeth and tongue in ``{name} asset``) with ARKit shape keys that are not driven
    (the asset's level 1 and 2 skins follow level 0's), and its armature.
    Else an active mesh outside any avatar that has ARKit shape keys (its parent armature, if any), else the last
    avatar imported. None when there is nothing to key."""
    avatar = find_avatar(context, avatar_name)
    active = getattr(context, "active_object", None)
    if not avatar_name and active is not None and arkit_blocks(active):
        if avatar is None or active.name not in avatar.collection.all_objects:
            parent = active.parent if active.parent is not None and active.parent.type == "ARMATURE" else None
            return LiveLinkTargets(active.name, [active], parent)
    if avatar is None:
        return None
    return _avatar_targets(avatar)


def _avatar_targets(avatar: AvatarScene) -> LiveLinkTargets:
    objs = sorted(avatar.collection.all_objects, key=lambda o: o.name)
    meshes = [o for o in objs if arkit_blocks(o)]
    armature = next((o for o in objs if o.type == "ARMATURE" and "head" in o.pose.bones), None)
    return LiveLinkTargets(avatar.name, meshes, armature)


def keyed_rows(take: Take, frame_start: float, scene_fps: float, step: int = 1) -> tuple[list[int], list[float]]:
    """The rows to key (every ``step``-th and the last) and their scene frames; a row landing on the frame of the
    row before it is skipped."""
    rows = list(range(0, take.rows, max(1, step)))
    if rows[-1] != take.rows - 1:
        rows.append(take.rows - 1)
    kept, frames = [], []
    for i in rows:
        f = frame_start + take.times_s[i] * scene_fps
        if frames and f <= frames[-1] + 1e-6:
            continue
        kept.append(i)
        frames.append(f)
    return kept, frames


def key_take(
    scene: bpy.types.Scene,
    targets: LiveLinkTargets,
    take: Take,
    *,
    frame_start: float,
    scene_fps: float,
    step: int = 1,
    head: bool = True,
    eyes: bool = True,
    angle_scale: float = 1.0,
) -> KeyedTake:
    """Key ``take`` onto ``targets`` from ``frame_start`` at ``scene_fps`` scene frames per take second; head and
    eye rotations (``angle_scale`` turns the file's unit into radians) when asked and the armature has the bones.
    The scene's end frame is moved to cover the take when it ends earlier."""
    rows, frames = keyed_rows(take, frame_start, scene_fps, step)
    out = KeyedTake(frames)
    lo, hi = frames[0], frames[-1]
    for obj in targets.meshes:
        key = obj.data.shape_keys
        written = 0
        for kb in arkit_blocks(obj):
            values = take.shapes.get(canonical_name(kb.name))
            if values is None:
                continue
            action = _ensure_action(key, f"{obj.name} Live Link")
            fc = _fcurve(action, key, kb.path_from_id("value"), 0, "")
            out.keys += _replace_keys(fc, frames, [values[i] for i in rows], lo, hi)
            written += 1
        out.shape_curves += written
        out.meshes += bool(written)
    arm = targets.armature
    for bone, columns in BONE_COLUMNS.items():
        wanted = head if bone == "head" else eyes
        if not wanted or arm is None or bone not in arm.pose.bones or not any(c in take.rotations for c in columns):
            continue
        angles = [[take.rotations.get(c, (0.0,) * take.rows)[i] * angle_scale for c in columns] for i in rows]
        n = _key_bone(arm, bone, angles, frames, lo, hi)
        out.bone_curves += n
        out.keys += n * len(frames)
        out.bones.append(bone)
    out.muted_looks = gaze_by_bones(targets, [b for b in out.bones if b.startswith("eye_")])
    end = math.ceil(hi - _EPS_FRAMES)
    if scene.frame_end < end:
        scene.frame_end = end
    return out


MUTED_PROP = "likeness_looks_muted"
"""An eyeball object's ID property naming the look keys :func:`gaze_by_bones` muted (so it can unmute them)."""


def gaze_by_bones(targets: LiveLinkTargets, eye_bones: list[str]) -> int:
    """One source for each eyeball's gaze. ARKit's eyeLook coefficients describe the lids "consistent with" a
    gaze and the take's eye columns the eyeball's turn, while the asset's look keys turn its eyeballs too: so an
    eyeball whose bone the take keyed gets its look keys muted (the skin's stay: the lids follow them), and one
    whose bone it did not key gets back the look keys an earlier take muted. Returns the number muted (negative:
    unmuted)."""
    n = 0
    arm = targets.armature
    near = {o for c in arm.users_collection for o in c.all_objects} if arm is not None else set()
    for obj in sorted(near, key=lambda o: o.name):
        role = str(obj.get(ROLE, ""))
        if obj.type != "MESH" or role not in ("asset_eye_L", "asset_eye_R") or obj.data.shape_keys is None:
            continue
        bone = role[len("asset_") :]
        blocks = {kb.name: kb for kb in obj.data.shape_keys.key_blocks}
        if bone in eye_bones:
            looks = [kb for kb in blocks.values() if canonical_name(kb.name).startswith("eyeLook") and not kb.mute]
            for kb in looks:
                kb.mute = True
            obj[MUTED_PROP] = sorted({*obj.get(MUTED_PROP, []), *(kb.name for kb in looks)})
            n += len(looks)
        elif MUTED_PROP in obj:
            for name in obj[MUTED_PROP]:
                if name in blocks and blocks[name].mute:
                    blocks[name].mute = False
                    n -= 1
            del obj[MUTED_PROP]
    return n


def _key_bone(arm: bpy.types.Object, bone: str, angles: list[list[float]], frames, lo: float, hi: float) -> int:
    """Key one pose bone's rotation (in its own rotation mode) from (yaw, pitch, roll) radians per frame, mapped to
    armature axes by :func:`blender_addon.livelink.rotation_quaternion` and into the bone's rest frame. Returns
    the number of channels keyed."""
    pb = arm.pose.bones[bone]
    rest = arm.data.bones[bone].matrix_local.to_quaternion()
    rest_inv = rest.inverted()
    mode = pb.rotation_mode
    channels: list[list[float]] = []
    prev_q, prev_e = None, None
    for yaw, pitch, roll in angles:
        q = rest_inv @ Quaternion(rotation_quaternion(yaw, pitch, roll)) @ rest
        if mode == "QUATERNION":
            if prev_q is not None and q.dot(prev_q) < 0.0:
                q.negate()  # the same rotation; keeps the curves continuous
            prev_q = q
            channels.append(list(q))
        elif mode == "AXIS_ANGLE":
            axis, angle = q.to_axis_angle()
            channels.append([angle, *axis])
        else:
            e = q.to_euler(mode, prev_e) if prev_e is not None else q.to_euler(mode)
            prev_e = e
            channels.append(list(e))
    prop = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(mode, "rotation_euler")
    action = _ensure_action(arm, f"{arm.name} Live Link")
    path = pb.path_from_id(prop)
    for index in range(len(channels[0])):
        _replace_keys(_fcurve(action, arm, path, index, bone), frames, [c[index] for c in channels], lo, hi)
    return len(channels[0])


def _ensure_action(id_data, name: str) -> bpy.types.Action:
    anim = id_data.animation_data or id_data.animation_data_create()
    if anim.action is None:
        anim.action = bpy.data.actions.new(name)
    return anim.action


def _fcurve(action: bpy.types.Action, id_data, data_path: str, index: int, group: str) -> bpy.types.FCurve:
    """The F-curve for ``data_path[index]`` of ``id_data`` in ``action`` (assigned to it), made if missing: Blender
    4.4+ layered actions (slot, layer and strip made as needed), else the legacy ``action.fcurves``."""
    if hasattr(action, "fcurve_ensure_for_datablock"):
        return action.fcurve_ensure_for_datablock(id_data, data_path, index=index, group_name=group)
    fc = action.fcurves.find(data_path, index=index)
    return fc or action.fcurves.new(data_path, index=index, action_group=group)


def _replace_keys(fc: bpy.types.FCurve, frames: list[float], values: list[float], lo: float, hi: float) -> int:
    """Remove the keys of ``fc`` within [lo, hi] frames, leave the others as they are, add linear keys at
    ``frames``. Returns the number added."""
    kps = fc.keyframe_points
    co = [0.0] * (2 * len(kps))
    kps.foreach_get("co", co)
    for i in reversed(range(len(kps))):  # from the end: each removal shifts only the keys after it
        if lo - _EPS_FRAMES <= co[2 * i] <= hi + _EPS_FRAMES:
            kps.remove(kps[i], fast=True)
    n0 = len(kps)
    kps.add(len(frames))
    co = [0.0] * (2 * len(kps))
    interp = [0] * len(kps)
    kps.foreach_get("co", co)
    kps.foreach_get("interpolation", interp)
    co[2 * n0 :] = [x for pair in zip(frames, values, strict=True) for x in pair]
    interp[n0:] = [_LINEAR] * len(frames)
    kps.foreach_set("co", co)
    kps.foreach_set("interpolation", interp)
    fc.update()  # sorts by frame and recomputes the handles
    return len(frames)
