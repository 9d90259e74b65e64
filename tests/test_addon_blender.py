"""The Blender add-on in the real ``bpy`` module: registration, import, camera match, silhouette IoU with the
engine's matte, turntable keys, the dolly-zoom invariant, shape keys, the headless script and the extension zip.

Renders that a person should look at are written to /tmp/likeness_addon_renders/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the bpy module (pip install bpy==5.0.1)")
import addon_utils  # noqa: E402  (ships with bpy)
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from mathutils import Matrix, Vector  # noqa: E402
from PIL import Image  # noqa: E402

from engine import conventions as ecv  # noqa: E402  (tests may use the engine to check the add-on)

pytestmark = [pytest.mark.blender, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
ADDON = "blender_addon"
LOOK = Path(os.environ.get("LIKENESS_LOOK_DIR", "/tmp/likeness_addon_renders"))


def _fail(exc):
    raise exc


def enable():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return addon_utils.enable(ADDON, default_set=True, handle_error=_fail)


def disable():
    addon_utils.disable(ADDON, default_set=True, handle_error=_fail)


@pytest.fixture
def addon():
    """The add-on enabled on an empty scene; disabled afterwards."""
    mod = enable()
    bpy.ops.wm.read_homefile(use_empty=True)
    yield mod
    disable()


@pytest.fixture
def imported(addon, bundle_dir):
    assert bpy.ops.likeness.import_avatar(directory=str(bundle_dir)) == {"FINISHED"}
    from blender_addon import scene_io

    return scene_io.find_avatar(bpy.context)


def _registered_state() -> dict:
    status_funcs = getattr(bpy.types.STATUSBAR_HT_header.draw, "_draw_funcs", [])
    return {
        "types": sorted(n for n in dir(bpy.types) if n.startswith("LIKENESS_")),
        "ops": sorted(dir(bpy.ops.likeness)),
        "scene_prop": hasattr(bpy.types.Scene, "likeness"),
        "wm_prop": hasattr(bpy.types.WindowManager, "likeness"),
        "status_bar": sum(getattr(f, "__module__", "").startswith(ADDON) for f in status_funcs),
        "addon": ADDON in bpy.context.preferences.addons,
        "timers": _timer_registered(),
    }


def _timer_registered() -> bool:
    jobs = sys.modules.get(f"{ADDON}.jobs")
    return bool(jobs and bpy.app.timers.is_registered(jobs.pump))


def test_register_unregister_twice_leaves_nothing_behind():
    before = _registered_state()
    assert before["types"] == [] and not before["scene_prop"] and not before["addon"]
    for _ in range(2):
        enable()
        on = _registered_state()
        assert {
            "build",
            "import_avatar",
            "turntable",
            "dolly_zoom",
            "neural_render",
            "photo_camera",
            "test_connection",
            "refresh_avatars",
            "cancel",
            "stop_engine",
        } <= set(on["ops"])
        assert on["scene_prop"] and on["wm_prop"] and on["status_bar"] == 1 and on["addon"]
        assert "LIKENESS_PT_build" in on["types"] and "LIKENESS_UL_avatars" in on["types"]
        classes = sys.modules[ADDON].CLASSES
        assert all(cls.is_registered for cls in classes)
        assert bpy.context.preferences.addons[ADDON].preferences.bl_rna.identifier == "LIKENESS_AP_preferences"
        # start background work (an engine that is not there) so a timer is live when we unregister
        prefs = bpy.context.preferences.addons[ADDON].preferences
        prefs.mode, prefs.url = "REMOTE", "http://127.0.0.1:9"
        assert bpy.ops.likeness.test_connection() == {"FINISHED"}
        assert _timer_registered()
        disable()
        assert _registered_state() == before
        assert not any(cls.is_registered for cls in classes)


def test_connection_error_is_plain_words(addon):
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.mode, prefs.url = "REMOTE", "http://127.0.0.1:9"
    with pytest.raises(RuntimeError, match="is not reachable"):  # an ERROR report raises in scripts
        bpy.ops.likeness.test_connection(wait=True)
    status = bpy.context.window_manager.likeness.engine_status
    assert status.startswith("Not connected: the engine at http://127.0.0.1:9 is not reachable"), status
    prefs.mode, prefs.python_path = "LOCAL", "/nonexistent/venv"
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.likeness.test_connection(wait=True)
    assert "/nonexistent/venv does not exist" in bpy.context.window_manager.likeness.engine_status


def test_import_is_one_undoable_step_with_everything(addon, bundle_dir):
    from blender_addon import scene_io

    bpy.ops.ed.undo_push(message="before import")
    assert bpy.ops.likeness.import_avatar("EXEC_DEFAULT", True, directory=str(bundle_dir)) == {"FINISHED"}
    av = scene_io.find_avatar(bpy.context)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert av.collection.name == "Likeness astronaut"
    info = av.info
    assert Path(info["bundle_dir"]) == bundle_dir.resolve() and info["quality"] == "draft"
    assert info["engine_version"] == manifest["engine_version"] and info["input_name"] == "astronaut.png"
    head = av.head
    assert head.type == "MESH" and len(head.data.polygons) > 1000 and head.data.uv_layers.active is not None
    tex_nodes = [n for n in head.active_material.node_tree.nodes if n.type == "TEX_IMAGE"]
    assert tex_nodes and Path(tex_nodes[0].image.filepath) == bundle_dir / "texture.png"
    # the head mesh is the bundle's mesh in Blender axes
    co = np.empty(len(head.data.vertices) * 3, np.float32)
    head.data.vertices.foreach_get("co", co)
    from blender_addon.gltf_mesh import read_glb

    ref = read_glb(bundle_dir / "head.glb").positions
    np.testing.assert_allclose(co.reshape(-1, 3), np.stack([ref[:, 0], -ref[:, 2], ref[:, 1]], 1), atol=1e-6)
    maps = {img.name: img for img in bpy.data.images}
    for label in ("depth", "normal", "matte"):
        img = maps[f"astronaut {label}"]
        assert img.colorspace_settings.is_data and img.use_fake_user and img.size[0] == 256
    cam = av.camera
    assert cam.data.show_background_images and cam.data.background_images[0].image.size[:] == (512, 512)
    assert bpy.context.scene.camera == cam and av.landmarks is not None
    assert len(av.landmarks.data.vertices) == 478
    bpy.ops.ed.undo()
    assert scene_io.find_avatar(bpy.context) is None and "Likeness astronaut" not in bpy.data.collections
    bpy.ops.ed.redo()
    assert scene_io.find_avatar(bpy.context) is not None


def test_import_sets_shape_keys_to_the_photo_expression(imported, bundle_dir):
    """The bundle's mesh is the neutral face; its shape keys start at the photo's expression (expression.json), so
    the head looks like the photo; the neural render then asks for the same expression, zeroed keys for neutral."""
    from blender_addon import scene_io

    expr = bundle_dir / "expression.json"
    if not expr.is_file():
        pytest.skip("the bundle predates the expression rig")
    photo = json.loads(expr.read_text())["photo_weights"]
    assert max(photo.values()) > 0.2  # the demo portrait smiles
    keys = imported.head.data.shape_keys.key_blocks
    assert len(keys) == 53
    got = {kb.name: kb.value for kb in keys[1:]}
    assert got == pytest.approx({n: photo.get(n, 0.0) for n in got}, abs=1e-6)
    (req,) = scene_io.frame_requests(bpy.context.scene, imported.camera, imported, [1], keys_from="SCAN")
    assert req[4] == "proxy" and req[3] == pytest.approx({n: w for n, w in photo.items() if w > 1e-6}, abs=1e-6)
    for kb in keys[1:]:
        kb.value = 0.0
    assert scene_io.expression_weights(imported.head) == {}  # the neutral face, as the mesh now shows
    imported.head.shape_key_clear()
    assert scene_io.expression_weights(imported.head) is None  # no rig on the mesh: the field as photographed


def test_camera_background_is_the_bundles_photo(imported, bundle_dir, astronaut_rgb):
    from blender_addon.bundle import read_bundle

    photo = read_bundle(bundle_dir).file("photo")
    if photo is None:
        pytest.skip("the bundle predates files.photo")
    img = imported.camera.data.background_images[0].image
    assert Path(img.filepath) == photo and tuple(img.size) == astronaut_rgb.shape[1::-1]
    px = np.asarray(img.pixels[:], np.float32).reshape(img.size[1], img.size[0], 4)[::-1, :, :3]
    assert np.abs(px * 255.0 - astronaut_rgb).max() <= 1.0  # the whole photo, upright, not the crop rebuilt


def test_import_refuses_a_folder_that_is_not_a_bundle(addon, tmp_path):
    with pytest.raises(RuntimeError, match="is not an avatar bundle"):
        bpy.ops.likeness.import_avatar(directory=str(tmp_path))


def test_photo_camera_matches_the_manifest(imported, bundle_dir):
    from blender_addon import scene_io

    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    intr = manifest["camera"]["photo"]["intrinsics"]
    scene, cam = bpy.context.scene, imported.camera
    assert (scene.render.resolution_x, scene.render.resolution_y) == (intr["width"], intr["height"])
    got = scene_io.camera_intrinsics(scene, cam)
    for k in ("fx", "fy", "cx", "cy"):
        assert getattr(got, k) == pytest.approx(intr[k], rel=1e-6), k
    assert cam.data.lens == pytest.approx(intr["fx"] * 36.0 / intr["width"], rel=1e-6)
    want = ecv.engine_to_blender_matrix() @ np.array(manifest["camera"]["cam2world"])
    np.testing.assert_allclose(np.array(cam.matrix_world), want, atol=1e-6)
    # independent check: Blender's own projection of the landmarks = the engine's pinhole projection
    lm = np.array(json.loads((bundle_dir / "landmarks.json").read_text())["landmarks_world"])
    uv, _ = ecv.project_points(lm, np.array(manifest["camera"]["cam2world"]), ecv.Intrinsics.from_dict(intr))
    for p, (u, v) in zip(lm[::20], uv[::20], strict=True):
        ndc = world_to_camera_view(scene, cam, Vector(ecv.engine_to_blender_matrix()[:3, :3] @ p))
        assert ndc.x * intr["width"] == pytest.approx(u, abs=0.02)
        assert (1.0 - ndc.y) * intr["height"] == pytest.approx(v, abs=0.02)


def _silhouette_settings(scene):
    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light, shading.color_type, shading.single_color = "FLAT", "SINGLE", (1.0, 1.0, 1.0)
    scene.display.render_aa = "OFF"
    scene.render.film_transparent = True
    scene.render.image_settings.file_format, scene.render.image_settings.color_mode = "PNG", "RGBA"


def _render(scene, path: Path) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return np.asarray(Image.open(path))


def test_silhouette_iou_with_the_engine_matte(imported, bundle_dir):
    """The imported head rendered from the imported camera, framed as the work crop, sits on the engine's matte."""
    from blender_addon import conventions as cv
    from blender_addon import scene_io
    from blender_addon.bundle import read_bundle

    b = read_bundle(bundle_dir)
    scene = bpy.context.scene
    _silhouette_settings(scene)
    cam = imported.camera
    x0, y0, side = b.crop_box_px
    work = b.photo_intrinsics.cropped_resized(x0, y0, side, b.work_intrinsics.width)  # the add-on's own crop math
    p = cv.camera_params_from_intrinsics(work)
    scene_io.apply_camera_params(cam.data, p)
    scene_io.apply_render_size(scene, p)
    sil = _render(scene, LOOK / "silhouette_work_crop.png")[..., 3] > 127
    matte = np.asarray(Image.open(b.file("alpha")).convert("L")) > 127
    iou = float((sil & matte).sum() / (sil | matte).sum())
    print(f"silhouette IoU (Blender mesh render vs engine alpha.png): {iou:.4f}")
    (LOOK / "iou.json").write_text(
        json.dumps({"iou": iou, "pixels_blender": int(sil.sum()), "pixels_matte": int(matte.sum())})
    )
    assert iou >= 0.95
    # and a deliberately wrong convention (no Y-up -> Z-up conversion of the camera) does not pass
    cam.matrix_world = Matrix(np.array(b.cam2world).tolist())
    wrong = _render(scene, LOOK / "silhouette_wrong_axes.png")[..., 3] > 127
    assert float((wrong & matte).sum() / max((wrong | matte).sum(), 1)) < 0.5


