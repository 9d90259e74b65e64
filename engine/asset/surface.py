"""The skin's surface maps for an assembled asset (engine.asset.build.Asset): where the photo saw the field's
detail, the normal map of the field against one level of the skin, and the roughness of every part; the pure
pieces are engine.asset.maps. docs/ASSET.md."""

from __future__ import annotations

import numpy as np

from engine.asset.fieldfn import normal_world_fn, sdf_world_fn
from engine.asset.lod import SkinMesh
from engine.asset.maps import (
    LIPS_LANDMARKS,
    ROUGHNESS,
    BakeMesh,
    eye_roughness,
    normal_map,
    roughness_map,
    skin_roughness,
    tangent_frames,
)
from engine.asset.rig import landmark_points
from engine.asset.skin import skin_topology, template_front
from engine.asset.snap import BROW_Y_M, HAIR_OUT_M, face_weight

LOWPASS_VOXELS = 2.0
"""The normal map is low-passed by a Gaussian of this many of the field's voxels (its trilinear normals show the
grid at a voxel; docs/ASSET.md has what it does to the map)."""
VOXEL_M = 0.004
"""The voxel assumed for a field that does not say its own (metres)."""


def detail_weight(asset) -> np.ndarray:
    """(S,) on the skin's template vertices: where the photo saw the field's surface detail (the snap's face
    region, not in a cavity); the normal map is flat where it is 0."""
    ids, _, _ = skin_topology(asset.prior)
    return face_weight(asset.prior.vertices[ids]) * template_front(asset.prior)


def skin_normal_map(
    asset,
    avatar,
    skin: SkinMesh,
    size: int,
    texture: np.ndarray | None = None,
    lowpass_voxels: float = LOWPASS_VOXELS,
) -> tuple[np.ndarray, dict]:
    """The normal map (size, size, 3) uint8 of the field's surface relative to ``skin`` (its posed surface, where
    the field was seen), in that level's tangent frames, low-passed at ``lowpass_voxels`` of the field's voxel
    (engine.asset.maps.normal_map); with the baked ``texture``, how well each set of normals explains its shading."""
    lv = skin.level
    sv = lv.split_vertex
    n = skin.normals(posed=True)[sv]
    pos = skin.posed[sv]
    ids, _, _ = skin_topology(asset.prior)
    hairy = asset.prior.vertices[ids, 1] > BROW_Y_M  # above the brows, a surface further out is hair (snap.py)
    max_out = lv.matrix @ np.where(hairy, HAIR_OUT_M, 1.0)
    mesh = BakeMesh(lv.uv, lv.triangles, pos, n, tangent_frames(pos, n, lv.uv, lv.triangles),
                    (lv.matrix @ detail_weight(asset))[sv], max_out[sv])  # fmt: skip
    to_camera = np.asarray(avatar.photo_cam2world, np.float64)[:3, 2]  # gl camera: +Z points back at the viewer
    sdf, nfn = sdf_world_fn(avatar.field, avatar.scale), normal_world_fn(avatar.field, avatar.scale)
    voxel_m = float(getattr(avatar.field, "voxel", VOXEL_M * avatar.scale)) / avatar.scale
    lum = None if texture is None else texture.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722]) / 255.0
    return normal_map(mesh, sdf, nfn, to_camera, size, lowpass_voxels * voxel_m, lum)


def roughness(asset, size: int) -> np.ndarray:
    """(size, size) roughness on the atlas (engine.asset.maps.ROUGHNESS by region), from the neutral template's
    positions of each part's vertices."""
    prior = asset.prior
    ids, _, _ = skin_topology(prior)
    lips = landmark_points(prior, prior.vertices, list(LIPS_LANDMARKS))
    front = np.zeros(len(prior.vertices))
    front[ids] = template_front(prior)
    pieces = []
    for name, part in asset.parts.items():
        tv = part.template_vertex
        pos = prior.vertices[tv].astype(np.float64)
        if name == "skin":
            pieces.append((name, part.uv, part.triangles, np.c_[pos, front[tv]],
                           lambda a: skin_roughness(a[:, :3], lips, a[:, 3])))  # fmt: skip
        elif name.startswith("eye"):
            centre = pos.mean(0)
            pieces.append((name, part.uv, part.triangles, pos, lambda a, c=centre: eye_roughness(a, c)))
        else:
            value = ROUGHNESS["tongue" if name == "tongue" else "teeth"]
            pieces.append((name, part.uv, part.triangles, pos[:, :1], lambda a, r=value: np.full(len(a), r)))
    return roughness_map(pieces, size)
