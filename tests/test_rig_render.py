"""The rig on a built avatar (the draft demo bundle): the bundle's rig files, the neural render following the
rig (measured with mediapipe on renders of the real field), the mesh following it too, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.rig import arkit


@pytest.fixture(scope="module")
def avatar(draft_bundle):
    from engine.avatar import load_avatar

    return load_avatar(draft_bundle)


@pytest.fixture(scope="module")
def evidence(avatar):
    from engine.rig.measure import evidence

    return evidence(avatar, rig="proxy")  # the bundle's own rig (the asset's: tests/test_rig_asset.py)


def test_bundle_carries_the_rig(draft_bundle):
    from engine.rig.gltf import accessor_array, read_glb
    from engine.rig.meshkeys import read_shape_keys

    m = json.loads((draft_bundle / "manifest.json").read_text())
    assert m["files"]["expression"] == "expression.json" and m["files"]["shape_keys"] == "shape_keys.npz"
    expr = json.loads((draft_bundle / "expression.json").read_text())
    assert set(expr["photo_weights"]) == set(arkit.ARKIT_NAMES)
    photo_w = np.array([expr["photo_weights"][n] for n in arkit.ARKIT_NAMES])
    assert photo_w[arkit.INDEX["mouthSmileLeft"]] > 0.2  # the demo portrait smiles
    gltf, binary = read_glb((draft_bundle / "head.glb").read_bytes())
    mesh = gltf["meshes"][0]
    assert mesh["extras"]["targetNames"] == list(arkit.ARKIT_NAMES)
    np.testing.assert_allclose(mesh["weights"], photo_w, atol=1e-6)
    prim = mesh["primitives"][0]
    base = accessor_array(gltf, binary, prim["attributes"]["POSITION"])
    keys = read_shape_keys(draft_bundle / "shape_keys.npz")
    np.testing.assert_allclose(base, keys.basis, atol=1e-6)
    jaw = accessor_array(gltf, binary, prim["targets"][arkit.INDEX["jawOpen"]]["POSITION"])
    np.testing.assert_allclose(jaw, keys.deltas[arkit.INDEX["jawOpen"]], atol=1e-7)
    assert jaw[:, 1].min() < -0.02  # the chin drops by centimetres
    obj = np.array([[float(x) for x in ln.split()[1:4]] for ln in (draft_bundle / "head.obj").read_text().splitlines()
                    if ln.startswith("v ")])  # fmt: skip
    np.testing.assert_allclose(obj, base, atol=2e-6)  # GLB and OBJ both hold the neutral face


def test_photo_weights_reproduce_the_photo_render(avatar):
    from engine.rig import deform_for_avatar, photo_weights

    cam, intr = avatar.orbit(0.0, 0.0, 64)
    d = deform_for_avatar(avatar, photo_weights(avatar))
    np.testing.assert_array_equal(avatar.render(cam, intr, deform=d)["rgb"], avatar.render(cam, intr)["rgb"])
    neutral = avatar.render(cam, intr, deform=deform_for_avatar(avatar, {}))
    assert np.abs(neutral["rgb"] - avatar.render(cam, intr)["rgb"]).max() > 0.2  # the smile is undone


def test_jaw_open_parts_the_lips(evidence):
    assert evidence["jaw_open_lip_gap_pct_face"] >= 15.0


def test_blink_closes_the_subjects_left_eye_only(evidence):
    # mediapipe's eye aspect ratio on the closed (painted-over) eye of the 256 px draft render is noisy: across
    # engine revisions that only changed the fit (proxy, ray mix) it measured 66-77 % on this bundle and 74 % on
    # the standard one; an eye that does not close measures ~0 %, so 60 % still separates the two.
    assert evidence["blink_left_ear_reduction_pct"] >= 60.0
    assert abs(evidence["blink_left_right_ear_change_pct"]) <= 10.0


def test_smiles_raise_the_matching_corner(evidence):
    c = evidence["smile_corner_rise_pct_face"]
    assert c["Left"]["left"] > 1.0 and c["Left"]["left"] > 2.0 * abs(c["Left"]["right"])
    assert c["Right"]["right"] > 1.0 and c["Right"]["right"] > 2.0 * abs(c["Right"]["left"])


def test_round_trip_render_landmarks_fit(evidence):
    assert evidence["round_trip_mae"] <= 0.15


def test_mesh_shape_keys_follow_the_neural_render(avatar, draft_bundle):
    """Seen in profile, the mesh at jawOpen = 1 (its shape keys) outlines the neural render at jawOpen = 1 about as
    well as the neutral mesh outlines the neutral render, and far better than the neutral mesh does."""
    import trimesh

    from engine.extract.bake import mesh_maps
    from engine.rig import deform_for_avatar
    from engine.rig.meshkeys import read_shape_keys

    obj = trimesh.load(draft_bundle / "head.obj", process=False)
    faces = np.asarray(obj.faces)
    keys = read_shape_keys(draft_bundle / "shape_keys.npz")
    assert keys.basis.shape == obj.vertices.shape  # the keys' vertex order is the OBJ's (no loose vertex)
    cam, intr = avatar.orbit(70.0, 0.0, 128, fov_deg=14.0)
    a0 = avatar.render(cam, intr, deform=deform_for_avatar(avatar, {}))["alpha"] > 0.5
    a1 = avatar.render(cam, intr, deform=deform_for_avatar(avatar, {"jawOpen": 1.0}))["alpha"] > 0.5
    m0 = mesh_maps(keys.basis.astype(np.float64), faces, cam, intr)["mask"]
    m1 = mesh_maps(keys.mesh_at(arkit.to_vector({"jawOpen": 1.0})).astype(np.float64), faces, cam, intr)["mask"]
    assert (a0 ^ a1).sum() > 150  # the jaw really moved in the render
    assert (m1 ^ a1).sum() < 0.6 * (m0 ^ a1).sum()
    assert (m1 ^ a1).sum() < 1.5 * (m0 ^ a0).sum() + 20
    # About as well as the neutral mesh outlines the neutral render (in profile that agreement is itself about
    # 0.98 on the draft demo; before the OBJ lost its loose seam vertices it measured 0.95 here, because trimesh's
    # reader skips them and the faces then pointed at the wrong rows of the keys' basis).
    iou = lambda a, b: (a & b).sum() / (a | b).sum()  # noqa: E731
    assert iou(m1, a1) > iou(m0, a0) - 0.015 and iou(m1, a1) > 0.96, (iou(m1, a1), iou(m0, a0))


def test_cli_render_with_expression(draft_bundle, tmp_path, capsys):
    from engine.cli import main

    out = tmp_path / "x.png"
    assert main(["-q", "render", str(draft_bundle), "--size", "48", "--expression", "jawOpen=0.8", "EyeBlinkLeft=1",
                 "-o", str(out)]) == 0  # fmt: skip
    assert out.is_file()
    assert main(["-q", "render", str(draft_bundle), "--size", "48", "--expression", "jawOpn=1", "-o", str(out)]) == 2
    assert "unknown ARKit blendshape 'jawOpn'" in capsys.readouterr().err


def test_drive_from_csv_and_from_a_video(avatar, draft_bundle, tmp_path):
    import imageio_ffmpeg

    from engine.cli import main
    from engine.rig.cli_support import drive_keyframes
    from engine.rig.livelink import Take, read_csv, write_csv
    from engine.rig.measure import measurement_cameras, render_landmarks

    w = np.zeros((3, 52))
    w[:, arkit.INDEX["jawOpen"]] = [0.0, 0.5, 1.0]
    write_csv(tmp_path / "in.csv", Take(np.arange(3) / 30.0, w, {}, 30.0))
    assert main(["-q", "drive", str(draft_bundle), "--csv", str(tmp_path / "in.csv"), "-o", str(tmp_path / "o.csv"),
                 "--frames", str(tmp_path / "frames"), "--size", "32"]) == 0  # fmt: skip
    np.testing.assert_allclose(read_csv(tmp_path / "o.csv").weights, w, atol=1e-6)
    assert len(list((tmp_path / "frames").glob("*.png"))) == 3
    # a video of the avatar itself: closed mouth, then open
    cam, intr = measurement_cameras(avatar, 192)[0]
    frames = [render_landmarks(avatar, cam, intr, {"jawOpen": j})[1] for j in (0.0, 0.0, 0.0, 0.8, 0.8, 0.8)]
    video = tmp_path / "drive.mp4"
    gen = imageio_ffmpeg.write_frames(str(video), (192, 192), fps=10, macro_block_size=1, output_params=["-crf", "12"])
    gen.send(None)
    for f in frames:
        gen.send(np.ascontiguousarray(f))
    gen.close()
    take = drive_keyframes(avatar, video=str(video), same_person=True, smooth_s=0.0)
    jaw = take.weights[:, arkit.INDEX["jawOpen"]]
    assert len(jaw) == 6 and np.allclose(take.times_s, np.arange(6) / 10.0)
    assert jaw[3:].mean() > jaw[:3].mean() + 0.4


def test_drive_frames_follow_the_takes_head_rotation(bundle_dir, tmp_path, capsys):
    """A Live Link CSV's HeadYaw column (radians) turns the head in ``likeness drive --frames``: the turned frame is
    ``likeness render --head`` at the same angle and expression, pixel for pixel; ``--head-rotation off`` keeps
    the head still."""
    from PIL import Image

    from engine.cli import main
    from engine.rig.livelink import Take, write_csv

    w = np.zeros((2, 52))
    w[:, arkit.INDEX["jawOpen"]] = 0.5
    write_csv(tmp_path / "turn.csv", Take(np.arange(2) / 30.0, w, {"HeadYaw": np.array([0.0, 0.4])}, 30.0))
    args = ["-q", "drive", str(bundle_dir), "--csv", str(tmp_path / "turn.csv"), "-o", str(tmp_path / "o.csv"),
            "--size", "48"]  # fmt: skip
    assert main([*args, "--frames", str(tmp_path / "f")]) == 0
    assert "the head turned by the take's columns (radians)" in capsys.readouterr().out
    assert main([*args, "--frames", str(tmp_path / "still"), "--head-rotation", "off"]) == 0
    deg = f"{np.degrees(0.4):.10f}"
    assert main(["-q", "render", str(bundle_dir), "--size", "48", "--head", f"{deg},0,0",
                 "--expression", "jawOpen=0.5", "-o", str(tmp_path / "r.png")]) == 0  # fmt: skip
    assert "head turned" in capsys.readouterr().out
    read = lambda p: np.asarray(Image.open(p), np.int16)  # noqa: E731
    f0, f1 = read(tmp_path / "f" / "frame_0000.png"), read(tmp_path / "f" / "frame_0001.png")
    assert np.abs(f1 - f0).max() > 64  # the head turned
    assert np.abs(f1 - read(tmp_path / "r.png")).max() <= 1
    np.testing.assert_array_equal(read(tmp_path / "still" / "frame_0001.png"), f0)
    with pytest.raises(SystemExit) as e:
        main(["-q", "render", str(bundle_dir), "--head", "120,0,0", "-o", str(tmp_path / "x.png")])
    assert e.value.code == 2 and "within +-90" in capsys.readouterr().err


def test_drive_frames_follow_the_takes_eye_rotation(bundle_dir, tmp_path, capsys):
    """A take's LeftEyeYaw/RightEyePitch columns turn the asset's eyes in ``likeness drive --frames`` as the
    add-on's Live Link import keys the eye bones (engine.asset.skinning.live_link_pose, the eyeballs' look-key
    motion replaced): the frame is the in-process render of that pose; ``--head-rotation off`` leaves the eyes
    to the look keys."""
    from PIL import Image

    from engine.asset.skinning import live_link_pose, render_deform
    from engine.avatar import load_avatar
    from engine.cli import main
    from engine.extract.export import rgba_u8
    from engine.rig import resolve_rig
    from engine.rig.livelink import Take, write_csv

    avatar = load_avatar(bundle_dir)
    if resolve_rig(avatar) != "asset":
        pytest.skip("the draft bundle has no asset (the head prior is not prepared: likeness prepare-prior)")
    w = np.zeros((2, 52))
    w[:, arkit.INDEX["eyeLookOutLeft"]] = 0.4
    cols = {"LeftEyeYaw": np.array([0.0, 0.35]), "RightEyePitch": np.array([0.0, -0.2])}
    write_csv(tmp_path / "look.csv", Take(np.arange(2) / 30.0, w, cols, 30.0))
    args = ["-q", "drive", str(bundle_dir), "--csv", str(tmp_path / "look.csv"), "-o", str(tmp_path / "o.csv"),
            "--size", "96"]  # fmt: skip
    assert main([*args, "--frames", str(tmp_path / "f")]) == 0
    assert "the eyes turned by the take's columns (radians)" in capsys.readouterr().out
    assert main([*args, "--frames", str(tmp_path / "keys"), "--head-rotation", "off"]) == 0
    read = lambda p: np.asarray(Image.open(p), np.int16)  # noqa: E731
    cam, intr = avatar.orbit(0.0, 0.0, 96)
    weights = {"eyeLookOutLeft": 0.4}
    pose = live_link_pose(avatar, eyes_deg={"eye_L": (np.degrees(0.35), 0, 0), "eye_R": (0, np.degrees(-0.2), 0)})
    mine = rgba_u8(avatar.render(cam, intr, deform=render_deform(avatar, weights, pose))).astype(np.int16)
    f1, k1 = read(tmp_path / "f" / "frame_0001.png"), read(tmp_path / "keys" / "frame_0001.png")
    assert np.abs(f1 - mine).max() <= 1
    assert np.abs(f1 - k1).max() > 24  # the columns, not the keys, turned the eyes


def test_expressed_frame_benchmark_runs(avatar):
    from engine.rig import expressed_frame_seconds

    r = expressed_frame_seconds(avatar, size=32)
    assert r["size"] == 32 and r["expressed_s"] > r["warp_build_s"] > 0