def test_look_renders_from_photo_camera_and_45_degrees(addon, bundle_dir, astronaut_png, tmp_path):
    """Textured Workbench renders for a person to look at: from the photo camera (over the photo) and from 45 deg."""
    from blender_addon import scene_io

    photo = tmp_path / "astronaut.png"
    photo.write_bytes(astronaut_png)
    assert bpy.ops.likeness.import_avatar(directory=str(bundle_dir), photo_path=str(photo)) == {"FINISHED"}
    imported = scene_io.find_avatar(bpy.context)
    assert Path(imported.camera.data.background_images[0].image.filepath) == photo
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light, scene.display.shading.color_type = "STUDIO", "TEXTURE"
    scene.display.render_aa = "8"
    scene.render.film_transparent = True
    scene.render.image_settings.color_mode = "RGBA"
    rgba = _render(scene, LOOK / "photo_camera.png").astype(np.float32) / 255.0
    photo = np.asarray(imported.camera.data.background_images[0].image.pixels[:], np.float32).reshape(512, 512, 4)
    photo = photo[::-1, :, :3]
    over = rgba[..., :3] * rgba[..., 3:] + photo * (1.0 - rgba[..., 3:])
    half = np.concatenate([photo[:, :256], over[:, 256:]], axis=1)  # left: the photo, right: render over photo
    Image.fromarray((np.clip(half, 0, 1) * 255).astype(np.uint8)).save(LOOK / "photo_camera_over_photo.png")
    assert rgba[..., 3].mean() > 0.05
    assert bpy.ops.likeness.turntable(frame_start=1, frame_end=8, pitch=0.0) == {"FINISHED"}
    scene.frame_set(2)  # one eighth of a turn: 45 degrees toward the subject's left
    side = _render(scene, LOOK / "yaw45.png")
    assert side[..., 3].mean() > 10


