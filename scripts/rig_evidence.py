"""The expression rig's evidence on neural renders of a bundle (engine/rig/measure.py evidence: jawOpen's lip gap,
eyeBlinkLeft's eye-aspect-ratio change on both eyes over three views, the smiles' corner rise, the render ->
landmarks -> weights round trip), measured with mediapipe; prints JSON. ``--rig asset`` moves the field by the
asset's template keys, ``--rig proxy`` by the bundle's proxy rig; ``auto`` (default) the asset's when there is one
(docs/RIG.md).

    python scripts/rig_evidence.py BUNDLE [--rig auto|proxy|asset] [--size 256]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import RIG_SOURCES  # noqa: E402
from engine.errors import LikenessError  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle")
    p.add_argument("--rig", choices=RIG_SOURCES, default="auto")
    p.add_argument("--size", type=int, default=256)
    a = p.parse_args(argv)
    from engine.avatar import load_avatar
    from engine.rig.measure import evidence

    t0 = time.perf_counter()
    try:
        out = evidence(load_avatar(a.bundle), a.size, rig=a.rig)
    except LikenessError as e:
        print(f"rig_evidence: {e.one_line()}", file=sys.stderr)
        return 2
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
