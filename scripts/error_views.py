"""Ground truth | ours | |difference| side by side for chosen views of an evaluation (what a PSNR hides: where the
error is).

    python scripts/error_views.py out/gt/tpl2_a out/eval/tpl2_a_draft/bundle -o out/eval/tpl2_a_errors.png
    python scripts/error_views.py GT BUNDLE -o F.png --views yaw+30_pitch+00,yaw+90_pitch+00
    python scripts/error_views.py GT BUNDLE -o F.png --silhouette   # where the silhouette IoU is lost

The views are scored as scripts/eval_fidelity.py scores them (harness.evaluate.evaluate: the camera alignment, our
render over the GT background); the difference is the mean absolute RGB error per pixel, times 3, in grey.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

DEFAULT_VIEWS = "yaw+30_pitch+00,yaw+90_pitch+00,yaw+180_pitch+00,yaw+00_pitch+20"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("gt", help="ground-truth folder (scripts/make_groundtruth.py)")
    p.add_argument("bundle", help="the bundle built from its input view")
    p.add_argument("-o", "--out", required=True, help="PNG to write")
    p.add_argument("--views", default=DEFAULT_VIEWS, help="comma-separated view names")
    p.add_argument("--silhouette", action="store_true", help="the third panel compares the silhouettes")
    a = p.parse_args(argv)
    from harness.evaluate import evaluate
    from harness.groundtruth import load_dataset
    from PIL import Image

    from engine.avatar import load_avatar, load_landmarks_world

    ds, av = load_dataset(a.gt), load_avatar(a.bundle)
    _, results = evaluate(av, load_landmarks_world(av), ds, "camera", log=lambda *_: None)
    by_name = {r.row["view"]: r for r in results}
    wanted = [v for v in a.views.split(",") if v]
    missing = [v for v in wanted if v not in by_name]
    if missing:
        print(f"error_views: no view {', '.join(missing)} in {a.gt}", file=sys.stderr)
        return 2
    rows = []
    for name in wanted:
        r = by_name[name]
        if a.silhouette:
            gt, ours = r.extra["gt_mask"], r.extra["ours_mask"]
            panel = np.zeros(gt.shape + (3,), np.uint8)
            panel[gt & ours] = 255
            panel[gt & ~ours] = (230, 40, 40)
            panel[ours & ~gt] = (40, 90, 230)
            print(
                f"{name}: IoU {r.row['iou']:.4f}, GT only {int((gt & ~ours).sum())} px, "
                f"ours only {int((ours & ~gt).sum())} px, both {int((gt & ours).sum())} px"
            )
        else:
            diff = np.abs(r.gt_rgb.astype(np.float64) - r.ours_rgb.astype(np.float64)).mean(-1)
            panel = np.stack([np.clip(diff * 3.0, 0, 255).astype(np.uint8)] * 3, -1)
        rows.append(np.concatenate([r.gt_rgb, r.ours_rgb, panel], 1))
    Image.fromarray(np.concatenate(rows, 0)).save(a.out)
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
