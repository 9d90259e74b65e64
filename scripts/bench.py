"""Speed benchmarks as JSON: photo -> bundle per preset (with the manifest's per-stage times), one 512^2 render
on the fast path and on its dense twin in the same run, marching cubes at 256^3 and 512^3, the texture bake,
an expressed frame when engine.rig exists, and peak RAM / VRAM per section.

    python scripts/bench.py                                  # draft, CPU
    python scripts/bench.py --presets draft,standard -o out/bench/cpu.json
    python scripts/bench.py --device cuda --presets draft,standard   # on a GPU machine

Timings on a shared machine are inflated by the other processes; the JSON records the load average at the
start and end so a reader can tell.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.pipeline import STAGE_NAMES as STAGES  # noqa: E402

# issue 2's speed bar, seconds
BARS = {
    "cpu": {"build_draft": 90.0, "build_standard": 300.0, "render_512_fast": 2.0, "mc_256_total": 3.0},
    "cuda": {"build_standard": 15.0, "render_512_fast": 0.010},
}
RIG_ENTRY_POINT = "expressed_frame_seconds"


# ---------------------------------------------------------------------------------------------- measuring
def _rss_peak_mb() -> float | None:
    """Peak resident set size since the last reset (Linux VmHWM), MiB; falls back to ru_maxrss."""
    try:
        m = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
        return int(m.group(1)) / 1024.0
    except (OSError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextmanager
def section(result: dict, device: str):
    """Time a block (wall seconds, after a device sync) and record its peak RAM and VRAM into ``result``."""
    per_section = _reset_rss_peak()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t0 = time.perf_counter()
    yield result
    sync(device)
    result["seconds"] = round(time.perf_counter() - t0, 4)
    result["peak_rss_mb"] = round(_rss_peak_mb(), 1)
    result["peak_rss_scope"] = "this section" if per_section else "process so far"
    if device.startswith("cuda"):
        result["peak_vram_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)


# ---------------------------------------------------------------------------------------------- pieces
def bench_build(quality: str, device: str, out_dir: Path) -> dict:
    from engine.config import preset
    from engine.io.images import demo_photo
    from engine.pipeline import build_avatar

    photo = demo_photo()
    r: dict = {"preset": quality, "photo": "skimage astronaut 512x512"}
    with section(r, device):
        m = build_avatar(photo, preset(quality, device=device), out_dir, source_name="astronaut.png")
    r["stages_s"] = m["timings_s"]
    r["input_psnr_db"] = m["metrics"]["input_psnr_db"]
    r["faces"] = m["metrics"]["faces"]
    return r


def bench_render(avatar, device: str, size: int = 512, repeats: int = 3, dense_samples: int = 512) -> dict:
    """The same 512^2 camera on the fast path (warm median of ``repeats``) and on the dense twin (once)."""
    from engine.render.renderer import RenderOptions

    cam, intr = avatar.orbit(20.0, 5.0, size)
    s = avatar.manifest["settings"]
    fast_opts = RenderOptions(n_coarse=s["n_coarse"], n_fine=s["n_fine"])
    r: dict = {"size": size, "camera": "yaw 20, pitch 5", "fast": {"n_coarse": s["n_coarse"], "n_fine": s["n_fine"]}}
    with section(r["fast"], device) as fr:
        first = avatar.render(cam, intr, fast_opts)
    r["fast"]["first_s"] = r["fast"].pop("seconds")
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fast = avatar.render(cam, intr, fast_opts)
        sync(device)
        times.append(time.perf_counter() - t0)
    fr["warm_median_s"] = round(float(np.median(times)), 4)
    fr["warm_min_s"] = round(float(np.min(times)), 4)
    fr["repeats"] = repeats
    r["dense"] = {"n_dense": dense_samples}
    with section(r["dense"], device):
        dense = avatar.render(cam, intr, RenderOptions(dense=True, n_dense=dense_samples))
    both = (fast["alpha"] > 0.5) & (dense["alpha"] > 0.5)
    r["fast_vs_dense"] = {
        "alpha_mean_abs": float(np.abs(fast["alpha"] - dense["alpha"]).mean()),
        "rgb_mean_abs_on_surface": float(np.abs(fast["rgb"] - dense["rgb"])[both].mean()) if both.any() else None,
        "depth_mean_abs_mm": float(np.abs(fast["depth_m"] - dense["depth_m"])[both].mean() * 1e3)
        if both.any()
        else None,
        "speedup": round(r["dense"]["seconds"] / max(fr["warm_median_s"], 1e-9), 1),
    }
    del first
    return r


def bench_marching_cubes(field, device: str, res: int) -> dict:
    """Sample the field's SDF on a res^3 lattice over its box, then PyMCubes."""
    from engine.extract.from_field import sdf_lattice
    from engine.extract.mesh import marching_cubes

    r: dict = {"res": res, "sample": {}, "mcubes": {}}
    with section(r["sample"], device):
        vals, lo, hi = sdf_lattice(field, res)
    with section(r["mcubes"], device):
        verts, faces = marching_cubes(vals, field.surface_level, lo, hi)
    r["total_s"] = round(r["sample"]["seconds"] + r["mcubes"]["seconds"], 4)
    r["faces"] = int(len(faces))
    del vals
    return r, (verts, faces)


