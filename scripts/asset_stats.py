"""Print an asset's numbers as JSON: per part vertex/face counts, non-manifold edges, boundary loops (count,
length in cm), the skin's self-intersections, UV stretch and texel density (px/cm) over the face, texel density per
part, flipped UVs, UV overlap, atlas use (of the layout engine/asset/uvpack.py packs); and under "subdivided" the
same topology numbers for head_subd1.glb / head_subd2.glb where the asset has them.

    python scripts/asset_stats.py BUNDLE_OR_ASSET     (a bundle means its asset/ folder)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.asset.stats import asset_stats, subdivision_stats  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    folder = Path(argv[0])
    if not (folder / "head.glb").is_file() or not (folder / "asset.json").is_file():
        folder = folder / "asset"
    if not (folder / "asset.json").is_file():
        print(f"asset_stats: no asset in {argv[0]} (make one: likeness asset BUNDLE)", file=sys.stderr)
        return 2
    print(json.dumps({**asset_stats(folder), "subdivided": subdivision_stats(folder)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
