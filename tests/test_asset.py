"""The artist asset (engine/asset, docs/ASSET.md): the pure pieces on small inputs, then one real asset of the
session's draft bundle read back by the stats, the Khronos validator and Blender (import GLB, export FBX,
import FBX)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from prior_support import prepared_prior

from engine.asset.measure import boundary_loops, intersecting_pairs, uv_stretch
from engine.asset.snap import find_surface, smooth_displacement

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / ".venv" / "node" / "node_modules"


def test_find_surface_on_a_sphere():
    sdf = lambda p: np.linalg.norm(p, axis=1) - 0.1  # noqa: E731
    pts = np.array([[0.0, 0.0, 0.105], [0.0, 0.095, 0.0], [0.2, 0.0, 0.0]])
    n = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    t = find_surface(pts, n, sdf, 0.015)
    assert abs(t[0] + 0.005) < 1e-4 and abs(t[1] - 0.005) < 1e-4 and np.isnan(t[2])


def test_smooth_displacement_interpolates_between_anchors():
    n = 11
    edges = np.stack([np.arange(n - 1), np.arange(1, n)], 1)
    target = np.zeros((n, 1))
    target[5] = 1.0
    weight = np.zeros(n)
    weight[5] = 1e6
    anchor = np.zeros(n)
    anchor[[0, -1]] = 1e6
    d = smooth_displacement(target, weight, anchor, edges, smooth=1.0)[:, 0]
    assert np.allclose(d, np.r_[np.linspace(0, 1, 6), np.linspace(1, 0, 6)[1:]], atol=1e-4)


def test_intersections_and_loops_on_small_meshes():
    a = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.2, 0.2, -0.5], [0.3, 0.2, 0.5], [0.2, 0.4, 0.5]], float)
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    assert len(intersecting_pairs(a, tris)) == 1
    a2 = a.copy()
    a2[3:, 2] += 1.0  # moved above: no crossing
    assert len(intersecting_pairs(a2, tris)) == 0
    sq = np.array([[0, 0, 0], [0.01, 0, 0], [0.01, 0.01, 0], [0, 0.01, 0]], float)
    loops = boundary_loops(np.array([[0, 1, 2], [0, 2, 3]]), sq)
    assert loops == [{"edges": 4, "length_cm": 4.0}]
    ratio, _ = uv_stretch(sq, sq[:, :2] * np.array([2.0, 1.0]), np.array([[0, 1, 2]]))
    assert abs(ratio[0] - 2.0) < 1e-9


def _crumpled_sphere(n: int, noise_m: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A latitude-longitude sphere of radius 0.1 m ((n + 1) x n vertices), its vertices jittered: it crosses
    itself more the larger ``noise_m``."""
    rng = np.random.default_rng(seed)
    th, ph = np.meshgrid(np.linspace(0.05, np.pi - 0.05, n + 1), np.linspace(0, 2 * np.pi, n, endpoint=False))
    v = 0.1 * np.stack([np.sin(th) * np.cos(ph), np.cos(th), np.sin(th) * np.sin(ph)], -1).reshape(-1, 3)
    idx = np.arange(n * (n + 1)).reshape(n, n + 1)
    a, b = idx[:, :-1], idx[:, 1:]
    c, d = np.roll(a, -1, 0), np.roll(b, -1, 0)
    tris = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    return v + rng.normal(0.0, noise_m, v.shape), tris


def test_intersecting_pairs_grid_matches_the_reference():
    from engine.asset.measure import intersecting_pairs_reference

    for noise, seed in ((0.0, 0), (0.002, 1), (0.006, 2)):
        v, tris = _crumpled_sphere(40, noise, seed)
        fast, slow = intersecting_pairs(v, tris), intersecting_pairs_reference(v, tris)
        assert np.array_equal(fast, slow), (noise, len(fast), len(slow))
        assert (len(fast) == 0) == (noise == 0.0)
    v, tris = _crumpled_sphere(30, 0.001, 3)
    w, wtris = _crumpled_sphere(20, 0.001, 4)
    w = 0.4 * w + [0.0, 0.09, 0.0]  # a small ball through the big one's top: two meshes crossing
    fast = intersecting_pairs(v, tris, (w, wtris))
    assert len(fast) > 0 and np.array_equal(fast, intersecting_pairs_reference(v, tris, (w, wtris)))
    assert len(intersecting_pairs(v, tris, (w + [1.0, 0.0, 0.0], wtris))) == 0


