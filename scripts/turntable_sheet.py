"""360-degree turntable contact sheet of a bundle: clay, textured mesh and neural render all the way round.

    python scripts/turntable_sheet.py out/demo                      # -> out/demo_turntable_sheet.png
    python scripts/turntable_sheet.py out/demo -o sheet.png --size 320 --pitch 5

Columns: yaw 0 (front), +45, +90, 180 (back), -90, -45, from the bundle's own orbit camera
(``engine.avatar.load_avatar(...).orbit``: the photo's framing, orbiting the fitted head centre in the face's
frame). Rows:

1. clay -- the bundle's mesh (head.obj) rasterised (engine.extract.bake.mesh_maps) and shaded grey from its
   normals (a key light up-left of the camera, a fill from the right, a little ambient), so the shape reads
   without its colours;
2. textured -- the same mesh with the baked texture (texture.png), unlit, as a DCC viewport shows it;
3. neural -- the radiance field's render at the same camera.
All over mid grey; each tile labelled. The bundle is only read (through engine.io.bundle's resolver).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

YAWS = (0.0, 45.0, 90.0, 180.0, -90.0, -45.0)
GREY = np.array([0.5, 0.5, 0.5], np.float32)


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (V, 3), triangles (F, 3) and per-vertex UVs (V, 2) of the engine's OBJ (v/vt/vn share indices)."""
    v, vt, f = [], [], []
    with open(path) as fh:
        for line in fh:
            if line.startswith("v "):
                v.append([float(x) for x in line.split()[1:4]])
            elif line.startswith("vt "):
                vt.append([float(x) for x in line.split()[1:3]])
            elif line.startswith("f "):
                f.append([int(p.split("/")[0]) - 1 for p in line.split()[1:4]])
    return np.asarray(v, np.float64), np.asarray(f, np.int64), np.asarray(vt, np.float64)


def _raster(verts, faces, cam2world, intr):
    from engine.conventions import project_points
    from engine.extract.raster import rasterize

    xy, z = project_points(verts, cam2world, intr)
    ok = (z[faces] > 1e-6).all(1)
    fid, bary = rasterize(xy, z, faces[ok], intr.width, intr.height)
    return faces[ok], fid, bary


def clay(verts, faces, cam2world, intr) -> np.ndarray:
    """(H, W, 3) grey shading of the mesh from its interpolated normals, over mid grey."""
    from engine.extract.bake import mesh_maps

    mm = mesh_maps(verts, faces, cam2world, intr)
    n = mm["normal_world"]
    rot = cam2world[:3, :3]
    # Lights in camera space (gl: +X right, +Y up, camera looks down -Z), carried to the world.
    key = rot @ np.array([-0.5, 0.6, 0.65])
    fill = rot @ np.array([0.7, 0.0, 0.7])
    key, fill = key / np.linalg.norm(key), fill / np.linalg.norm(fill)
    shade = 0.15 + 0.7 * np.clip(n @ key, 0, 1) + 0.25 * np.clip(n @ fill, 0, 1)
    img = np.where(mm["mask"][..., None], np.clip(shade, 0, 1)[..., None] * np.array([0.86, 0.84, 0.80]), GREY)
    return img.astype(np.float32)


def textured(verts, faces, uv, texture: np.ndarray, cam2world, intr) -> np.ndarray:
    """(H, W, 3) the mesh with its texture (nearest texel, unlit), over mid grey."""
    fsel, fid, bary = _raster(verts, faces, cam2world, intr)
    out = np.tile(GREY, (intr.height, intr.width, 1))
    m = fid >= 0
    tri = fsel[fid[m]]
    st = (bary[m][:, :, None] * uv[tri]).sum(1)
    th, tw = texture.shape[:2]
    px = np.clip((st[:, 0] * tw).astype(int), 0, tw - 1)
    py = np.clip(((1.0 - st[:, 1]) * th).astype(int), 0, th - 1)
    out[m] = texture[py, px, :3].astype(np.float32) / 255.0
    return out


def _label(img: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    pil = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    d.rectangle([0, 0, pil.width, 13], fill=(0, 0, 0))
    d.text((3, 1), text, fill=(255, 255, 255))
    return np.asarray(pil)


def turntable_sheet(bundle: Path, size: int = 320, pitch: float = 5.0, yaws=YAWS, neural: bool = True) -> np.ndarray:
    """(3 * size, len(yaws) * size, 3) uint8 sheet: clay / textured / neural rows."""
    from PIL import Image

    from engine.avatar import load_avatar
    from engine.io.bundle import bundle_file

    avatar = load_avatar(bundle)
    m = avatar.manifest
    verts, faces, uv = read_obj(bundle_file(bundle, m, "obj"))
    tex = np.asarray(Image.open(bundle_file(bundle, m, "texture")).convert("RGB"))
    rows = {"clay": [], "textured": [], "neural": []}
    for y in yaws:
        cam, intr = avatar.orbit(y, pitch, size)
        tag = f"yaw {y:+.0f}" + (" (front)" if y == 0 else " (back)" if abs(y) == 180 else "")
        rows["clay"].append(_label(clay(verts, faces, cam, intr), f"clay {tag}"))
        rows["textured"].append(_label(textured(verts, faces, uv, tex, cam, intr), f"texture {tag}"))
        if neural:
            r = avatar.render(cam, intr)
            rows["neural"].append(_label(r["rgb"] + (1.0 - r["alpha"][..., None]) * GREY, f"neural {tag}"))
    return np.concatenate([np.concatenate(v, 1) for v in rows.values() if v], 0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle")
    p.add_argument("-o", "--output", help="PNG path (default: <bundle>_turntable_sheet.png beside the bundle)")
    p.add_argument("--size", type=int, default=320, help="tile side, pixels")
    p.add_argument("--pitch", type=float, default=5.0, help="camera elevation, degrees")
    p.add_argument("--no-neural", action="store_true", help="mesh rows only (fast)")
    a = p.parse_args(argv)
    from PIL import Image

    bundle = Path(a.bundle)
    out = Path(a.output) if a.output else bundle.parent / f"{bundle.name}_turntable_sheet.png"
    Image.fromarray(turntable_sheet(bundle, a.size, a.pitch, neural=not a.no_neural)).save(out)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