def test_turntable_keyframes(imported):
    from blender_addon import scene_io

    scene = bpy.context.scene
    assert bpy.ops.likeness.turntable(frame_start=1, frame_end=24, focal_length=85.0, distance=2.0, pitch=10.0) == {
        "FINISHED"
    }
    cam = scene.camera
    pivot = cam.parent
    assert cam.get("likeness_role") == "turntable_camera" and pivot.get("likeness_role") == "turntable_pivot"
    assert cam.data.lens == pytest.approx(85.0) and (scene.frame_start, scene.frame_end) == (1, 24)
    (fc,) = scene_io.fcurves(pivot)
    assert fc.data_path == "rotation_euler" and fc.array_index == 2
    keys = [(k.co.x, k.co.y, k.interpolation) for k in fc.keyframe_points]
    assert keys == [(1.0, 0.0, "LINEAR"), (25.0, pytest.approx(2 * np.pi), "LINEAR")]
    centre = scene_io.head_centre(imported)
    for frame, yaw in ((1, 0.0), (7, 90.0), (13, 180.0), (19, 270.0)):
        scene.frame_set(frame)
        pos = cam.matrix_world.translation
        want = centre + Vector(ecv.engine_to_blender_matrix()[:3, :3] @ ecv.orbit_camera_gl(yaw, 10.0, 2.0)[:3, 3])
        assert (pos - want).length < 1e-4, (frame, pos, want)
        forward = cam.matrix_world.to_3x3() @ Vector((0, 0, -1))
        assert forward.angle(centre - pos) < 1e-4
        up = cam.matrix_world.to_3x3() @ Vector((0, 0, 1))  # no roll: the camera's x axis stays horizontal
        assert abs((cam.matrix_world.to_3x3() @ Vector((1, 0, 0))).z) < 1e-6 and up.length > 0
    # clockwise reverses the direction; re-running replaces the rig instead of adding one
    assert bpy.ops.likeness.turntable(frame_start=1, frame_end=24, clockwise=True) == {"FINISHED"}
    assert sum(o.get("likeness_role") == "turntable_camera" for o in bpy.data.objects) == 1
    (fc,) = scene_io.fcurves(bpy.context.scene.camera.parent)
    assert fc.keyframe_points[-1].co.y == pytest.approx(-2 * np.pi)