def test_uv_layout_cache_on_disk(tmp_path, monkeypatch):
    import engine.asset.uvpack as uvpack
    from engine.asset.parts import split_parts

    prior = prepared_prior()
    monkeypatch.setenv("LIKENESS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(uvpack, "_LAYOUTS", {})
    computed = []
    real = uvpack.atlas_layout
    monkeypatch.setattr(uvpack, "atlas_layout", lambda *a: computed.append(1) or real(*a))
    first, report = uvpack.packed_parts(split_parts(prior), prior.vertices)
    files = list((tmp_path / "prior").glob("uvlayout-*.npz"))
    assert len(computed) == 1 and len(files) == 1
    uvpack._LAYOUTS.clear()  # a new process: read from the file, not computed
    again, report2 = uvpack.packed_parts(split_parts(prior), prior.vertices)
    assert len(computed) == 1 and report2 == report
    assert all(np.array_equal(first[n].uv, again[n].uv) for n in first)
    for damage in (b"not a zip", b""):  # a corrupt or truncated file is computed again and rewritten
        files[0].write_bytes(damage)
        uvpack._LAYOUTS.clear()
        again, _ = uvpack.packed_parts(split_parts(prior), prior.vertices)
        assert all(np.array_equal(first[n].uv, again[n].uv) for n in first)
    assert len(computed) == 3 and uvpack._read_layout(files[0], split_parts(prior)) is not None
    files[0].unlink()  # missing: computed and written
    uvpack._LAYOUTS.clear()
    uvpack.packed_parts(split_parts(prior), prior.vertices)
    assert len(computed) == 4 and files[0].is_file()


def test_parts_split_at_uv_seams_and_map_back():
    from engine.asset.parts import ASSET_PARTS, split_parts

    prior = prepared_prior()
    parts = split_parts(prior)
    assert tuple(parts) == ASSET_PARTS
    covered = np.concatenate([p.template_vertex for p in parts.values()])
    assert len(np.unique(covered)) == len(prior.vertices)  # every template vertex is in one part
    for p in parts.values():
        assert np.array_equal(p.template_vertex[p.quads], p.template_quads)  # same quads, same winding
    skin = parts["skin"]
    assert len(skin.template_vertex) > (prior.part == 0).sum()  # seams split some vertices


def _layout_numbers(parts) -> tuple[float, int, int]:
    from engine.asset.measure import uv_coverage, uv_signed_area

    offs = np.cumsum([0] + [len(p.uv) for p in parts.values()])
    uv = np.concatenate([p.uv for p in parts.values()])
    tris = np.concatenate([p.triangles + o for p, o in zip(parts.values(), offs[:-1], strict=True)])
    cover = uv_coverage(uv, tris, 1024)
    return float((cover > 0).mean()), int((uv_signed_area(uv, tris) <= 0).sum()), int((cover > 1).sum())


def test_uv_layout_fills_the_atlas():
    from engine.asset.parts import split_parts
    from engine.asset.uvpack import packed_parts

    prior = prepared_prior()
    parts, report = packed_parts(split_parts(prior), prior.vertices)
    use, flipped, overlap = _layout_numbers(parts)
    assert use >= 0.70 and flipped == 0 and overlap == 0, (use, flipped, overlap)
    uv = np.concatenate([p.uv for p in parts.values()])
    assert uv.min() > 0.0 and uv.max() < 1.0
    assert [g["islands"] for g in report["groups"]] == [5, 7]  # skin: head, cavity, mouth, 2 ears; eyes x4, mouth x3


@pytest.mark.slow
def test_uv_layout_is_the_same_for_every_fit(bundle_dir, asset_dir):
    from engine.asset.build import assemble
    from engine.asset.parts import split_parts
    from engine.asset.stats import read_asset_meshes
    from engine.asset.uvpack import packed_parts
    from engine.avatar import load_avatar, load_landmarks_world

    prior = prepared_prior()
    avatar = load_avatar(bundle_dir, device="cpu")
    lms = load_landmarks_world(avatar)
    a = assemble(avatar, prior)
    c = lms.mean(0)
    b = assemble(avatar, prior, landmarks_world=(lms - c) * [1.08, 0.95, 1.0] + c + [0.004, 0.0, 0.0])  # another face
    assert not np.allclose(a.neutral, b.neutral, atol=1e-4)  # a different fit ...
    expected, _ = packed_parts(split_parts(prior), prior.vertices)
    meshes, _ = read_asset_meshes(asset_dir / "head.glb")
    for name, part in expected.items():  # ... and the same layout, the one the template alone gives
        assert np.array_equal(a.parts[name].uv, part.uv) and np.array_equal(b.parts[name].uv, part.uv), name
        glb_uv = meshes[name]["uv"] * [1.0, -1.0] + [0.0, 1.0]
        assert np.allclose(glb_uv, part.uv, atol=1e-6), name


@pytest.fixture(scope="module")
def asset_dir(bundle_dir, tmp_path_factory) -> Path:
    prepared_prior()
    from engine.asset.build import build_asset

    return build_asset(bundle_dir, tmp_path_factory.mktemp("asset") / "asset", texture_size=1024)


@pytest.mark.slow
def test_asset_files_and_snap(asset_dir):
    info = json.loads((asset_dir / "asset.json").read_text())
    assert all((asset_dir / f).is_file() for f in info["files"].values())
    snap = info["snap"]
    assert snap["vertices_snapped"] > 500  # the face met the field
    assert snap["max_mm"] <= 15.0 + 1e-6  # never beyond the search band
    assert snap["skin_self_intersections_asset"] <= snap["skin_self_intersections_template"]
    for eye in ("eye_L", "eye_R"):  # the template's own eyeballs cross its sockets; the snap adds none
        assert snap["eye_skin_crossings_asset"][eye] <= snap["eye_skin_crossings_template"][eye]
    assert len(info["expression"]) == 52
    light = info["lighting"]  # the photo's light on the face, divided out into albedo.png (test_asset_delight.py)
    assert len(light["coefficients"]) == 9 and light["face_texels_used"] > 0.5 * light["face_texels"]
    assert 0.3 < light["shading_face_p5_p95"][0] < 1.0 < light["shading_face_p5_p95"][1] < 2.0
    from PIL import Image

    lit, albedo = (np.asarray(Image.open(asset_dir / f)) for f in (info["files"]["texture"], info["files"]["albedo"]))
    assert albedo.shape == lit.shape and not np.array_equal(albedo, lit)


@pytest.mark.slow
def test_asset_stats(asset_dir):
    from engine.asset.stats import asset_stats

    st = asset_stats(asset_dir, coverage_size=512)
    skin = st["parts"]["skin"]
    assert skin["non_manifold_edges"] == 0 and skin["flipped_uv_faces"] == 0
    assert len(skin["boundary_loops"]) == 1 and 25.0 < skin["boundary_loops"][0]["length_cm"] < 60.0  # the neck
    assert skin["self_intersections"] == 0
    assert skin["morph_targets"] == 52 and st["skin_quad_share"] == 1.0
    for name in ("eye_L", "eye_R", "tongue"):
        assert st["parts"][name]["boundary_loops"] == [] and st["parts"][name]["non_manifold_edges"] == 0
    assert all(p["flipped_uv_faces"] == 0 for p in st["parts"].values())
    assert st["uv_stretch_face"]["area_weighted_mean"] < 1.6 and st["uv_stretch_face"]["p95"] < 2.5
    assert st["uv_overlap_share"] < 0.01
    assert 0.69 <= st["atlas_use"] < 1.0  # 0.706 at 1024 (test_uv_layout_fills_the_atlas)
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "asset_stats.py"), str(asset_dir.parent)],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["parts"]["skin"]["vertices"] == skin["vertices"]


