"""What a neural render needs from the scene (cameras and expression per frame), its results as images, and
lights for headless Cycles renders."""

from __future__ import annotations

from pathlib import Path

import bpy
from mathutils import Matrix, Vector

from .. import conventions as cv
from ..arkit import ARKIT_52, canonical_name
from .common import ROLE, AvatarScene, camera_intrinsics, head_centre, link_object, look_at_rotation

ARKIT_NAMES = frozenset(ARKIT_52)


def expression_source(avatar: AvatarScene, keys_from: str = "AUTO") -> tuple[bpy.types.Object | None, str]:
    """(the mesh whose shape keys set a neural render's expression, the engine rig that reads them): the asset's
    level-0 skin with ``asset`` (``keys_from`` ``ASSET``, or ``AUTO`` when the avatar has an asset skin with ARKit
    keys), else the scan head with ``proxy``. ValueError for ``ASSET`` on an avatar without an asset."""
    from .lod import asset_collection, lod_skins

    skin = lod_skins(asset_collection(avatar)).get(0)
    has_keys = skin is not None and expression_weights(skin) is not None
    if keys_from == "ASSET" and not has_keys:
        raise ValueError(f"{avatar.name} has no asset skin with ARKit shape keys")
    if keys_from in ("ASSET", "AUTO") and has_keys:
        return skin, "asset"
    return avatar.head, "proxy"


def frame_requests(
    scene: bpy.types.Scene, cam: bpy.types.Object, avatar: AvatarScene, frames: list[int], keys_from: str = "AUTO"
) -> list:
    """For each frame: (frame, engine cam2world, intrinsics dict, expression {shape key: weight} or None, rig,
    pose {bone: 4x4} or None), the expression read from :func:`expression_source`'s mesh (see
    :func:`expression_weights`), ``rig`` the engine rig for it and ``pose`` the asset armature's neck and head
    (and, with the asset's rig, its turned eyes: :func:`bone_pose`), read by stepping the scene through the
    frames (the current frame is restored)."""
    source, rig = expression_source(avatar, keys_from)
    armature = pose_armature(avatar)
    current = scene.frame_current, scene.frame_subframe
    out = []
    try:
        for f in frames:
            scene.frame_set(f)
            # the avatar may have been moved: express the camera relative to the head, in the engine frame
            rel = cam.matrix_world if avatar.head is None else avatar.head.matrix_world.inverted() @ cam.matrix_world
            cam2world = cv.cam2world_blender_to_engine(rel)
            pose = bone_pose(avatar, armature, eyes=rig == "asset")
            out.append((f, cam2world, camera_intrinsics(scene, cam).to_dict(), expression_weights(source), rig, pose))
    finally:
        scene.frame_set(current[0], subframe=current[1])
    return out


POSE_BONES = ("neck", "head")
"""The bones whose pose the neural render follows (the engine's engine.rig.pose.POSE_BONES)."""
EYE_BONES = ("eye_L", "eye_R")
"""The eye bones (engine.rig.pose.EYE_BONES): sent when turned from the head, as the eyeball's whole motion."""


def pose_armature(avatar: AvatarScene) -> bpy.types.Object | None:
    """The avatar's asset armature (the one with a ``head`` bone), or None."""
    return next((o for o in avatar.collection.all_objects if o.type == "ARMATURE" and "head" in o.pose.bones), None)


def _is_identity(m: Matrix, tol: float = 1e-6) -> bool:
    return max(abs(m[i][j] - (1.0 if i == j else 0.0)) for i in range(4) for j in range(4)) <= tol


def bone_pose(avatar: AvatarScene, armature: bpy.types.Object | None, eyes: bool = True) -> dict | None:
    """The asset armature's current pose as the engine's render ``pose``: the neck and head bones' rest -> posed
    transforms of world points (what the armature modifier does to a vertex bound to it alone), relative to the
    head as the camera is, in engine axes; bones at rest left out, None when none is posed (or there is no
    armature). With ``eyes``, an eye bone turned from the head is sent too, as its eyeball's whole motion: the
    bone's transform after the rigid motion the eyeball's own (unmuted) shape keys give it (:func:`eye_key_motion`),
    which the engine then uses in place of the look keys' (docs/ADDON.md "Eye bones")."""
    if armature is None:
        return None
    rel = Matrix.Identity(4) if avatar.head is None else avatar.head.matrix_world.inverted()
    world = armature.matrix_world
    skins = {}
    for name in POSE_BONES + EYE_BONES:
        pb = armature.pose.bones.get(name)
        if pb is not None:
            skins[name] = world @ pb.matrix @ pb.bone.matrix_local.inverted() @ world.inverted()
    out = {}
    for name in POSE_BONES:
        m = rel @ skins[name] @ rel.inverted() if name in skins else None
        if m is not None and not _is_identity(m):
            out[name] = cv.transform_blender_to_engine(m)
    head = skins.get("head", Matrix.Identity(4))
    for name in EYE_BONES if eyes else ():
        if name not in skins or _is_identity(head.inverted() @ skins[name]):
            continue  # at rest on the head: the engine's eyes follow the look keys
        eyeball = _eyeball(avatar, name)
        m = skins[name] @ (eye_key_motion(eyeball) if eyeball is not None else Matrix.Identity(4))
        out[name] = cv.transform_blender_to_engine(rel @ m @ rel.inverted())
    return out or None


