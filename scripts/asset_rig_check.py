"""Does each of an asset's 52 ARKit morph targets move only what it names? Prints JSON (engine/asset/rig.py
rig_report: per key the largest motion per part, the skin's motion below the chin, at the neck cut and on the
scalp; jawOpen's lower teeth and tongue against the chin; eyeLook*'s eyeball rigidity and eye corners) and writes a
heat-map contact sheet: each key at weight 1, front view, per-vertex displacement magnitude as colour.

    python scripts/asset_rig_check.py ASSET_OR_BUNDLE [-o rig_heat.png] [--size 256] [--scale-mm 10]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.asset.rig import rig_report  # noqa: E402
from engine.extract.raster import rasterize  # noqa: E402
from engine.prior import load_prior  # noqa: E402
from engine.rig.arkit import ARKIT_NAMES  # noqa: E402
from engine.rig.asset_rig import read_asset_keys  # noqa: E402


def template_indexed(glb: Path, n_vertices: int) -> tuple[np.ndarray, np.ndarray, list[str], list[np.ndarray]]:
    """From an asset GLB (engine.rig.asset_rig.read_asset_keys): neutral positions (V, 3) and deltas (52, V, 3) by
    template vertex id, padded to the prior's ``n_vertices``, the key names (ARKit order) and each template part's
    triangles in template ids, for rendering (the hair, not on the template, is left out)."""
    keys = read_asset_keys(glb)
    verts = np.zeros((n_vertices, 3))
    deltas = np.zeros((len(ARKIT_NAMES), n_vertices, 3))
    verts[: len(keys.basis)], deltas[:, : len(keys.basis)] = keys.basis, keys.deltas
    return verts, deltas, list(ARKIT_NAMES), [tris for _, tris in keys.parts.values()]


def heat_colour(x: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1] -> (N, 3) uint8, dark blue -> cyan -> yellow -> red (matplotlib's turbo)."""
    from matplotlib import colormaps

    return (colormaps["turbo"](np.clip(x, 0.0, 1.0))[:, :3] * 255).astype(np.uint8)


def render_heat(verts, tris, value, size: int, box: tuple) -> np.ndarray:
    """Front orthographic view (looking down -Z) of ``tris`` on ``verts`` coloured by ``value`` (V,) in [0, 1],
    shaded by the facing ratio; ``box`` = (x0, y0, extent) metres."""
    x0, y0, ext = box
    xy = np.stack([(verts[:, 0] - x0) / ext * size, (y0 + ext - verts[:, 1]) / ext * size], 1)
    fid, bary = rasterize(xy, -verts[:, 2], tris, size, size)
    out = np.full((size, size, 3), 40, np.uint8)
    hit = fid >= 0
    t = tris[fid[hit]]
    val = (bary[hit] * value[t]).sum(1)
    n = np.cross(verts[t[:, 1]] - verts[t[:, 0]], verts[t[:, 2]] - verts[t[:, 0]])
    shade = 0.45 + 0.55 * np.abs(n[:, 2]) / np.linalg.norm(n, axis=1).clip(1e-15)
    out[hit] = (heat_colour(val) * shade[:, None]).astype(np.uint8)
    return out


def contact_sheet(verts, deltas, names, meshes, size: int, scale_m: float, cols: int = 8) -> np.ndarray:
    tris = np.concatenate(meshes)
    used = np.unique(tris)
    lo, hi = verts[used].min(0), verts[used].max(0)
    ext = 1.08 * float(max(hi[0] - lo[0], hi[1] - lo[1]))
    box = (0.5 * (lo[0] + hi[0]) - ext / 2, 0.5 * (lo[1] + hi[1]) - ext / 2, ext)
    rows = -(-(len(names) + 1) // cols)
    sheet = Image.new("RGB", (cols * size, rows * (size + 14)), (20, 20, 20))
    draw = ImageDraw.Draw(sheet)
    for k, name in enumerate(names):
        mag = np.linalg.norm(deltas[k], axis=1)
        tile = render_heat(verts + deltas[k], tris, mag / scale_m, size, box)
        r, c = divmod(k, cols)
        sheet.paste(Image.fromarray(tile), (c * size, r * (size + 14) + 14))
        draw.text((c * size + 3, r * (size + 14) + 1), f"{name} {1000 * mag.max():.1f}mm", fill=(230, 230, 230))
    r, c = divmod(len(names), cols)  # the colour bar in the last tile
    bar = heat_colour(np.linspace(0, 1, size))[None].repeat(20, 0)
    sheet.paste(Image.fromarray(bar), (c * size, r * (size + 14) + 40))
    draw.text((c * size + 3, r * (size + 14) + 20), f"|delta| 0 .. {1000 * scale_m:g} mm (clipped)", fill=(230,) * 3)
    return np.asarray(sheet)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("asset", type=Path)
    ap.add_argument("-o", "--output", type=Path, help="the heat-map sheet (default: ASSET/rig_heat.png)")
    ap.add_argument("--size", type=int, default=256, help="pixels per tile")
    ap.add_argument("--scale-mm", type=float, default=10.0, help="the displacement shown as the hottest colour")
    a = ap.parse_args(argv)
    # a bundle's own head.glb is the scan mesh: its asset is in asset/ (ASSET may be either folder)
    folder = a.asset / "asset" if (a.asset / "asset" / "head.glb").is_file() else a.asset
    if not (folder / "head.glb").is_file():
        print(f"asset_rig_check: no asset in {a.asset} (make one: likeness asset BUNDLE)", file=sys.stderr)
        return 2
    prior = load_prior()
    verts, deltas, names, meshes = template_indexed(folder / "head.glb", len(prior.vertices))
    report = {"asset": str(folder), **rig_report(prior, verts, deltas, names)}
    out = a.output or folder / "rig_heat.png"
    Image.fromarray(contact_sheet(verts, deltas, names, meshes, a.size, a.scale_mm / 1000.0)).save(out)
    report["heat_map"] = str(out)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