def _face_width_px(scene, cam, points) -> float:
    xs = [world_to_camera_view(scene, cam, p).x for p in points]
    return (max(xs) - min(xs)) * scene.render.resolution_x


def test_dolly_zoom_keeps_the_face_size(imported):
    from blender_addon import scene_io

    scene = bpy.context.scene
    assert bpy.ops.likeness.dolly_zoom(frame_start=1, frame_end=30, end_focal_length=20.0) == {"FINISHED"}
    cam = scene.camera
    assert cam.get("likeness_role") == "dolly_camera" and cam != imported.camera
    points = scene_io.face_points_world(imported)
    centre = scene_io.head_centre(imported)
    widths, lenses, dists = [], [], []
    for frame in range(1, 31):
        scene.frame_set(frame)
        widths.append(_face_width_px(scene, cam, points))
        lenses.append(cam.data.lens)
        dists.append((cam.matrix_world.translation - centre).length)
    spread = (max(widths) - min(widths)) / np.mean(widths)
    print(
        f"dolly zoom: lens {lenses[0]:.1f} -> {lenses[-1]:.1f} mm, distance {dists[0]:.3f} -> {dists[-1]:.3f} m, "
        f"face width {min(widths):.2f}..{max(widths):.2f} px (spread {spread * 100:.3f} %)"
    )
    LOOK.mkdir(parents=True, exist_ok=True)
    (LOOK / "dolly.json").write_text(
        json.dumps({"lens_mm": lenses, "distance_m": dists, "face_width_px": widths, "spread": spread})
    )
    assert lenses[0] == pytest.approx(imported.camera.data.lens) and lenses[-1] == pytest.approx(20.0)
    assert dists[-1] < 0.5 * dists[0]  # the camera really moved in
    assert spread < 0.02
    # the photo camera itself is untouched; back to it restores the photo frame
    assert not scene_io.fcurves(imported.camera)
    assert bpy.ops.likeness.photo_camera() == {"FINISHED"}
    assert scene.camera == imported.camera and scene.render.resolution_x == 512
    # a lens that would fly the camera through the face is refused
    with pytest.raises(RuntimeError, match="inside the head"):
        bpy.ops.likeness.dolly_zoom(end_focal_length=1.0)


