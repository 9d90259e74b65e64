"""The numbers an artist would check on an asset GLB, read back from the file itself (scripts/asset_stats.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from engine.asset.measure import (
    boundary_loops,
    edge_counts,
    intersecting_pairs,
    uv_coverage,
    uv_signed_area,
    uv_stretch,
    weld,
)
from engine.rig.gltf import accessor_array, read_glb

FACE_Z_M = 0.02
"""The face region for UV stretch: triangles whose centroid is this far in front of the head centre (the ear
plane is z = 0 in the world frame)."""


def read_asset_meshes(glb: Path) -> tuple[dict, np.ndarray]:
    """{mesh name: {"positions", "uv" (glTF, v down), "tris", "targets"}} and the atlas (H, W, 3) uint8."""
    g, binary = read_glb(Path(glb).read_bytes())
    bv = g["bufferViews"][g["images"][0]["bufferView"]]
    png = bytes(binary[bv["byteOffset"] : bv["byteOffset"] + bv["byteLength"]])
    atlas = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    out = {}
    for mesh in g["meshes"]:
        prim = mesh["primitives"][0]
        out[mesh["name"]] = {
            "positions": accessor_array(g, binary, prim["attributes"]["POSITION"]).astype(np.float64),
            "uv": accessor_array(g, binary, prim["attributes"]["TEXCOORD_0"]).astype(np.float64),
            "tris": accessor_array(g, binary, prim["indices"]).astype(np.int64).reshape(-1, 3),
            "targets": len(prim.get("targets", [])),
            "target_names": mesh.get("extras", {}).get("targetNames", []),
        }
    return out, atlas


def quad_share(obj: Path) -> float:
    """Share of an OBJ's faces that are quads."""
    n = [len(line.split()) - 1 for line in Path(obj).read_text().splitlines() if line.startswith("f ")]
    return float(np.mean(np.asarray(n) == 4)) if n else 0.0


def _density(positions: np.ndarray, uv: np.ndarray, tris: np.ndarray, size_px: int) -> float:
    """Texels per centimetre over a mesh: sqrt(UV area x size^2 / 3D area) / 100."""
    p = positions[tris]
    a3 = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1).sum()
    auv = np.abs(uv_signed_area(uv, tris)).sum()
    return float(np.sqrt(auv / max(a3, 1e-18)) * size_px / 100.0)


def asset_stats(folder: Path, coverage_size: int = 1024) -> dict:
    """Per part counts and topology, the skin's self-intersections and the eyes' crossings of it, UV stretch on
    the face, flipped and overlapping UVs, and how much of the atlas the layout uses."""
    folder = Path(folder)
    meshes, atlas = read_asset_meshes(folder / "head.glb")
    parts = {}
    all_uv, all_tris, off = [], [], 0
    for name, m in meshes.items():
        pos, idx = weld(m["positions"])
        tris = idx[m["tris"]]
        edges, counts = edge_counts(tris)
        area = uv_signed_area(m["uv"], m["tris"])
        sign = np.sign(np.median(area))
        parts[name] = {
            "vertices": int(len(pos)),
            "vertices_uv_split": int(len(m["positions"])),
            "triangles": int(len(tris)),
            "morph_targets": m["targets"],
            "non_manifold_edges": int((counts > 2).sum()),
            "boundary_loops": boundary_loops(tris, pos),
            "flipped_uv_faces": int((np.sign(area) == -sign).sum()),
            "zero_area_uv_faces": int((np.abs(area) < 1e-12).sum()),
            "texel_density_px_per_cm": round(_density(m["positions"], m["uv"], m["tris"], atlas.shape[1]), 2),
        }
        if name == "hair":  # its own texture (hair.png), not on the atlas
            continue
        all_uv.append(m["uv"])
        all_tris.append(m["tris"] + off)
        off += len(m["uv"])
    skin = meshes["skin"]
    spos, sidx = weld(skin["positions"])
    stris = sidx[skin["tris"]]
    parts["skin"]["self_intersections"] = int(len(intersecting_pairs(spos, stris)))
    for eye in ("eye_L", "eye_R"):
        epos, eidx = weld(meshes[eye]["positions"])
        parts[eye]["crossings_with_skin"] = int(len(intersecting_pairs(epos, eidx[meshes[eye]["tris"]], (spos, stris))))
    # glTF's UV v runs down: flip it back so a triangle that winds outward in 3D is counter-clockwise in UV
    uv_up = np.stack([skin["uv"][:, 0], 1.0 - skin["uv"][:, 1]], 1)
    ratio, area = uv_stretch(skin["positions"], uv_up, skin["tris"])
    face = skin["positions"][skin["tris"]].mean(1)[:, 2] > FACE_Z_M
    r, w = ratio[face], area[face]
    ok = np.isfinite(r)
    order = np.argsort(r[ok])
    cum = np.cumsum(w[ok][order]) / w[ok].sum()
    dens = np.sqrt(np.abs(uv_signed_area(uv_up, skin["tris"]))[face] / np.maximum(w, 1e-18)) * atlas.shape[1] / 100
    dorder = np.argsort(dens)
    dcum = np.cumsum(w[dorder]) / w.sum()
    d5, d50, d95 = (float(dens[dorder][np.searchsorted(dcum, q)]) for q in (0.05, 0.5, 0.95))
    cover = uv_coverage(np.concatenate(all_uv) * [1.0, -1.0] + [0.0, 1.0], np.concatenate(all_tris), coverage_size)
    used = cover > 0
    stats = {
        "asset": str(folder),
        "parts": parts,
        "skin_quad_share": round(quad_share(folder / "skin.obj"), 4) if (folder / "skin.obj").is_file() else None,
        "uv_stretch_face": {
            "triangles": int(face.sum()),
            "area_weighted_mean": round(float((r[ok] * w[ok]).sum() / w[ok].sum()), 3),
            "p95": round(float(r[ok][order][np.searchsorted(cum, 0.95)]), 3),
            "degenerate": int((~ok).sum()),
            "texel_density_px_per_cm": {"p5": round(d5, 2), "median": round(d50, 2), "p95": round(d95, 2)},
        },
        "uv_overlap_share": round(float((cover > 1).sum() / max(used.sum(), 1)), 5),
        "atlas_use": round(float(used.mean()), 4),
        "atlas_px": list(atlas.shape[:2]),
    }
    return stats