def _eyeball(avatar: AvatarScene, bone: str) -> bpy.types.Object | None:
    """The asset's level-0 eyeball mesh bound to eye bone ``bone`` (role ``asset_eye_L`` / ``asset_eye_R``)."""
    return next((o for o in avatar.collection.all_objects if o.type == "MESH" and o.get(ROLE) == f"asset_{bone}"), None)


def eye_key_motion(eyeball: bpy.types.Object) -> Matrix:
    """The rigid motion (world, 4x4) that best fits what the eyeball's unmuted shape keys at their current values
    do to its vertices (the look keys turn the asset's eyeballs); the identity for an eyeball without keys or
    whose keys are muted or at 0."""
    import numpy as np

    keys = eyeball.data.shape_keys
    if keys is None or len(keys.key_blocks) < 2:
        return Matrix.Identity(4)
    n = len(eyeball.data.vertices)

    def co(kb) -> np.ndarray:
        a = np.empty(3 * n, np.float64)
        kb.data.foreach_get("co", a)
        return a.reshape(n, 3)

    basis = co(keys.reference_key)
    moved = basis.copy()
    for kb in keys.key_blocks[1:]:
        if not kb.mute and abs(kb.value) > 1e-6 and kb.relative_key == keys.reference_key:
            moved += kb.value * (co(kb) - basis)
    if np.abs(moved - basis).max() < 1e-7:
        return Matrix.Identity(4)
    ow = np.array(eyeball.matrix_world)
    p = basis @ ow[:3, :3].T + ow[:3, 3]
    q = moved @ ow[:3, :3].T + ow[:3, 3]
    cp, cq = p.mean(0), q.mean(0)
    u, _, vt = np.linalg.svd((p - cp).T @ (q - cq))
    d = 1.0 if np.linalg.det(vt.T @ u.T) > 0 else -1.0
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, cq - rot @ cp
    return Matrix(m.tolist())


def expression_weights(head: bpy.types.Object | None) -> dict[str, float] | None:
    """The head's current ARKit shape-key values (0..1, non-zero only), as the engine's render ``expression``:
    ``{}`` when every key is 0 (the neutral face). None when the head has no ARKit shape keys (a mesh without the
    rig): the engine then renders the face as photographed."""
    keys = head.data.shape_keys if head is not None and head.type == "MESH" else None
    blocks = [kb for kb in keys.key_blocks[1:] if canonical_name(kb.name) in ARKIT_NAMES] if keys else []
    if not blocks:
        return None
    return {
        canonical_name(kb.name): min(1.0, max(0.0, float(kb.value)))
        for kb in blocks
        if not kb.mute and abs(kb.value) > 1e-6
    }


def load_render(path: Path, name: str, *, sequence_frames: int = 0, frame_start: int = 1) -> bpy.types.Image:
    """A neural render (or the first frame of a sequence) as an image datablock, reusing one of the same name."""
    old = bpy.data.images.get(name)
    if old is not None:
        bpy.data.images.remove(old)
    img = bpy.data.images.load(str(path), check_existing=False)
    img.name = name
    img[ROLE] = "neural_render"
    if sequence_frames:
        img.source = "SEQUENCE"
    return img


def add_studio_lights(scene: bpy.types.Scene, avatar: AvatarScene) -> list[bpy.types.Object]:
    """Key, fill and rim area lights around the head (for Cycles); parented to nothing, in the avatar collection."""
    c = head_centre(avatar)
    name = avatar.name.removeprefix("Likeness ")
    out = []
    for label, offset, power, size in (
        ("key", (-0.8, -1.2, 0.6), 60.0, 0.8),
        ("fill", (1.0, -1.0, 0.1), 20.0, 1.0),
        ("rim", (0.3, 1.2, 0.8), 40.0, 0.6),
    ):
        data = bpy.data.lights.new(f"{name} {label} light", "AREA")
        data.energy, data.size = power, size
        obj = link_object(bpy.data.objects.new(f"{name} {label} light", data), avatar.collection, f"{label}_light")
        eye = c + Vector(offset)
        obj.matrix_world = Matrix.Translation(eye) @ look_at_rotation(eye, c).to_4x4()
        out.append(obj)
    world = scene.world or bpy.data.worlds.new("Likeness world")
    scene.world = world
    world.color = (0.05, 0.05, 0.05)
    if world.node_tree is not None:
        bg = world.node_tree.nodes.get("Background")
        if bg is not None:
            bg.inputs["Color"].default_value = (0.05, 0.05, 0.05, 1.0)
    return out
