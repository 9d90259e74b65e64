"""Is the field's surface detail the photo's, or the field's noise? For a bundle's asset, how well the grey SH light
fitted to the baked texture's luminance on the face agrees with (correlation) the shading of: the skin's normals
(level 0, and the subdivided levels as written and snapped to the field again), and the normal-mapped normals at
several low-pass widths; and how far a normal map baked against a subdivided level is from the shared one (level
0's, which every GLB uses). Prints JSON. docs/ASSET.md ("The normal map") has the numbers.

    python scripts/asset_detail_check.py BUNDLE [--texture-size 1024]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    def dec(x: np.ndarray) -> np.ndarray:
        v = x.astype(np.float64) / 255.0 * 2.0 - 1.0
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    return np.degrees(np.arccos(np.clip((dec(a) * dec(b)).sum(-1), -1.0, 1.0)))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--texture-size", type=int, default=1024)
    args = ap.parse_args(argv)
    import engine.asset.build as b
    from engine.asset.surface import LOWPASS_VOXELS
    from engine.avatar import load_avatar

    avatar = load_avatar(args.bundle)
    size = args.texture_size
    asset = b.assemble(avatar)
    tex, _ = b.bake(asset, avatar, size)
    ids, _, _ = b._skin(asset.prior)
    levels = b.skin_levels(asset.parts["skin"], ids, 2)
    sdf = b.sdf_world_fn(avatar.field, avatar.scale)
    base = b.skin_mesh(asset, levels[0])
    out: dict = {"bundle": str(args.bundle), "texture_size": size, "normal_map": {}, "levels": {}}
    shared = None
    for lp in (0.0, 1.0, 2.0):
        img, info = b.skin_normal_map(asset, avatar, base, size, tex, lp)
        out["normal_map"][f"lowpass_{lp:g}_voxels"] = {
            k: info[k] for k in ("lowpass_mm", "face_mean_deg", "face_p95_deg", "photo_shading_corr")
        }
        if lp == LOWPASS_VOXELS:
            shared = img
    for lv in levels[1:]:
        for snapped in (False, True):
            sk = b.skin_mesh(asset, lv, sdf if snapped else None)
            img, info = b.skin_normal_map(asset, avatar, sk, size, tex)
            note = {
                "mesh_corr": info["photo_shading_corr"]["mesh"],
                "mapped_corr": info["photo_shading_corr"]["mapped"],
            }
            if snapped:
                note["snap"] = sk.info
            else:
                detail = _angle_deg(shared, np.full_like(shared, 0) + [128, 128, 255]) > 1.0
                diff = _angle_deg(shared, img)[detail]
                note["own_map_vs_shared_deg"] = {"mean": round(float(diff.mean()), 2),
                                                 "p95": round(float(np.percentile(diff, 95)), 2)}  # fmt: skip
            out["levels"][f"subd{lv.level}{'_snapped' if snapped else ''}"] = note
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