def asset_summary(folder: Path) -> dict:
    """The manifest's short form of :func:`asset_stats`: per part vertices and triangles, morph targets on the
    skin, face UV stretch, atlas use and overlap, flipped UVs, skin self-intersections."""
    st = asset_stats(folder, coverage_size=512)
    parts = st["parts"]
    return {
        "parts": {n: {"vertices": p["vertices"], "triangles": p["triangles"]} for n, p in parts.items()},
        "morph_targets": parts["skin"]["morph_targets"],
        "uv_stretch_face_mean": st["uv_stretch_face"]["area_weighted_mean"],
        "uv_stretch_face_p95": st["uv_stretch_face"]["p95"],
        "atlas_use": st["atlas_use"],
        "uv_overlap_share": st["uv_overlap_share"],
        "flipped_uv_faces": sum(p["flipped_uv_faces"] for p in parts.values()),
        "skin_self_intersections": parts["skin"]["self_intersections"],
        "skin_texel_density_px_per_cm": parts["skin"]["texel_density_px_per_cm"],
    }


def subdivision_stats(folder: Path, self_intersections_up_to: int = 2) -> dict:
    """Per subdivided level of the skin in the asset folder (head_subd1.glb, head_subd2.glb, as far as written):
    vertices (welded, UV-split), triangles, morph targets and their sparse rows, non-manifold edges, boundary
    loops, flipped UVs, the quad OBJ's quad share, the GLB's size, and the skin's self-intersections on levels up
    to ``self_intersections_up_to`` (5 s at level 2 on two cores)."""
    from engine.rig.gltf import read_glb

    folder = Path(folder)
    out = {}
    for k in (1, 2):
        glb, obj = folder / f"head_subd{k}.glb", folder / f"skin_subd{k}.obj"
        if not glb.is_file():
            continue
        meshes, _ = read_asset_meshes(glb)
        skin = meshes["skin"]
        pos, idx = weld(skin["positions"])
        tris = idx[skin["tris"]]
        _, counts = edge_counts(tris)
        area = uv_signed_area(skin["uv"], skin["tris"])
        g, _ = read_glb(glb.read_bytes())
        prim = next(m for m in g["meshes"] if m["name"] == "skin")["primitives"][0]
        rows = sum(g["accessors"][t["POSITION"]].get("sparse", {}).get("count", 0) for t in prim.get("targets", []))
        out[f"subd{k}"] = {
            "vertices": int(len(pos)),
            "vertices_uv_split": int(len(skin["positions"])),
            "triangles": int(len(tris)),
            "morph_targets": skin["targets"],
            "morph_target_sparse_rows": int(rows),
            "non_manifold_edges": int((counts > 2).sum()),
            "boundary_loops": boundary_loops(tris, pos),
            "flipped_uv_faces": int((np.sign(area) == -np.sign(np.median(area))).sum()),
            "quad_share_obj": round(quad_share(obj), 4) if obj.is_file() else None,
            "glb_mb": round(glb.stat().st_size / 1e6, 2),
            "self_intersections": int(len(intersecting_pairs(pos, tris))) if k <= self_intersections_up_to else None,
        }
    return out
