"""Do the neural render and the asset's mesh agree under every ARKit key? For the neutral face and each of the 52
keys at weight 1: the bundle's radiance field through its expression warp (engine.rig) and the asset's head.glb
(every part, the key's morph target at 1) from the same cameras, and the silhouette IoU between them (field alpha
> 0.5 against the mesh's coverage); the field's pixels whose surface lies below the plane of the asset's neck cut,
or more than 4 cm from the asset's mesh, are not scored for either (the field goes on into the body, which can hide
the head; the asset stops at the cut).
Prints JSON: per view and key the IoU, the pixels only the field covers and only the mesh covers, the pixels the
key moves in each silhouette (against the neutral) and the IoU of those two moves (None where fewer than 20 pixels
move in both together); writes a sheet of the keys whose IoU is lowest (white: both, red: the field only, blue:
the mesh only, dark red: the field below the neck cut or off the head, not scored).

    python scripts/key_agreement.py BUNDLE [--asset BUNDLE/asset] [--yaws 0,60] [--size 192] [--fov 22]
        [--rig proxy|asset] [--heads "25,0,0;0,20,0"] [-o keys.png]

``--heads`` adds head rotations (Live Link yaw,pitch,roll in degrees, the head bone about its joint) scored the
same way: the field through engine.rig.pose (engine/asset/skinning.py), the mesh skinned by the GLB's neck blend
(rows ``head(y,p,r)``).

Issue 14 asks for IoU >= 0.97 at every key. ``--rig proxy`` (default) moves the field by the bundle's own proxy
rig (engine/rig), ``--rig asset`` by the asset's template keys carried onto the proxy (engine/rig/asset_rig.py);
the asset's mesh always moves by its own keys (engine/asset/rig.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.asset.measure import edge_counts  # noqa: E402
from engine.asset.skinning import head_pose, neck_blend_for_avatar, pose_deform  # noqa: E402
from engine.avatar import load_avatar  # noqa: E402
from engine.conventions import cam2world_gl_to_cv, project_points  # noqa: E402
from engine.extract.raster import rasterize  # noqa: E402
from engine.rig import RIG_SOURCES, deform_for_avatar, resolve_rig  # noqa: E402
from engine.rig.arkit import ARKIT_NAMES  # noqa: E402
from engine.rig.asset_rig import read_asset_keys  # noqa: E402
from engine.rig.measure import measurement_cameras  # noqa: E402
from engine.rig.pose import check_pose, fit_plane, pose_points  # noqa: E402


def neck_cut(tris: np.ndarray) -> np.ndarray:
    """Template ids of the skin's open boundary (the neck cut): edges used by one triangle (the skin's triangles
    (F, 3) in template ids, so welded)."""
    edges, count = edge_counts(tris)
    return np.unique(edges[count == 1])


def cut_plane(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A point on and the unit normal of the plane through the neck cut's vertices (N, 3), the normal toward the
    head centre (the world origin)."""
    return fit_plane(points, np.zeros(3))


NEAR_M = 0.04
"""A field pixel is scored only where its surface lies within this of the asset's mesh (the body beside the neck,
a raised shoulder or collar above the cut, is not the head the asset models)."""