@pytest.mark.slow
def test_asset_rig_check_script(asset_dir, tmp_path):
    from PIL import Image

    sheet = tmp_path / "rig_heat.png"
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "asset_rig_check.py"), str(asset_dir), "-o", str(sheet),
                        "--size", "96"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert len(r["keys"]) == 52 and Image.open(sheet).size == (8 * 96, 7 * (96 + 14))
    jaw = r["keys"]["jawOpen"]
    assert jaw["skin_max_neck_cut_mm"] <= 0.2 and jaw["skin_max_2cm_below_chin_mm"] <= 2.0
    assert r["bars"]["jaw_parts_follow"] and r["bars"]["eyeLook_max_rigid_rms_mm"] < 0.1
    info = json.loads((asset_dir / "asset.json").read_text())
    assert "jawOpen" in info["rig"]["neck_motion_removed_max_mm"]


@pytest.mark.slow
def test_asset_glb_passes_the_validator(asset_dir):
    if shutil.which("node") is None or not (NODE_MODULES / "gltf-validator").is_dir():
        pytest.skip("node or the gltf-validator npm package is not installed (make installs it when npm exists)")
    p = subprocess.run(["node", str(REPO / "tests" / "gltf_validate.js"), str(asset_dir / "head.glb")],
                       capture_output=True, text=True, env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
                       timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["issues"]["numErrors"] == 0, json.dumps(report["issues"]["messages"][:10], indent=1)
    assert report["issues"]["numWarnings"] == 0, json.dumps(report["issues"]["messages"][:10], indent=1)
    assert report["info"]["hasMorphTargets"] and report["info"]["hasSkins"] and report["info"]["drawCallCount"] == 6


BLENDER = r"""
import json, sys
import bpy

def describe():
    out = {}
    for o in bpy.data.objects:
        d = {"type": o.type}
        if o.type == "MESH":
            d["shape_keys"] = [k.name for k in o.data.shape_keys.key_blocks] if o.data.shape_keys else []
            d["uv_layers"] = len(o.data.uv_layers)
            d["groups"] = [g.name for g in o.vertex_groups]
        if o.type == "ARMATURE":
            d["bones"] = [b.name for b in o.data.bones]
        if o.type == "CAMERA":
            d["angle_y"] = o.data.angle_y
        out[o.name] = d
    return out

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[1])
glb = describe()
bpy.ops.export_scene.fbx(filepath=sys.argv[2], add_leaf_bones=False)
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.fbx(filepath=sys.argv[2])
print(json.dumps({"glb": glb, "fbx": describe()}))
"""


@pytest.mark.slow
@pytest.mark.blender
@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs the bpy module (pip install bpy==5.0.1)")
def test_asset_in_blender_glb_and_fbx(asset_dir, tmp_path):
    from engine.rig.arkit import ARKIT_NAMES

    # Blender in a child process (tests/test_rig_blender.py says why)
    p = subprocess.run([sys.executable, "-c", BLENDER, str(asset_dir / "head.glb"), str(tmp_path / "head.fbx")],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    for kind in ("glb", "fbx"):
        objs = got[kind]
        for part in ("skin", "eye_L", "eye_R", "teeth_upper", "teeth_lower", "tongue"):
            assert objs[part]["type"] == "MESH" and objs[part]["uv_layers"] == 1, (kind, part)
        assert objs["skin"]["shape_keys"] == ["Basis", *ARKIT_NAMES], kind
        cams = [o for o in objs.values() if o["type"] == "CAMERA"]
        assert len(cams) == 1 and 0.1 < cams[0]["angle_y"] < 1.5, kind
        arm = [o for o in objs.values() if o["type"] == "ARMATURE"]
        assert len(arm) == 1 and set(arm[0]["bones"]) == {"neck", "head", "eye_L", "eye_R"}, kind
        assert "eye_L" in objs["eye_L"]["groups"] and "head" in objs["skin"]["groups"], kind


@pytest.mark.slow
def test_cli_asset_without_prior_is_one_line(bundle_dir, tmp_path, monkeypatch, capsys):
    from engine.cli import main

    monkeypatch.setenv("LIKENESS_CACHE_DIR", str(tmp_path / "empty"))
    assert main(["asset", str(bundle_dir), "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prepare-prior" in err[0]