def test_morph_targets_become_arkit_shape_keys_and_the_render_expression(addon, bundle_dir, tmp_path):
    from test_addon_conventions import write_glb

    from blender_addon import scene_io
    from blender_addon.gltf_mesh import read_glb

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy, ignore=shutil.ignore_patterns("field.safetensors", "turntable*"))
    base = read_glb(bundle_dir / "head.glb")
    jaw = np.zeros_like(base.positions)
    jaw[base.positions[:, 1] < -0.05] = (0.0, -0.02, 0.0)
    blink = np.zeros_like(base.positions)
    blink[:10] = (0.0, 0.0, 0.01)
    write_glb(
        copy / "head.glb",
        base.positions,
        base.triangles,
        uv=np.column_stack([base.uv[:, 0], 1 - base.uv[:, 1]]),
        morphs={"JawOpen": jaw, "eyeBlink_L": blink},
    )
    assert bpy.ops.likeness.import_avatar(directory=str(copy)) == {"FINISHED"}
    av = scene_io.find_avatar(bpy.context)
    keys = av.head.data.shape_keys.key_blocks
    assert [k.name for k in keys] == ["Basis", "jawOpen", "eyeBlinkLeft"]
    co = np.empty(len(keys["jawOpen"].data) * 3, np.float32)
    keys["jawOpen"].data.foreach_get("co", co)
    moved = np.abs(co.reshape(-1, 3) - np.array([v.co for v in av.head.data.vertices])).max(1) > 1e-4
    assert moved.sum() == (base.positions[:, 1] < -0.05).sum()  # engine -Y (down) is Blender -Z
    keys["jawOpen"].value = 0.7
    keys["eyeBlinkLeft"].value = 0.0
    if (copy / "asset" / "head.glb").is_file():  # Keys From: Auto reads the asset skin's keys, for the asset rig
        (req,) = scene_io.frame_requests(bpy.context.scene, av.camera, av, [1])
        skin = scene_io.lod_skins(scene_io.asset_collection(av))[0]
        assert req[4] == "asset" and req[3] == scene_io.expression_weights(skin)
    (req,) = scene_io.frame_requests(bpy.context.scene, av.camera, av, [1], keys_from="SCAN")
    frame, cam2world, intr, expression, rig, pose = req
    assert pose is None  # the armature at rest
    assert rig == "proxy"  # the scan head's keys: the bundle's own rig
    assert expression == {"jawOpen": pytest.approx(0.7)}
    manifest = json.loads((copy / "manifest.json").read_text())
    np.testing.assert_allclose(cam2world, manifest["camera"]["cam2world"], atol=1e-6)
    assert intr["fx"] == pytest.approx(manifest["camera"]["photo"]["intrinsics"]["fx"])


