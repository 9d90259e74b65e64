"""Contact sheet of a bundle: photo crop | input render | novel views | turntable frames | depth | normal | texture.

python scripts/contact_sheet.py BUNDLE [-o sheet.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from engine.io.bundle import bundle_file, bundle_path, read_manifest


def _tile(path: Path, size: int) -> np.ndarray:
    img = Image.open(path)
    if img.mode == "I;16" or img.mode == "I":
        a = np.asarray(img, dtype=np.float32) / 65535.0
        img = Image.fromarray((a * 255).astype(np.uint8)).convert("RGB")
    elif img.mode == "RGBA":
        bg = Image.new("RGBA", img.size, (128, 128, 128, 255))
        img = Image.alpha_composite(bg, img).convert("RGB")
    else:
        img = img.convert("RGB")
    return np.asarray(img.resize((size, size), Image.LANCZOS))


def contact_sheet(bundle: Path, size: int = 256) -> np.ndarray:
    """Every image is read through engine.io.bundle's resolver: nothing outside the bundle is opened."""
    m = read_manifest(bundle)
    first = [bundle_file(bundle, m, k) for k in ("photo_crop", "input_render")]
    first += [bundle_path(bundle, v.get("file"), f"views.{k}.file") for k, v in (m.get("views") or {}).items()]
    frames = m.get("turntable_frames") or []
    second = [bundle_path(bundle, frames[i * len(frames) // 6], "turntable_frames") for i in range(6)] if frames else []
    third = [bundle_file(bundle, m, k) for k in ("depth_png", "normal", "alpha", "texture")]
    rows = []
    for paths in (first, second, third):
        tiles = [_tile(p, size) for p in paths]
        while len(tiles) < 6:
            tiles.append(np.full((size, size, 3), 255, np.uint8))
        rows.append(np.concatenate(tiles, 1))
    return np.concatenate(rows, 0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("bundle")
    p.add_argument("-o", "--output")
    p.add_argument("--size", type=int, default=256)
    a = p.parse_args()
    out = a.output or str(Path(a.bundle) / "contact_sheet.png")
    Image.fromarray(contact_sheet(Path(a.bundle), a.size)).save(out)
    print(out)


if __name__ == "__main__":
    main()