def bench_texture(field, scale: float, verts, faces, size: int, max_faces: int, device: str) -> dict:
    from engine.extract.bake import bake_texture
    from engine.extract.from_field import colour_fn
    from engine.extract.mesh import clean_mesh
    from engine.extract.uv import spherical_unwrap

    r: dict = {"texture_size": size, "clean": {}, "unwrap": {}, "bake": {}}
    with section(r["clean"], device):
        v, f = clean_mesh(verts / scale, faces, max_faces)
    with section(r["unwrap"], device):
        v, f, uv, _ = spherical_unwrap(v, f)
    with section(r["bake"], device):
        bake_texture(v, f, uv, colour_fn(field, scale), size)
    r["faces"] = int(len(f))
    return r


def bench_expressed_frame(avatar, device: str, size: int = 512) -> dict:
    """One expressed 512^2 neural frame through engine.rig's own benchmark entry point
    (``expressed_frame_seconds``: warp built from scratch + render, beside a neutral render), when the rig
    exists in this checkout."""
    if importlib.util.find_spec("engine.rig") is None:
        return {"status": "not available: engine.rig does not exist in this checkout"}
    rig = importlib.import_module("engine.rig")
    entry = getattr(rig, RIG_ENTRY_POINT, None)
    if not callable(entry):
        return {"status": f"not available: engine.rig has no {RIG_ENTRY_POINT}()"}
    r: dict = {"entry_point": f"engine.rig.{RIG_ENTRY_POINT}"}
    with section(r, device):
        r.update(entry(avatar, size=size, repeats=1))
    r["status"] = "measured"
    return r


def bench_posed_frame(avatar, device: str, size: int = 512) -> dict:
    """One 512^2 neural frame with the head bone turned (engine.asset.skinning.posed_frame_seconds, the pose's warp
    built from scratch), beside the frame at rest; when the bundle has joints to pose."""
    from engine.errors import LikenessError

    if importlib.util.find_spec("engine.asset.skinning") is None:
        return {"status": "not available: engine.asset.skinning does not exist in this checkout"}
    from engine.asset.skinning import posed_frame_seconds

    r: dict = {"entry_point": "engine.asset.skinning.posed_frame_seconds"}
    try:
        with section(r, device):
            r.update(posed_frame_seconds(avatar, size=size, repeats=2))
    except LikenessError as exc:
        return {"status": f"not available: {exc.message}"}
    r["status"] = "measured"
    return r


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--presets", default="draft", help="comma list of draft, standard, high")
    p.add_argument("--mc", default="256,512", help="marching-cubes resolutions")
    p.add_argument("--bundle", help="use this bundle for the render/MC/bake sections instead of the last build")
    p.add_argument("--skip-build", action="store_true", help="no photo->bundle (needs --bundle)")
    p.add_argument("--render-repeats", type=int, default=5)
    p.add_argument("--keep", action="store_true", help="keep the benchmark's bundles (in a temporary folder)")
    p.add_argument("-o", "--out", default="", help="JSON path (default out/bench/bench_<device>.json)")
    return p.parse_args(argv)


