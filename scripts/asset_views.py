"""Render an asset's head.glb (all parts, neutral or with its default weights) from orbit yaws with the engine's
rasteriser: textured, lit from the camera, into one contact sheet PNG; and the UV layout over the atlas.

    python scripts/asset_views.py BUNDLE/asset [-o sheet.png] [--uv uv.png] [--size 384] [--posed]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.conventions import Intrinsics, orbit_camera_gl, project_points  # noqa: E402
from engine.extract.raster import rasterize  # noqa: E402
from engine.rig.gltf import accessor_array, read_glb  # noqa: E402

YAWS = (0, 45, -45, 90, -90, 180)


def load_parts(glb: Path, posed: bool) -> tuple[list[dict], np.ndarray]:
    """Each mesh's positions (N, 3), uv (N, 2) glTF (v down) and tris; and the atlas (H, W, 3) uint8."""
    import io

    g, binary = read_glb(glb.read_bytes())
    img = g["images"][0]
    bv = g["bufferViews"][img["bufferView"]]
    atlas = np.asarray(Image.open(io.BytesIO(bytes(binary[bv["byteOffset"] : bv["byteOffset"] + bv["byteLength"]]))))
    parts = []
    for mesh in g["meshes"]:
        prim = mesh["primitives"][0]
        pos = accessor_array(g, binary, prim["attributes"]["POSITION"]).astype(np.float64)
        if posed and "targets" in prim:
            for w, tgt in zip(mesh["weights"], prim["targets"], strict=True):
                pos = pos + w * accessor_array(g, binary, tgt["POSITION"])
        uv = accessor_array(g, binary, prim["attributes"]["TEXCOORD_0"]).astype(np.float64)
        tris = accessor_array(g, binary, prim["indices"]).astype(np.int64).reshape(-1, 3)
        parts.append({"name": mesh["name"], "pos": pos, "uv": uv, "tris": tris})
    return parts, atlas[..., :3]


def render(parts: list[dict], atlas: np.ndarray, yaw: float, size: int, dist: float = 0.6) -> np.ndarray:
    pos = np.concatenate([p["pos"] for p in parts])
    uv = np.concatenate([p["uv"] for p in parts])
    offs = np.cumsum([0] + [len(p["pos"]) for p in parts])
    tris = np.concatenate([p["tris"] + o for p, o in zip(parts, offs[:-1], strict=True)])
    c2w = orbit_camera_gl(yaw, 0.0, dist)
    f = size * 1.6
    intr = Intrinsics(f, f, size / 2, size / 2, size, size)
    xy, z = project_points(pos, c2w, intr)
    fid, bary = rasterize(xy, z, tris, size, size)
    out = np.full((size, size, 3), 60, np.uint8)
    hit = fid >= 0
    t = tris[fid[hit]]
    b = bary[hit][:, :, None]
    tuv = (b * uv[t]).sum(1)
    h, w = atlas.shape[:2]
    col = atlas[np.clip((tuv[:, 1] * h).astype(int), 0, h - 1), np.clip((tuv[:, 0] * w).astype(int), 0, w - 1)]
    n = np.cross(pos[t[:, 1]] - pos[t[:, 0]], pos[t[:, 2]] - pos[t[:, 0]])
    n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)
    view = c2w[:3, 2]
    shade = 0.35 + 0.65 * np.abs(n @ view)
    out[hit] = np.clip(col * shade[:, None], 0, 255).astype(np.uint8)
    return out


def uv_sheet(parts: list[dict], atlas: np.ndarray, size: int = 1024) -> np.ndarray:
    img = Image.fromarray(atlas).resize((size, size)).convert("RGB")
    d = ImageDraw.Draw(img)
    for p in parts:
        q = p["uv"] * size
        for a, b, c in p["tris"]:
            d.line([tuple(q[a]), tuple(q[b]), tuple(q[c]), tuple(q[a])], fill=(0, 255, 0), width=1)
    return np.asarray(img)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("asset", type=Path)
    ap.add_argument("-o", "--output", type=Path)
    ap.add_argument("--uv", type=Path)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--posed", action="store_true", help="apply the mesh's default morph weights")
    a = ap.parse_args()
    glb = a.asset if a.asset.suffix == ".glb" else a.asset / "head.glb"
    parts, atlas = load_parts(glb, a.posed)
    sheet = np.concatenate([render(parts, atlas, y, a.size) for y in YAWS], 1)
    out = a.output or glb.with_name("views.png")
    Image.fromarray(sheet).save(out)
    print(out)
    if a.uv:
        Image.fromarray(uv_sheet(parts, atlas)).save(a.uv)
        print(a.uv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
