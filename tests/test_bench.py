"""Quick smoke of scripts/bench.py's pieces on an analytic sphere field (seconds, CPU, no build)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import bench  # noqa: E402

from engine.avatar import Avatar  # noqa: E402
from engine.conventions import Intrinsics, orbit_camera_gl  # noqa: E402
from engine.field.model import RadianceField  # noqa: E402


def _sphere_avatar(radius: float = 0.1, res: int = 48) -> Avatar:
    photo = np.full((32, 32, 3), 0.5, np.float32)
    field = RadianceField(np.zeros(3), 0.2, res, 32, 4, photo, 30.0, 30.0, 16.0, 16.0, np.eye(4))
    lin = torch.linspace(-0.2, 0.2, res)
    zz, yy, xx = torch.meshgrid(lin, lin, lin, indexing="ij")
    with torch.no_grad():
        field.sdf.copy_((torch.sqrt(xx**2 + yy**2 + zz**2) - radius)[None, None])
        field.planes.normal_(0, 0.5)
    field.refresh_normals()
    manifest = {
        "canonical": {"scale": 1.0},
        "camera": {
            "cam2world": orbit_camera_gl(0.0, 0.0, 0.6).tolist(),
            "work": {"intrinsics": Intrinsics.from_fov(40.0, 64, 64).to_dict()},
        },
        "settings": {"n_coarse": 32, "n_fine": 8, "texture_size": 64, "max_faces": 2000},
    }
    return Avatar(Path("."), manifest, field)


def test_section_records_time_and_peak_memory():
    r: dict = {}
    with bench.section(r, "cpu"):
        np.ones(1_000_000).sum()
    assert r["seconds"] >= 0 and r["peak_rss_mb"] > 0
    assert r["peak_rss_scope"] in ("this section", "process so far")


def test_render_fast_vs_dense_on_sphere():
    av = _sphere_avatar()
    r = bench.bench_render(av, "cpu", size=48, repeats=1, dense_samples=256)
    assert r["fast"]["warm_median_s"] > 0 and r["dense"]["seconds"] > 0
    # The fast path and its dense twin agree on the analytic sphere.
    assert r["fast_vs_dense"]["alpha_mean_abs"] < 0.02
    assert r["fast_vs_dense"]["depth_mean_abs_mm"] < 3.0


def test_marching_cubes_texture_and_rig_detection():
    av = _sphere_avatar()
    r, (verts, faces) = bench.bench_marching_cubes(av.field, "cpu", 48)
    assert r["faces"] > 500 and r["total_s"] > 0
    # The mesh sits at the field's surface level: radius 0.1 + level.
    radius = np.linalg.norm(verts, axis=1).mean()
    assert abs(radius - (0.1 + av.field.surface_level)) < 0.004
    t = bench.bench_texture(av.field, 1.0, verts, faces, 64, 2000, "cpu")
    assert t["bake"]["seconds"] > 0 and t["faces"] <= 2000


def test_bars_compare_against_issue_2():
    report = {
        "builds": {"draft": {"seconds": 80.0}},
        "render": {"fast": {"warm_median_s": 2.5}},
        "marching_cubes": {"256": {"total_s": 1.0}},
    }
    b = bench.bars(report, "cpu")
    assert b["build_draft"]["pass"] is True
    assert b["render_512_fast"]["pass"] is False
    assert b["build_standard"]["pass"] is None


def test_markdown_section_from_a_report():
    from harness.sysinfo import stamp

    av = _sphere_avatar()
    mc, mesh = bench.bench_marching_cubes(av.field, "cpu", 32)
    report = {
        "stamp": {**stamp("cpu"), "device": {**stamp("cpu")["device"], "loadavg_at_end": [0.0, 0.0, 0.0]}},
        "builds": {"draft": {"seconds": 1.0, "peak_rss_mb": 1.0, "stages_s": {"fit": 0.5, "total": 1.0}}},
        "bundle": {"preset": "draft"},
        "render": bench.bench_render(av, "cpu", size=32, repeats=1, dense_samples=64),
        "marching_cubes": {"32": mc},
        "texture": bench.bench_texture(av.field, 1.0, *mesh, 32, 2000, "cpu"),
        "expressed_frame": {"status": "not available: test"},
        "posed_frame": {"status": "measured", "posed_s": 2.5, "rest_s": 1.0, "peak_rss_mb": 9.0, "entry_point": "e.p"},
    }
    report["bars"] = bench.bars(report, "cpu")
    md = bench.markdown(report)
    assert "| draft | 1.0 |" in md and "dense twin" in md and "not available: test" in md
    assert "| head-turned frame 512² | 2.500 | 9 | e.p: the same frame at rest 1.000 s |" in md
