"""Render calibrated multi-view ground truth of a textured head with bpy (Cycles on the CPU, or Workbench).

    python scripts/make_groundtruth.py --head synthetic -o out/gt/synthetic
    python scripts/make_groundtruth.py --head LeePerrySmith -o out/gt/lps --size 512 --samples 64
    python scripts/make_groundtruth.py --head LeePerrySmith --grid full -o out/gt/lps_full
    python scripts/make_groundtruth.py --head synthetic --grid turntable --frames 36 --size 384 -o out/gt/syn_tt

Views: the input view (``--input-yaw/--input-pitch``, default frontal) plus a grid: ``--grid default`` covers yaw
+-``--yaw-max`` and pitch +-``--pitch-max``; ``--grid full`` goes all the way round (yaw 0, +-30, +-60, +-90,
+-120, +-150, 180 at pitch 0, plus pitch +-20 at yaw 0); ``--grid turntable`` renders ``--frames`` views
360/frames apart at ``--turntable-pitch`` (as the engine's turntable, for scripts/turntable_defects.py). All orbit
the head centre at ``--distance`` metres with one camera (``--fov`` vertical degrees, or ``--focal-35mm``). Writes
RGB PNGs over ``--background``, silhouettes (Blender's alpha > 0.5), z-depth EXRs (metres) of the same mesh
rasterised exactly from the same cameras, and ``cameras.json`` in the engine's conventions (gl cam2world 4x4 in
the GT frame, intrinsics fx, fy, cx, cy, width, height). The GT frame and where each depth and mask came from are
written into ``cameras.json``.

LeePerrySmith is read from ../shared/eval/heads (never copied); when it is absent the script says so and exits 0.
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
from harness import groundtruth as gt  # noqa: E402
from harness.heads import get_head  # noqa: E402

from engine.conventions import CONVENTIONS_DOC  # noqa: E402

GT_FRAME = (
    "GT frame: metres, +Y up, the face looks toward +Z, +X is the subject's left (the engine world's axes); "
    "origin at the centre of the head (synthetic: by construction; LeePerrySmith: the bounding-box centre of the "
    "scan above the neck, scaled by 0.043 m per scan unit). Differs from a bundle's world by a similarity."
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--head", default="synthetic", help="synthetic | LeePerrySmith | template-a ... template-d")
    p.add_argument("-o", "--out", required=True, help="output folder (under out/ or /tmp)")
    p.add_argument("--size", type=int, default=512, help="image side, pixels")
    p.add_argument("--fov", type=float, default=30.0, help="vertical field of view, degrees (0: use --focal-35mm)")
    p.add_argument("--focal-35mm", type=float, default=50.0, help="35 mm-equivalent focal when --fov is 0")
    p.add_argument("--distance", type=float, default=0.85, help="camera distance from the head centre, metres")
    p.add_argument("--input-yaw", type=float, default=0.0)
    p.add_argument("--input-pitch", type=float, default=0.0)
    p.add_argument("--yaw-max", type=float, default=45.0)
    p.add_argument("--yaw-step", type=float, default=15.0)
    p.add_argument("--pitch-max", type=float, default=20.0)
    p.add_argument("--pitch-step", type=float, default=20.0)
    p.add_argument(
        "--grid",
        default="default",
        choices=("default", "full", "turntable"),
        help="default: yaw +-yaw-max x pitch +-pitch-max; full: all the way round (yaw 0, +-30 ... +-150, 180 at "
        "pitch 0, pitch +-20 at yaw 0); turntable: --frames yaws at --turntable-pitch",
    )
    p.add_argument("--frames", type=int, default=36, help="--grid turntable: number of frames")
    p.add_argument("--turntable-pitch", type=float, default=5.0, help="--grid turntable: camera pitch, degrees")
    p.add_argument("--views", default="", help="explicit 'yaw:pitch,yaw:pitch' list instead of the grid")
    p.add_argument("--engine", default="cycles", choices=("cycles", "workbench"))
    p.add_argument("--samples", type=int, default=64, help="Cycles samples per pixel")
    p.add_argument("--lighting", default="studio", choices=("studio", "flat"))
    p.add_argument("--background", default="0.62,0.66,0.70", help="background RGB in [0, 1]")
    p.add_argument("--threads", type=int, default=0, help="Cycles CPU threads (0 = all)")
    p.add_argument("--tex-size", type=int, default=1024, help="synthetic head: texture height (width is twice)")
    return p.parse_args(argv)


def _views(a) -> list[tuple[str, float, float]]:
    if a.views:
        pairs = [tuple(float(x) for x in s.split(":")) for s in a.views.split(",") if s]
    elif a.grid == "full":
        pairs = gt.full_grid()
    elif a.grid == "turntable":
        # Every frame is a view (frame 0 included, even where it repeats the input camera).
        return [("input", a.input_yaw, a.input_pitch)] + [
            (f"frame_{i:03d}", y, p) for i, (y, p) in enumerate(gt.turntable_grid(a.frames, a.turntable_pitch))
        ]
    else:
        pairs = gt.grid(a.yaw_max, a.yaw_step, a.pitch_max, a.pitch_step)
    out = [("input", a.input_yaw, a.input_pitch)]
    out += [(gt.view_name(y, p), y, p) for y, p in pairs if (y, p) != (a.input_yaw, a.input_pitch)]
    return out


def make_groundtruth(a) -> dict | None:
    """Render the dataset described by the parsed arguments ``a``; returns cameras.json's content, or None when
    the head's source files are absent."""
    from harness.blender_render import RenderSettings, render_views
    from PIL import Image

    from engine.extract.bake import mesh_maps
    from engine.io.exr import write_exr_depth
    from engine.metrics import iou

    parts = get_head(a.head, tex_size=a.tex_size)
    if parts is None:
        print(f"skipped: the {a.head} head is not available (../shared/eval/heads absent)")
        return None
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    intr = gt.intrinsics_for(a.fov, a.focal_35mm, a.size)
    bg = np.array([float(x) for x in a.background.split(",")], np.float64)
    settings = RenderSettings(a.engine, a.samples, a.lighting, a.threads)
    views = _views(a)
    cams = {name: gt.camera(y, p, a.distance) for name, y, p in views}
    verts = np.concatenate([p.verts for p in parts])
    offsets = np.cumsum([0] + [len(p.verts) for p in parts[:-1]])
    faces = np.concatenate([p.faces + o for p, o in zip(parts, offsets, strict=True)])

    meta_views = {}
    t0 = time.perf_counter()
    jobs = [(name, cams[name], intr) for name, _, _ in views]
    angles = {name: (y, p) for name, y, p in views}
    for name, rgba in render_views(parts, jobs, settings):
        alpha = rgba[..., 3:4].astype(np.float64) / 255.0
        rgb = rgba[..., :3].astype(np.float64) / 255.0 * alpha + bg * (1.0 - alpha)
        mask = alpha[..., 0] > 0.5
        mm = mesh_maps(verts, faces, cams[name], intr)
        depth = np.where(mm["mask"], mm["depth_m"], 0.0).astype(np.float32)
        Image.fromarray((rgb * 255.0 + 0.5).astype(np.uint8)).save(out / f"{name}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(out / f"{name}_mask.png")
        write_exr_depth(str(out / f"{name}_depth.exr"), depth)
        y, p = angles[name]
        meta_views[name] = {
            "yaw_deg": y,
            "pitch_deg": p,
            "distance_m": a.distance,
            "cam2world": cams[name].tolist(),
            "intrinsics": intr.to_dict(),
            "rgb": f"{name}.png",
            "mask": f"{name}_mask.png",
            "depth": f"{name}_depth.exr",
            # Camera-consistency check: Blender's silhouette against the exact rasterised one.
            "blender_vs_raster_iou": round(iou(mask, mm["mask"]), 4),
        }
        check = meta_views[name]["blender_vs_raster_iou"]
        print(f"  {name}: {time.perf_counter() - t0:.1f} s, silhouette check IoU {check}")
    meta = {
        "format": gt.FORMAT,
        "format_version": gt.FORMAT_VERSION,
        "head": a.head,
        "frame": GT_FRAME,
        "conventions": CONVENTIONS_DOC,
        "input_view": "input",
        "grid": "explicit" if a.views else a.grid,
        "focal_35mm": gt.focal_35mm_of(intr),
        "background_rgb": bg.tolist(),
        "render": {
            "engine": a.engine,
            "samples": a.samples if a.engine == "cycles" else None,
            "lighting": a.lighting,
            "size": a.size,
            "fov_y_deg": intr.fov_y_deg(),
            "distance_m": a.distance,
            "seconds": round(time.perf_counter() - t0, 2),
        },
        "sources": {
            "rgb": "bpy render (straight alpha) composited over background_rgb, sRGB 8-bit",
            "mask": "Blender's alpha > 0.5",
            "depth": "z-depth of the same triangles rasterised from the same camera (engine.extract.bake.mesh_maps)",
        },
        "command": " ".join(sys.argv),
        "views": meta_views,
    }
    (out / "cameras.json").write_text(json.dumps(meta, indent=1))
    return meta


def main(argv=None) -> int:
    a = parse_args(argv)
    meta = make_groundtruth(a)
    if meta is not None:
        print(f"{len(meta['views'])} views in {meta['render']['seconds']} s -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