def run(a) -> dict:
    from harness.sysinfo import stamp

    from engine.avatar import load_avatar, torch_device

    device = torch_device(a.device)
    if device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(0)}", flush=True)
    report: dict = {"stamp": stamp(device), "builds": {}, "notes": []}
    tmp = Path(tempfile.mkdtemp(prefix="likeness_bench_"))
    bundle = Path(a.bundle) if a.bundle else None
    if not a.skip_build:
        for q in [q for q in a.presets.split(",") if q]:
            print(f"build {q} ...", flush=True)
            report["builds"][q] = bench_build(q, device, tmp / q)
            print(f"  {report['builds'][q]['seconds']:.1f} s", flush=True)
            bundle = Path(a.bundle) if a.bundle else tmp / q  # the last (highest) preset built
    if bundle is None:
        raise SystemExit("nothing to render: give --bundle or build a preset")
    avatar = load_avatar(bundle, device=device)
    report["bundle"] = {"path": str(bundle), "preset": avatar.manifest["settings"]["quality"]}
    print("render 512^2 fast vs dense ...", flush=True)
    report["render"] = bench_render(avatar, device, repeats=a.render_repeats)
    report["marching_cubes"] = {}
    mesh = None
    for res in [int(x) for x in a.mc.split(",") if x]:
        print(f"marching cubes {res}^3 ...", flush=True)
        r, m = bench_marching_cubes(avatar.field, device, res)
        report["marching_cubes"][str(res)] = r
        mesh = m if res == 256 or mesh is None else mesh
    s = avatar.manifest["settings"]
    print("texture bake ...", flush=True)
    report["texture"] = bench_texture(avatar.field, avatar.scale, *mesh, s["texture_size"], s["max_faces"], device)
    report["expressed_frame"] = bench_expressed_frame(avatar, device)
    print("posed frame ...", flush=True)
    report["posed_frame"] = bench_posed_frame(avatar, device)
    report["bars"] = bars(report, "cuda" if device.startswith("cuda") else "cpu")
    report["stamp"]["device"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if a.keep:
        report["notes"].append(f"bundles kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def bars(report: dict, kind: str) -> dict:
    """Issue 2's speed bar next to what was measured (pass/fail; the load average is in the stamp)."""
    got = {
        "build_draft": report["builds"].get("draft", {}).get("seconds"),
        "build_standard": report["builds"].get("standard", {}).get("seconds"),
        "render_512_fast": report["render"]["fast"]["warm_median_s"],
        "mc_256_total": report["marching_cubes"].get("256", {}).get("total_s"),
    }
    out = {}
    for k, limit in BARS[kind].items():
        v = got.get(k)
        out[k] = {"limit_s": limit, "measured_s": v, "pass": None if v is None else bool(v <= limit)}
    return out


def _s(v, digits=2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _frame_row(label: str, r: dict, seconds_key: str, note: str) -> str:
    """The table row of one 512² frame section (the expressed, the head-turned), or its status when not measured."""
    if r.get("status") != "measured":
        return f"| {label} | - | - | {r['status']} |"
    seconds, ram = _s(r.get(seconds_key), 3), _s(r.get("peak_rss_mb"), 0)
    return f"| {label} 512² | {seconds} | {ram} | {r['entry_point']}: {note} |"


def markdown(r: dict) -> str:
    """The run as a Markdown section for docs/benchmarks.md."""
    st, dev = r["stamp"], r["stamp"]["device"]
    name = dev.get("cuda_device") or f"{dev.get('cpu_model', dev['cpu'])}, {dev['cpu_count']} cores"
    lines = [
        f"### {dev['requested']}: {name}",
        "",
        f"`{st['command']}` — commit {st['git_commit']}, {st['when']}, torch {st['versions']['torch']}, "
        f"Python {st['versions']['python']}; load average {dev.get('loadavg_1_5_15')} at the start, "
        f"{dev.get('loadavg_at_end')} at the end.",
        "",
        "| photo -> bundle | total s | " + " | ".join(STAGES) + " | peak RAM MiB |",
        "| --- | --- | " + " | ".join("---" for _ in STAGES) + " | --- |",
    ]
    for q, b in r["builds"].items():
        st_s = b["stages_s"]
        lines.append(
            f"| {q} | {_s(b['seconds'], 1)} | "
            + " | ".join(_s(st_s.get(k), 1) for k in STAGES)
            + f" | {_s(b['peak_rss_mb'], 0)} |"
        )
    rd = r["render"]
    fvd = rd["fast_vs_dense"]
    lines += [
        "",
        "| piece | seconds | peak RAM MiB | note |",
        "| --- | --- | --- | --- |",
        f"| 512² render, fast path ({rd['fast']['n_coarse']}+{rd['fast']['n_fine']} samples) | "
        f"{_s(rd['fast']['warm_median_s'], 3)} (min {_s(rd['fast'].get('warm_min_s'), 3)}) | "
        f"{_s(rd['fast']['peak_rss_mb'], 0)} | median of {rd['fast']['repeats']} warm renders, {rd['camera']} |",
        f"| 512² render, dense twin ({rd['dense']['n_dense']} samples) | {_s(rd['dense']['seconds'], 3)} | "
        f"{_s(rd['dense']['peak_rss_mb'], 0)} | fast path {fvd['speedup']}x faster; mean abs alpha diff "
        f"{fvd['alpha_mean_abs']:.4f}, depth {_s(fvd['depth_mean_abs_mm'])} mm |",
    ]
    for res, m in r["marching_cubes"].items():
        lines.append(
            f"| marching cubes {res}³ | {_s(m['total_s'], 3)} | {_s(m['sample']['peak_rss_mb'], 0)} | "
            f"field sampling {_s(m['sample']['seconds'], 3)} s + PyMCubes {_s(m['mcubes']['seconds'], 3)} s, "
            f"{m['faces']} faces |"
        )
    t = r["texture"]
    lines.append(
        f"| texture bake {t['texture_size']}² | {_s(t['bake']['seconds'], 3)} | {_s(t['bake']['peak_rss_mb'], 0)} | "
        f"after clean-up to {t['faces']} faces ({_s(t['clean']['seconds'], 3)} s) and unwrap |"
    )
    e, pf = r["expressed_frame"], r.get("posed_frame", {"status": "not measured"})
    build, rest = _s(e.get("warp_build_s"), 3), _s(pf.get("rest_s"), 3)
    lines.append(_frame_row("expressed frame", e, "expressed_s", f"warp build {build} s + render"))
    lines.append(_frame_row("head-turned frame", pf, "posed_s", f"the same frame at rest {rest} s"))
    if "peak_vram_mb" in rd["fast"]:
        lines.append(f"| peak VRAM, dense render | - | {_s(rd['dense'].get('peak_vram_mb'), 0)} MiB | |")

    def verdict(v):
        return {True: "pass", False: "FAIL", None: "-"}[v["pass"]]

    lines += [
        "",
        f"Render, marching cubes, bake and expressed frame use the {r['bundle']['preset']} bundle.",
        "",
        "Issue 2's bar: "
        + "; ".join(f"{k} {_s(v['measured_s'], 2)} s / {v['limit_s']} s {verdict(v)}" for k, v in r["bars"].items())
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    a = parse_args(argv)
    report = run(a)
    out = Path(a.out or f"out/bench/bench_{a.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report))
    print(json.dumps(report, indent=1))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
