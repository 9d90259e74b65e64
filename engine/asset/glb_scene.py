"""The artist asset's GLB scene (engine.asset.build): the skin at any level and the other parts as meshes with
their morph targets, the hair part, the photo camera and the neck -> head -> eyes armature, through
engine.asset.gltf's writer. docs/ASSET.md "Exports"."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from engine.asset.gltf import CameraOut, Joint, MeshOut, build_glb
from engine.asset.lod import SkinMesh
from engine.asset.maps import ROUGHNESS, tangent_frames
from engine.asset.parts import ASSET_PARTS
from engine.asset.skinning import JOINTS_TEMPLATE, NECK_BLEND_KEY, neck_blend
from engine.extract.mesh import vertex_normals
from engine.prior.model import PARTS
from engine.rig.pose import NeckBlend

if TYPE_CHECKING:
    from engine.asset.build import Asset
    from engine.asset.hair import HairShell

MATERIALS = [{"name": "likeness_skin", "roughness": 0.6, "normal": True}, {"name": "likeness_eye", "roughness": 0.15}]
MATERIALS += [{"name": "likeness_mouth", "roughness": 0.35}]
"""The GLB's materials: skin (atlas + normal map), eyes, mouth (teeth, tongue, cavity); the hair's comes last."""
HAIR_MATERIAL = {"name": "likeness_hair", "roughness": ROUGHNESS["scalp"], "texture": "hair"}


def glb_bytes(
    asset: Asset, avatar, textures: dict[str, bytes], skin: SkinMesh, shell: HairShell | None = None
) -> bytes:
    """The GLB: ``skin`` (any level) and the other parts (and the hair ``shell``, not subdivided), the camera and
    armature; ``textures`` the PNGs of the "atlas" and optionally the "normal" and "metallic_roughness" maps and
    the "hair" texture."""
    prior = asset.prior
    vn = np.zeros_like(asset.neutral)
    for name in ASSET_PARTS[1:]:
        part = asset.parts[name]
        vn[part.template_vertex] = vertex_normals(asset.neutral[part.template_vertex], part.triangles)
        sel = part.template_vertex
        c = asset.neutral[sel].mean(0)
        if name.startswith("eye"):  # closed spheres: point the normals away from the centre
            vn[sel] *= np.sign(((asset.neutral[sel] - c) * vn[sel]).sum()) or 1.0
    joints, eye_joint = _joints(asset)
    blend = neck_blend(asset.prior, asset.similarity, asset.neutral)  # the field is skinned by the same blend
    lv = skin.level
    sv = lv.split_vertex
    skin_n = skin.normals()[sv]
    meshes = [
        MeshOut(
            name="skin",
            positions=skin.neutral[sv],
            normals=skin_n,
            uv=lv.uv,
            tris=lv.triangles,
            template_vertex=lv.parent,
            material=0,
            joint=1,
            joint_weights=_neck_head(blend, skin.neutral[sv]),
            deltas=skin.deltas[:, sv],
            tangents=tangent_frames(skin.neutral[sv], skin_n, lv.uv, lv.triangles) if "normal" in textures else None,
            extras={"subdivision_level": lv.level},
        )
    ]
    for name in ASSET_PARTS[1:]:
        part = asset.parts[name]
        tv = part.template_vertex
        d = asset.deltas[:, tv]
        moves = bool(np.any(np.abs(d) > 1e-7))
        meshes.append(
            MeshOut(
                name=name,
                positions=asset.neutral[tv],
                normals=vn[tv],
                uv=part.uv,
                tris=part.triangles,
                template_vertex=tv,
                material=1 if name.startswith("eye") else 2,
                joint=eye_joint.get(name, 1),
                deltas=np.where(np.abs(d) > 1e-7, d, 0.0) if moves else None,
            )
        )
    materials = MATERIALS
    if shell is not None:
        meshes.append(_hair_mesh(shell, blend))
        materials = MATERIALS + [HAIR_MATERIAL]
    intr = avatar.photo_intrinsics
    cam = CameraOut(
        "photo_camera", avatar.photo_cam2world, 2.0 * math.atan(0.5 * intr.height / intr.fy), intr.width / intr.height
    )
    extra = {"hair": textures["hair"]} if shell is not None else None
    return build_glb(meshes, textures["atlas"], materials, cam, joints, list(prior.arkit_names), asset.expression,
                     textures.get("normal"), textures.get("metallic_roughness"), extra,
                     {NECK_BLEND_KEY: blend.to_dict()})  # fmt: skip


def _joints(asset: Asset) -> tuple[list[Joint], dict[str, int]]:
    """neck -> head -> eye_L, eye_R in world metres, and which joint each eye is bound to."""

    def world(p) -> tuple[float, float, float]:
        return tuple(float(x) for x in asset.template_to_world(p))

    eyes = {n: asset.neutral[asset.prior.part == PARTS.index(n)].mean(0) for n in ("eye_L", "eye_R")}
    joints = [Joint("neck", -1, world(JOINTS_TEMPLATE["neck"])), Joint("head", 0, world(JOINTS_TEMPLATE["head"]))]
    joints += [Joint(n, 1, tuple(float(x) for x in c)) for n, c in eyes.items()]
    return joints, {"eye_L": 2, "eye_R": 3}


def _neck_head(blend: NeckBlend, points: np.ndarray) -> np.ndarray:
    """(N, 2) weights on the neck and head joints of rest world points: the neck blend, what lies below the cut
    (the field's body, engine.rig.pose) folded into the neck."""
    head = blend.weights(points)[:, 2]
    return np.stack([1.0 - head, head], 1)


def _hair_mesh(shell: HairShell, blend: NeckBlend) -> MeshOut:
    """The hair part: its own material and texture, skinned by the neck blend like the skin, no morph targets."""
    return MeshOut(name="hair", positions=shell.positions, normals=shell.normals, uv=shell.uv, tris=shell.tris,
                   template_vertex=np.full(len(shell.positions), -1), material=len(MATERIALS), joint=1,
                   joint_weights=_neck_head(blend, shell.positions), extras={"not_on_template": True})  # fmt: skip