def test_headless_turntable_script_end_to_end(bundle_dir, tmp_path):
    out = tmp_path / "tt"
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "turntable.py"),
        "--bundle",
        str(bundle_dir),
        "-o",
        str(out),
        "--frames",
        "6",
        "--size",
        "128",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    frames = sorted((out / "frames").glob("frame_*.png"))
    assert len(frames) == 6 and Image.open(frames[0]).size == (128, 128)
    first, quarter = (np.asarray(Image.open(frames[i]).convert("L"), np.float32) for i in (0, 1))
    assert np.abs(first - quarter).mean() > 2.0  # the head turned between frames
    mp4 = (out / "turntable.mp4").read_bytes()
    assert len(mp4) > 1000 and mp4[4:8] == b"ftyp"
    with bpy.data.libraries.load(str(out / "turntable.blend")) as (src, _):
        names = list(src.objects)
    assert {"astronaut head", "astronaut photo camera", "astronaut turntable camera"} <= set(names)
    # wrong input: one line on stderr, exit code 1
    bad = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "turntable.py"), "--bundle", str(tmp_path), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "turntable.py: error:" in bad.stderr
    blender = shutil.which("blender")
    if blender:  # the same script under a Blender binary, when one is installed
        r = subprocess.run(
            [
                blender,
                "-b",
                "--factory-startup",
                "--python-exit-code",
                "1",
                "-P",
                str(REPO / "scripts" / "turntable.py"),
                "--",
                "--bundle",
                str(bundle_dir),
                "-o",
                str(tmp_path / "tt_blender"),
                "--frames",
                "4",
                "--size",
                "64",
            ],
            timeout=240,
        )
        assert r.returncode == 0