def scored_field(depth: np.ndarray, cam2world: np.ndarray, intr, plane, tree) -> np.ndarray:
    """(H, W) True where a render's surface (z-depth in metres, 0 where empty) lies above the cut plane and within
    :data:`NEAR_M` of the asset's vertices (``tree``, a cKDTree)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w] + 0.5
    pc = np.stack([(u - intr.cx) / intr.fx * depth, (v - intr.cy) / intr.fy * depth, depth], -1)
    c2w = cam2world_gl_to_cv(cam2world)
    pw = pc.reshape(-1, 3) @ c2w[:3, :3].T + c2w[:3, 3]
    keep = (((pw - plane[0]) @ plane[1]) >= 0) & (depth.reshape(-1) > 0)
    dist = np.full(len(pw), np.inf)
    dist[keep] = tree.query(pw[keep])[0]
    return (keep & (dist <= NEAR_M)).reshape(h, w)


def mesh_mask(verts: np.ndarray, tris: np.ndarray, cam2world: np.ndarray, intr) -> np.ndarray:
    uv, depth = project_points(verts, cam2world, intr)
    fid, _ = rasterize(uv, depth, tris[(depth[tris] > 0).all(1)], intr.width, intr.height)
    return fid >= 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def panel(field_all: np.ndarray, field: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    out = np.zeros(field.shape + (3,), np.uint8)
    out[field_all & ~field & ~mesh] = (90, 20, 20)  # the field below the neck cut: not scored
    out[field & mesh] = 255
    out[field & ~mesh] = (230, 40, 40)
    out[mesh & ~field] = (40, 90, 230)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle")
    p.add_argument("--asset", help="the asset folder (default: BUNDLE/asset)")
    p.add_argument("--yaws", default="0,60", help="degrees from the photo camera's direction")
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--fov", type=float, default=22.0, help="vertical field of view, degrees (the whole head)")
    p.add_argument(
        "--keys", default="", help="comma-separated ARKit names (default: all 52; none: only the neutral and --heads)"
    )
    p.add_argument("--rig", choices=RIG_SOURCES, default="auto", help="whose shapes move the field (docs/RIG.md)")
    p.add_argument("--heads", default="", help='head rotations to score too: "yaw,pitch,roll;..." in degrees')
    p.add_argument("-o", "--output", help="PNG: the lowest keys' silhouettes")
    a = p.parse_args(argv)
    bundle = Path(a.bundle)
    glb = Path(a.asset or bundle / "asset") / "head.glb"
    if not glb.is_file():
        print(f"key_agreement: no {glb} (make it with: likeness asset {bundle})", file=sys.stderr)
        return 2
    keys = [] if a.keys == "none" else [k for k in a.keys.split(",") if k] or list(ARKIT_NAMES)
    unknown = [k for k in keys if k not in ARKIT_NAMES]
    if unknown:
        print(f"key_agreement: not ARKit names: {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        heads = [tuple(float(v) for v in h.split(",")) for h in a.heads.split(";") if h.strip()]
        if any(len(h) != 3 for h in heads):
            raise ValueError
    except ValueError:
        print(f"key_agreement: --heads wants yaw,pitch,roll triples in degrees, not {a.heads!r}", file=sys.stderr)
        return 2
    avatar = load_avatar(bundle)
    asset = read_asset_keys(glb)
    verts, deltas = asset.basis, asset.deltas
    tris = np.concatenate([t for _, t in asset.parts.values()])
    hair = asset.off_template
    cut = neck_cut(next(t for name, (_, t) in asset.parts.items() if name.startswith("skin")))
    cams = measurement_cameras(avatar, a.size, a.fov, [float(y) for y in a.yaws.split(",")])
    t0 = time.perf_counter()
    report, tiles = {}, []
    plane = cut_plane(verts[cut])
    from scipy.spatial import cKDTree

    tree = cKDTree(np.concatenate([verts, *[hv for _, hv, _ in hair]]))
    poses = {f"head({y:g},{pt:g},{r:g})": check_pose(head_pose(avatar, y, pt, r)) for y, pt, r in heads}
    blend = neck_blend_for_avatar(avatar) if poses else None
    for yaw, (cam, intr) in zip(a.yaws.split(","), cams, strict=True):
        per_key = {}
        for key in ["neutral", *keys, *poses]:
            w = {} if key == "neutral" or key in poses else {key: 1.0}
            deform = deform_for_avatar(avatar, w, rig=a.rig)
            posed = verts if key == "neutral" or key in poses else verts + deltas[ARKIT_NAMES.index(key)]
            hair_now, near = [(hv, ht) for _, hv, ht in hair], tree
            if key in poses:  # the head bone turned: the field through the pose, the mesh skinned by the blend
                deform = pose_deform(avatar, poses[key], deform)
                posed = pose_points(blend, poses[key], posed)
                hair_now = [(pose_points(blend, poses[key], hv), ht) for hv, ht in hair_now]
                near = cKDTree(np.concatenate([posed, *[hv for hv, _ in hair_now]]))
            out = avatar.render(cam, intr, deform=deform)
            field_all = out["alpha"] > 0.5
            field = field_all & scored_field(out["depth_m"], cam, intr, plane, near)
            mesh = mesh_mask(posed, tris, cam, intr)
            for hair_verts, hair_tris in hair_now:  # no morph targets: it stays (brows never move the hair)
                mesh |= mesh_mask(hair_verts, hair_tris, cam, intr)
            f, m = field, mesh & ~(field_all & ~field)  # where the field shows the body, neither is scored
            per_key[key] = {
                "iou": round(iou(f, m), 4),
                "field_only_px": int((f & ~m).sum()),
                "mesh_only_px": int((m & ~f).sum()),
            }
            if key == "neutral":
                f0, m0 = f, m
            else:  # where the key moves each silhouette, and whether the two moves agree
                df, dm = f ^ f0, m ^ m0
                per_key[key].update(
                    field_moved_px=int(df.sum()),
                    mesh_moved_px=int(dm.sum()),
                    moved_iou=round(iou(df, dm), 3) if (df | dm).sum() >= 20 else None,
                )
            tiles.append((per_key[key]["iou"], f"{key} @{yaw}", panel(field_all, field, m)))
        values = [v["iou"] for k, v in per_key.items() if k in keys]
        report[f"yaw{yaw}"] = {
            "neutral_iou": per_key["neutral"]["iou"],
            "min_key_iou": min(values) if values else None,
            "min_key": min((v["iou"], k) for k, v in per_key.items() if k in keys)[1] if values else None,
            "keys_at_or_over_0.97": int(sum(v >= 0.97 for v in values)),
            "keys": {k: v for k, v in per_key.items() if k not in poses},
        }
        if poses:
            report[f"yaw{yaw}"]["heads"] = {k: per_key[k] for k in poses}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["keys_scored"] = len(keys)
    report["rig"] = resolve_rig(avatar, a.rig)
    print(json.dumps(report, indent=1))
    if a.output:
        from PIL import Image, ImageDraw

        worst = sorted(tiles, key=lambda t: t[0])[:12]
        sheet = Image.new("RGB", (len(worst) * a.size, a.size + 14), (20, 20, 20))
        draw = ImageDraw.Draw(sheet)
        for i, (value, label, img) in enumerate(worst):
            sheet.paste(Image.fromarray(img), (i * a.size, 14))
            draw.text((i * a.size + 3, 1), f"{label} {value:.3f}", fill=(255, 255, 255))
        sheet.save(a.output)
        print(a.output, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
