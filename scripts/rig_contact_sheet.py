"""Contact sheet of the expression rig: the photo's expression, the neutral face, then all 52 ARKit shapes at
weight 1, each a neural render of the bundle's radiance field, framing the face from the photo camera's direction
(turned by ``--yaw`` degrees).

python scripts/rig_contact_sheet.py BUNDLE [-o sheet.png] [--size 192] [--cols 9] [--yaw 0] [--fov 10]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.avatar import load_avatar
from engine.extract.export import rgba_u8
from engine.rig import deform_for_avatar, photo_weights
from engine.rig.arkit import ARKIT_NAMES
from engine.rig.measure import measurement_cameras

LABEL_H = 18


def _tile(avatar, cam, intr, weights: dict | None, label: str, size: int) -> np.ndarray:
    deform = None if weights is None else deform_for_avatar(avatar, weights)
    img = rgba_u8(avatar.render(cam, intr, deform=deform))
    a = img[..., 3:4].astype(np.float32) / 255.0
    rgb = (img[..., :3] * a + 235.0 * (1.0 - a)).astype(np.uint8)
    tile = Image.new("RGB", (size, size + LABEL_H), (255, 255, 255))
    tile.paste(Image.fromarray(rgb), (0, LABEL_H))
    ImageDraw.Draw(tile).text((4, 3), label, fill=(0, 0, 0))
    return np.asarray(tile)


def contact_sheet(bundle: Path, size: int = 192, cols: int = 9, yaw: float = 0.0, fov: float = 10.0) -> np.ndarray:
    avatar = load_avatar(bundle)
    cam, intr = measurement_cameras(avatar, size, fov, (yaw,))[0]
    items: list[tuple[str, dict | None]] = [("photo (as built)", None), ("neutral (all 0)", {})]
    items += [(n, {n: 1.0}) for n in ARKIT_NAMES]
    tiles = []
    t0 = time.perf_counter()
    for label, w in items:
        tiles.append(_tile(avatar, cam, intr, w, label, size))
    print(f"rendered {len(tiles)} tiles in {time.perf_counter() - t0:.1f} s; photo weights: {photo_weights(avatar)}")
    blank = np.full_like(tiles[0], 255)
    while len(tiles) % cols:
        tiles.append(blank)
    rows = [np.concatenate(tiles[i : i + cols], 1) for i in range(0, len(tiles), cols)]
    return np.concatenate(rows, 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("-o", "--output", default="rig_sheet.png")
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--cols", type=int, default=9)
    p.add_argument("--yaw", type=float, default=0.0, help="degrees, + toward the subject's left")
    p.add_argument("--fov", type=float, default=10.0, help="vertical field of view, degrees (face framing)")
    a = p.parse_args()
    sheet = contact_sheet(Path(a.bundle), a.size, a.cols, a.yaw, a.fov)
    Image.fromarray(sheet).save(a.output)
    print(f"wrote {a.output} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