def test_extension_zip_installs_and_enables(tmp_path):
    """The built zip installs as a Blender extension (user repo in a temp folder), registers, and unregisters."""
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_addon.py"), "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    code = f"""
import bpy, addon_utils
assert bpy.ops.extensions.package_install_files(filepath={str(tmp_path / "likeness-0.1.0.zip")!r},
    repo="user_default", enable_on_install=True) == {{"FINISHED"}}
name = "bl_ext.user_default.likeness"
assert name in bpy.context.preferences.addons, list(bpy.context.preferences.addons.keys())
prefs = bpy.context.preferences.addons[name].preferences
assert prefs.bl_rna.properties["token"].subtype == "PASSWORD"
assert "import_avatar" in dir(bpy.ops.likeness) and hasattr(bpy.types.Scene, "likeness")
addon_utils.disable(name, default_set=True)
assert not hasattr(bpy.types.Scene, "likeness") and not dir(bpy.ops.likeness)
print("OK")
"""
    env = dict(os.environ, BLENDER_USER_EXTENSIONS=str(tmp_path / "ext"), BLENDER_USER_CONFIG=str(tmp_path / "cfg"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_ui_draw_code_names_only_real_properties_and_operators(addon):
    """The panels cannot be drawn without a window; check that what their draw() names exists in RNA."""
    import ast

    from blender_addon.preferences import LIKENESS_AP_preferences

    owners = {
        "s": bpy.context.scene.likeness.bl_rna.properties,
        "prefs": LIKENESS_AP_preferences.bl_rna.properties,
        "asset": bpy.types.Collection.bl_rna.properties["likeness_asset"].fixed_type.properties,
    }
    ops = set(dir(bpy.ops.likeness))
    seen_props, seen_ops = 0, 0
    for path in (REPO / "blender_addon" / "ui").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                continue
            args = node.args
            if node.func.attr == "prop" and isinstance(args[0], ast.Name) and args[0].id in owners:
                assert args[1].value in owners[args[0].id], f"{path.name}: no property {args[1].value}"
                seen_props += 1
            if node.func.attr == "operator" and isinstance(args[0], ast.Constant):
                assert args[0].value.removeprefix("likeness.") in ops, f"{path.name}: no operator {args[0].value}"
                seen_ops += 1
    assert seen_props >= 15 and seen_ops >= 10


def test_import_brings_the_asset_when_the_bundle_has_one(addon, bundle_dir, tmp_path):
    """The artist asset (asset/head.glb) comes in its own collection inside the avatar's; a bundle without one
    (every bundle built before the asset stage) imports as before."""
    from blender_addon import scene_io
    from engine.rig.arkit import ARKIT_NAMES

    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    if "asset_glb" not in manifest["files"]:
        pytest.skip("the bundle has no asset (the head prior is not prepared)")
    assert bpy.ops.likeness.import_avatar(directory=str(bundle_dir)) == {"FINISHED"}
    av = scene_io.find_avatar(bpy.context)
    sub = bpy.data.collections["astronaut asset"]
    assert sub.name in av.collection.children
    roles = {o[scene_io.common.ROLE] for o in sub.objects}
    for part in ("skin", "eye_L", "eye_R", "teeth_upper", "teeth_lower", "tongue", "photo_camera"):
        assert f"asset_{part}" in roles, roles
    skin = next(o for o in sub.objects if o[scene_io.common.ROLE] == "asset_skin")
    assert [k.name for k in skin.data.shape_keys.key_blocks] == ["Basis", *ARKIT_NAMES]
    assert sum(o.type == "ARMATURE" for o in sub.objects) == 1 and sum(o.type == "CAMERA" for o in sub.objects) == 1
    assert av.head is not None  # the bundle's own head stays
    # nothing head-sized-plus in it (Blender's glTF importer leaves a 2 m bone-shape icosphere in the scene) and
    # it starts hidden beside the scan head, out of renders
    assert max(max(o.dimensions) for o in sub.objects if o.type == "MESH") < 0.5
    assert sub.hide_render
    assert all(
        o.name in sub.objects for o in av.collection.all_objects if o.get(scene_io.common.ROLE, "").startswith("asset_")
    )
    # a bundle without the asset: the same import as before the stage existed
    old = tmp_path / "old"
    shutil.copytree(bundle_dir, old)
    shutil.rmtree(old / "asset")
    m = dict(manifest, files={k: v for k, v in manifest["files"].items() if not k.startswith("asset_")})
    m.pop("asset", None)
    (old / "manifest.json").write_text(json.dumps(m))
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.likeness.import_avatar(directory=str(old)) == {"FINISHED"}
    assert "astronaut asset" not in bpy.data.collections and scene_io.find_avatar(bpy.context).head is not None


def test_head_bone_pose_is_the_engines_head_rotation(addon, bundle_dir):
    """A head turn keyed as the Live Link operator keys it (scene_io.livelink) reaches the neural render's request
    as the engine's own head rotation (engine.asset.skinning.head_pose: the same matrix), and Blender's armature skins
    the imported asset as the engine's neck blend says: every skin and hair vertex within 0.5 mm (the GLB's weights
    are the blend's at the neutral skin; here the photo's expression is on, which moves the throat a little)."""
    from mathutils import Quaternion

    from blender_addon import conventions as cv
    from blender_addon import scene_io
    from blender_addon.livelink import rotation_quaternion
    from engine.asset.skinning import head_pose, neck_blend_for_avatar
    from engine.avatar import load_avatar
    from engine.rig.pose import check_pose, pose_points

    if "asset_glb" not in json.loads((bundle_dir / "manifest.json").read_text())["files"]:
        pytest.skip("the bundle has no asset (the head prior is not prepared)")
    assert bpy.ops.likeness.import_avatar(directory=str(bundle_dir)) == {"FINISHED"}
    av = scene_io.find_avatar(bpy.context)
    arm = scene_io.pose_armature(av)
    assert arm is not None and scene_io.bone_pose(av, arm) is None  # at rest: nothing to send
    parts = [o for o in av.collection.all_objects if o.get(scene_io.common.ROLE) in ("asset_skin", "asset_hair")]

    def evaluated(obj) -> np.ndarray:  # world positions after the shape keys and the armature, in engine axes
        ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        pts = [cv.blender_to_engine_point(obj.matrix_world @ v.co) for v in ev.to_mesh().vertices]
        ev.to_mesh_clear()
        return np.array(pts)

    rest_pts = {o.name: evaluated(o) for o in parts}
    yaw, pitch, roll = 0.35, -0.2, 0.1
    pb = arm.pose.bones["head"]
    rest = pb.bone.matrix_local.to_quaternion()
    pb.rotation_mode = "QUATERNION"
    pb.rotation_quaternion = rest.inverted() @ Quaternion(rotation_quaternion(yaw, pitch, roll)) @ rest
    bpy.context.view_layer.update()
    (req,) = scene_io.frame_requests(bpy.context.scene, av.camera, av, [bpy.context.scene.frame_current])
    pose = req[5]
    assert set(pose) == {"head"}
    engine_avatar = load_avatar(bundle_dir)
    want = head_pose(engine_avatar, *np.degrees([yaw, pitch, roll]))["head"]
    print("head bone -> engine pose, max |diff|", np.abs(np.array(pose["head"]) - want).max())
    np.testing.assert_allclose(np.array(pose["head"]), want, atol=1e-4)
    blend, checked = neck_blend_for_avatar(engine_avatar), check_pose(pose)
    assert len(parts) >= 1
    for obj in parts:
        posed = evaluated(obj)
        expect = pose_points(blend, checked, rest_pts[obj.name])
        err = np.abs(posed - expect).max()
        moved = np.linalg.norm(posed - rest_pts[obj.name], axis=1)
        print(f"{obj.name}: Blender's skinning vs the engine's, max {1000 * err:.4f} mm (moves up to "
              f"{1000 * moved.max():.0f} mm, {int((moved < 1e-4).sum())} vertices stay)")  # fmt: skip
        assert err < 5e-4 and moved.max() > 0.02


def test_a_turned_eye_bone_is_sent_as_the_eyeballs_whole_gaze(addon, bundle_dir):
    """An eye bone turned by hand reaches the neural render's request as the motion Blender gives that eyeball:
    the bone's turn after what the eyeball's own look keys (driven by the skin's slider) do, so the engine can
    use it in place of the look keys' eyeball motion. Blender's evaluated eyeball lands within 0.3 mm of the
    sent motion applied to its rest vertices, the engine takes the pose, and an eye at rest on the head is not
    sent; with the scan head's keys (the proxy's rig) no eye is sent."""
    from mathutils import Quaternion

    from blender_addon import conventions as cv
    from blender_addon import scene_io
    from blender_addon.livelink import rotation_quaternion
    from engine.rig.pose import check_pose, eye_gaze

    if "asset_glb" not in json.loads((bundle_dir / "manifest.json").read_text())["files"]:
        pytest.skip("the bundle has no asset (the head prior is not prepared)")
    assert bpy.ops.likeness.import_avatar(directory=str(bundle_dir)) == {"FINISHED"}
    av = scene_io.find_avatar(bpy.context)
    arm = scene_io.pose_armature(av)
    eye = next(o for o in av.collection.all_objects if o.get(scene_io.common.ROLE) == "asset_eye_L")
    skin = next(o for o in av.collection.all_objects if o.get(scene_io.common.ROLE) == "asset_skin")

    def evaluated(obj) -> np.ndarray:
        ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        pts = [cv.blender_to_engine_point(obj.matrix_world @ v.co) for v in ev.to_mesh().vertices]
        ev.to_mesh_clear()
        return np.array(pts)

    for kb in skin.data.shape_keys.key_blocks[1:]:
        kb.value = 0.0
    bpy.context.view_layer.update()
    rest = evaluated(eye)
    skin.data.shape_keys.key_blocks["eyeLookOutLeft"].value = 0.6
    pb = arm.pose.bones["eye_L"]
    q = pb.bone.matrix_local.to_quaternion()
    pb.rotation_mode = "QUATERNION"
    pb.rotation_quaternion = q.inverted() @ Quaternion(rotation_quaternion(0.2, -0.15, 0.0)) @ q
    bpy.context.view_layer.update()
    (req,) = scene_io.frame_requests(bpy.context.scene, av.camera, av, [bpy.context.scene.frame_current])
    assert req[4] == "asset" and set(req[5]) == {"eye_L"}
    m = np.array(req[5]["eye_L"])
    got = evaluated(eye)
    err = np.abs(rest @ m[:3, :3].T + m[:3, 3] - got).max()
    turn = np.degrees(np.arccos((np.trace(m[:3, :3]) - 1) / 2))
    moved = np.linalg.norm(got - rest, axis=1).max()
    print(f"eye_L: sent {turn:.1f} deg; Blender's eyeball vs the sent motion, max {1000 * err:.3f} mm "
          f"(it moves up to {1000 * moved:.1f} mm)")  # fmt: skip
    assert err < 3e-4 and moved > 0.002
    assert set(eye_gaze(check_pose(req[5]))) == {"eye_L"}
    (req,) = scene_io.frame_requests(bpy.context.scene, av.camera, av, [bpy.context.scene.frame_current], "SCAN")
    assert req[4] == "proxy" and req[5] is None
    pb.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
    bpy.context.view_layer.update()
    (req,) = scene_io.frame_requests(bpy.context.scene, av.camera, av, [bpy.context.scene.frame_current])
    assert req[5] is None
