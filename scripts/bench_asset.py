"""Time the pipeline's asset stage on a bundle: ``write_asset`` (fit, snap, layout, bake, GLB) then the manifest's
``asset_summary``, as the stage runs them, in a fresh process (so the UV layout's in-process cache is cold; the
on-disk one is used if present, see engine/asset/uvpack.py). Prints JSON: seconds in total and per step.

    python scripts/bench_asset.py BUNDLE [--texture-size 1024] [--out FOLDER] [--no-layout-cache] [--subdiv K]

The asset is written to --out (default a temporary folder), never into the bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _timed(module, name: str, totals: dict, label: str | None = None) -> None:
    """Wrap ``module.name`` so its wall time adds to ``totals[label or name]``."""
    fn = getattr(module, name)

    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            totals[label or name] += time.perf_counter() - t0

    setattr(module, name, wrapper)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--texture-size", type=int, default=1024, help="the draft preset's (1024)")
    ap.add_argument("--out", type=Path, default=None)
    no_cache = "neither read nor write the on-disk UV layout (LIKENESS_ASSET_LAYOUT_CACHE=0)"
    ap.add_argument("--no-layout-cache", action="store_true", help=no_cache)
    ap.add_argument("--subdiv", type=int, choices=(0, 1, 2), default=None, help="default: the build's")
    args = ap.parse_args(argv)
    t_import = time.perf_counter()
    import torch

    import engine.asset.build as build
    import engine.asset.snap as snap
    import engine.asset.stats as stats
    import engine.asset.uvpack as uvpack
    from engine.avatar import load_avatar

    if args.no_layout_cache:
        os.environ["LIKENESS_ASSET_LAYOUT_CACHE"] = "0"
    steps: dict[str, float] = defaultdict(float)
    _timed(build, "fit_to_landmarks", steps, "fit")
    _timed(build, "snap_skin", steps, "snap")
    _timed(snap, "intersecting_pairs", steps, "snap_untangle_crossings")
    _timed(build, "intersecting_pairs", steps, "info_crossings")
    _timed(stats, "intersecting_pairs", steps, "summary_crossings")
    _timed(build, "packed_parts", steps, "uv_layout")
    _timed(build, "bake", steps, "bake")
    _timed(build, "glb_bytes", steps, "glb")
    _timed(build, "lighting", steps, "lighting")
    _timed(build, "skin_levels", steps, "subdivision_levels")
    _timed(build, "skin_mesh", steps, "subdivided_skins")
    _timed(build, "skin_normal_map", steps, "normal_map")
    _timed(build, "roughness", steps, "roughness_map")
    _timed(build, "write_quad_obj", steps, "quad_objs")
    _timed(stats, "asset_summary", steps, "summary")
    _timed(uvpack, "atlas_layout", steps, "uv_layout_computed")
    t_import = time.perf_counter() - t_import
    avatar = load_avatar(args.bundle)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_asset_"))
    t0 = time.perf_counter()
    subdiv = build.SUBDIV_LEVELS if args.subdiv is None else args.subdiv
    build.write_asset(avatar, out, args.texture_size, source=str(args.bundle), subdiv=subdiv)
    t_write = time.perf_counter() - t0
    t1 = time.perf_counter()
    stats.asset_summary(out)
    t_summary = time.perf_counter() - t1
    print(
        json.dumps(
            {
                "command": " ".join([Path(sys.argv[0]).name, *argv]),
                "bundle": str(args.bundle),
                "texture_size": args.texture_size,
                "subdiv": subdiv,
                "out": str(out),
                "stage_s": round(t_write + t_summary, 2),
                "write_asset_s": round(t_write, 2),
                "asset_summary_s": round(t_summary, 2),
                "steps_s": {k: round(v, 2) for k, v in sorted(steps.items())},
                "import_s": round(t_import, 2),
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
