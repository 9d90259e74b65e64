"""The add-on against a real engine process (``python -m engine serve``): the stdlib client, and in ``bpy`` the
whole artist flow -- engine started on first use, build on the draft preset (with the tiny settings of
engine.config.TINY_OVERRIDES) with progress and cancel, import, neural render of the imported camera, engine
stopped when the add-on goes away."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from blender_addon.client import (
    BadInput,
    BuildOptions,
    EngineClient,
    EngineError,
    EngineUnreachable,
    FieldMissing,
    LocalEngine,
    NotFound,
    Unauthorized,
)

pytestmark = pytest.mark.slow  # a real server process / build (make quick skips it)

pytest.importorskip("engine.server", reason="the engine server (issue 3) is not in this checkout")
pytest.importorskip("fastapi", reason="the engine server needs the [server] extra")

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory, astronaut_png) -> Path:
    p = tmp_path_factory.mktemp("photo") / "astronaut.png"
    p.write_bytes(astronaut_png)
    return p


def test_client_against_a_real_engine(tmp_path):
    engine = LocalEngine(sys.executable, tmp_path / "ws")
    try:
        starter = threading.Thread(target=engine.start)  # as the add-on does: from a worker thread that then ends
        starter.start()
        starter.join()
        client = engine.client()
        h = client.check_compatible()  # the engine outlives the thread that started it
        assert h.api_version == 1 and h.device and h.engine_version
        assert client.avatars() == []
        with pytest.raises(Unauthorized):
            EngineClient(engine.url, "wrong-token").health()
        with pytest.raises(BadInput) as exc:
            client.submit_build(b"this is not an image", "notes.png", BuildOptions(quality="draft"))
        assert exc.value.code and exc.value.message
        with pytest.raises(NotFound):
            client.job("0" * 32)
        with pytest.raises(NotFound):
            client.manifest("no-such-avatar")
    finally:
        engine.stop()
    assert not engine.running()
    with pytest.raises(EngineUnreachable, match="not reachable"):
        EngineClient(engine.url, engine.token, timeout_s=2.0).health()


def test_download_replaces_only_a_bundle_and_never_leaves_the_folder_empty(tmp_path, draft_bundle):
    import shutil

    from blender_addon.client import DestinationRefused

    avatar_id = "ab" * 16
    ws = tmp_path / "ws"
    shutil.copytree(draft_bundle, ws / "avatars" / avatar_id)
    engine = LocalEngine(sys.executable, ws)
    try:
        engine.start()
        client = engine.client()
        mine = tmp_path / "dl" / "mine"
        mine.mkdir(parents=True)
        (mine / "notes.txt").write_text("my notes")
        with pytest.raises(DestinationRefused, match="not a Likeness avatar bundle"):
            client.download_bundle(avatar_id, mine, ("glb",))
        assert [p.name for p in mine.iterdir()] == ["notes.txt"]
        (tmp_path / "dl" / "file").write_text("x")
        with pytest.raises(DestinationRefused, match="is a file"):
            client.download_bundle(avatar_id, tmp_path / "dl" / "file", ("glb",))
        dest = tmp_path / "dl" / avatar_id
        client.download_bundle(avatar_id, dest, ("glb",))
        client.download_bundle(avatar_id, dest, ("glb", "texture"))  # over the first download
        assert sorted(p.name for p in dest.iterdir()) == ["head.glb", "manifest.json", "texture.png"]
        assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [avatar_id, "file", "mine"], "no leftovers"
    finally:
        engine.stop()


def test_a_local_engine_starts_whatever_its_token(tmp_path):
    """The token reaches the engine through its environment: one that starts with "-" (a 1 in 64 draw of
    token_urlsafe) used to be read as an option by `likeness serve`, which exited with code 2; and the command
    line, which `ps` shows every user, does not carry it."""
    engine = LocalEngine(sys.executable, tmp_path / "ws")
    engine.token = "-" + engine.token[1:]
    try:
        client = engine.start(timeout_s=120)
        assert client.avatars() == []  # an authorised request: the engine took the token
        with open(f"/proc/{engine.proc.pid}/cmdline", "rb") as fh:
            assert engine.token.encode() not in fh.read()
        with pytest.raises(Unauthorized):
            EngineClient(engine.url, "wrong-" + engine.token).avatars()
    finally:
        engine.stop()


def test_a_local_engine_that_cannot_start_says_why(tmp_path):
    bad = tmp_path / "python"
    bad.write_text("#!/bin/sh\necho 'No module named engine' >&2\nexit 1\n")
    bad.chmod(0o755)
    engine = LocalEngine(str(bad), tmp_path / "ws")
    with pytest.raises(EngineUnreachable, match="exited with code 1: No module named engine"):
        engine.start(timeout_s=30)


def _bundle_copy(src: Path, dest: Path, field: bool = True, asset: bool = False) -> Path:
    """A bundle folder on disk as an artist has it (without the turntable and views, which rendering does not need,
    and the asset unless ``asset``); ``field=False``: as a download from an engine, without the radiance field."""
    skip = ["turntable*", "view_*", *([] if asset else ["asset"]), *([] if field else ["field.safetensors"])]
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*skip))
    return dest


def _work_camera(manifest: dict, size: int) -> tuple[list, dict]:
    w = manifest["camera"]["work"]["intrinsics"]
    k = size / w["width"]
    return manifest["camera"]["cam2world"], {
        **{n: w[n] * k for n in ("fx", "fy", "cx", "cy")},
        "width": size,
        "height": size,
    }


def test_client_uploads_a_bundle_folder_the_engine_did_not_build(tmp_path, bundle_dir):
    from blender_addon.client.bundle_upload import CHUNK_BYTES, multipart_stream, upload_parts

    folder = _bundle_copy(bundle_dir, tmp_path / "on_disk")
    downloaded = _bundle_copy(bundle_dir, tmp_path / "downloaded", field=False)
    parts = upload_parts(folder)
    assert [name for name, _ in parts] == ["manifest", "field", "landmarks", "expression"]
    chunks, length = multipart_stream(parts, "b")
    sizes = [len(c) for c in chunks]
    assert sum(sizes) == length and max(sizes) <= CHUNK_BYTES  # streamed from the files, a chunk at a time

    engine = LocalEngine(sys.executable, tmp_path / "ws")
    try:
        client = engine.start()
        field_size = (folder / "field.safetensors").stat().st_size
        assert client.check_compatible().max_field_bytes >= field_size
        with pytest.raises(FieldMissing, match="has no radiance field") as exc:
            client.upload_bundle(downloaded)
        assert "connect to the engine that built" in exc.value.hint
        with pytest.raises(BadInput, match="accepts fields of at most 1 MiB") as exc:
            client.upload_bundle(folder, max_field_bytes=2**20)  # refused before anything is sent
        assert exc.value.code == "payload_too_large" and "LIKENESS_MAX_FIELD_BYTES" in exc.value.hint
        assert client.avatars() == []

        avatar_id = client.upload_bundle(folder)
        assert client.upload_bundle(folder) == avatar_id  # the same files: the same avatar, stored once
        assert [a.id for a in client.avatars()] == [avatar_id] and client.has_avatar(avatar_id)
        cam2world, intrinsics = _work_camera(json.loads((folder / "manifest.json").read_text()), 32)
        assert client.render(avatar_id, cam2world, intrinsics, {"jawOpen": 0.5})[:8] == b"\x89PNG\r\n\x1a\n"

        # with its asset: sent when the engine takes one (its health says how large), its keys drive the field
        if (bundle_dir / "asset" / "head.glb").is_file():
            with_asset = _bundle_copy(bundle_dir, tmp_path / "with_asset", asset=True)
            glb_size = (with_asset / "asset" / "head.glb").stat().st_size
            cap = client.health().max_asset_bytes
            assert cap >= glb_size
            assert [n for n, _ in upload_parts(with_asset, cap)][-1] == "asset_glb"
            assert "asset_glb" not in dict(upload_parts(with_asset, 0))  # an engine that takes no asset
            assert "asset_glb" not in dict(upload_parts(with_asset, glb_size - 1))  # too large: left out
            asset_id = client.upload_bundle(with_asset)
            assert asset_id != avatar_id and client.manifest(asset_id)["files"]["asset_glb"] == "asset/head.glb"
            assert client.render(asset_id, cam2world, intrinsics, {"jawOpen": 0.5}, rig="asset")[:4] == b"\x89PNG"
            with pytest.raises(EngineError, match="no asset") as exc:
                client.render(avatar_id, cam2world, intrinsics, {"jawOpen": 0.5}, rig="asset")
            assert exc.value.code == "no_asset"
    finally:
        engine.stop()


bpy = None


@pytest.fixture(scope="module")
def blender():
    global bpy
    bpy = pytest.importorskip("bpy", reason="needs the bpy module")
    import addon_utils

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))

    def fail(exc):
        raise exc

    addon_utils.enable("blender_addon", default_set=True, handle_error=fail)
    bpy.ops.wm.read_homefile(use_empty=True)
    yield bpy
    addon_utils.disable("blender_addon", default_set=True, handle_error=fail)


def _pump_until_done(task, timeout_s: float, on_tick=None):
    from blender_addon import jobs

    t0 = time.monotonic()
    while not task.finished:
        jobs.pump()  # what the bpy.app.timers callback does in the UI
        if on_tick:
            on_tick(task)
        assert time.monotonic() - t0 < timeout_s, f"{task.label} did not finish: {task.stage} {task.progress}"
        time.sleep(0.1)


@pytest.mark.blender
def test_build_import_and_neural_render_through_the_engine(blender, tmp_path, photo_file, monkeypatch):
    from PIL import Image

    from blender_addon import engine_link, jobs, scene_io
    from engine.config import TINY_OVERRIDES

    # the engine the add-on starts inherits this environment: its builds use the tiny settings (every stage in
    # seconds; what is checked here is the add-on's flow, not the fit)
    monkeypatch.setenv("LIKENESS_BUILD_OVERRIDES", json.dumps(TINY_OVERRIDES))
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.mode, prefs.python_path, prefs.workspace = "LOCAL", sys.executable, str(tmp_path / "ws")
    prefs.cache_dir = str(tmp_path / "downloads")

    # the engine starts on first use; the connection test reports its version and device
    assert engine_link.local_engine() is None
    assert bpy.ops.likeness.test_connection(wait=True) == {"FINISHED"}
    status = bpy.context.window_manager.likeness.engine_status
    assert status.startswith("Connected: Likeness engine") and "API v1" in status, status
    proc = engine_link.local_engine().proc

    # a build can be cancelled while it runs (standard preset: a different job from the draft one below)
    assert bpy.ops.likeness.build(filepath=str(photo_file), quality="standard") == {"FINISHED"}
    task = jobs.latest("build")

    def cancel_once_running(t):
        if t.stage not in ("", "connecting", "uploading", "queued") and not t.cancelled():
            t.cancel()  # what the panel's Cancel button (likeness.cancel) does

    _pump_until_done(task, 180, cancel_once_running)
    assert task.state == "cancelled", (task.state, task.error)

    # build on the draft preset without blocking: progress arrives through the same pump the timer runs
    seen = []
    # with the asset's per-head UVs (docs/ASSET.md): the option travels to the engine's build settings
    args = {"quality": "draft", "uv_layout": "subject", "import_after": True}
    assert bpy.ops.likeness.build(filepath=str(photo_file), **args) == {"FINISHED"}
    task = jobs.latest("build")
    assert not task.finished  # the operator returned at once
    _pump_until_done(task, BUILD_TIMEOUT_S, lambda t: seen.append((t.stage, t.progress, t.eta_s)))
    assert task.state == "succeeded", task.error
    stages = {s for s, _, _ in seen}
    progress = [p for _, p, _ in seen]
    assert len(stages) >= 3 and progress == sorted(progress) and any(e is not None for _, _, e in seen), stages
    avatar = scene_io.find_avatar(bpy.context)
    assert avatar is not None and avatar.info["avatar_id"] == task.result["avatar_id"]
    assert avatar.info["quality"] == "draft" and avatar.head is not None and avatar.camera is not None
    manifest = json.loads((Path(avatar.info["bundle_dir"]) / "manifest.json").read_text())
    assert manifest["settings"]["uv_layout"] == "subject"
    assert manifest["settings"]["iterations"] == TINY_OVERRIDES["iterations"]  # the tiny build it was meant to be
    bg = avatar.camera.data.background_images[0].image
    assert Path(bg.filepath) == photo_file  # the real photo behind the camera
    _pump_until_done(jobs.latest("list"), 30)
    assert task.result["avatar_id"] in [a.avatar_id for a in bpy.context.window_manager.likeness.avatars]

    # importing from the engine's list downloads the bundle when it is not cached yet
    prefs.cache_dir = str(tmp_path / "downloads2")
    avatar_id = task.result["avatar_id"]
    assert bpy.ops.likeness.import_avatar(avatar_id=avatar_id, wait=True) == {"FINISHED"}
    again = scene_io.find_avatar(bpy.context)
    assert again.name != avatar.name and again.info["avatar_id"] == avatar_id
    assert (tmp_path / "downloads2" / avatar_id / "head.glb").is_file()
    assert not (tmp_path / "downloads2" / avatar_id / "field.safetensors").exists()  # only what Blender needs
    for obj in list(again.collection.all_objects):
        bpy.data.objects.remove(obj)
    bpy.data.collections.remove(again.collection)
    assert bpy.ops.likeness.photo_camera(avatar=avatar.name) == {"FINISHED"}  # back to the first import's camera
    assert bpy.context.scene.camera == avatar.camera

    # neural render of the imported photo camera (quarter size) sits where the mesh render does
    scene = bpy.context.scene
    scene.render.resolution_percentage = 25
    assert bpy.ops.likeness.neural_render(mode="CURRENT", output_dir=str(tmp_path / "renders"), wait=True) == {
        "FINISHED"
    }
    img = bpy.data.images[f"Neural {avatar.camera.name}"]
    assert tuple(img.size) == (128, 128)
    assert avatar.camera.data.background_images[-1].image == img
    neural_alpha = np.asarray(Image.open(img.filepath))[..., 3] > 127
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light, scene.display.shading.color_type = "FLAT", "SINGLE"
    scene.render.film_transparent = True
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.filepath = str(tmp_path / "mesh.png")
    bpy.ops.render.render(write_still=True)
    mesh_alpha = np.asarray(Image.open(tmp_path / "mesh.png"))[..., 3] > 127
    iou = (neural_alpha & mesh_alpha).sum() / (neural_alpha | mesh_alpha).sum()
    print(f"neural render vs Blender mesh render, photo camera: IoU {iou:.3f}")
    assert iou > 0.9

    # over a frame range, following the turntable animation: an image sequence
    assert bpy.ops.likeness.turntable(frame_start=1, frame_end=3) == {"FINISHED"}
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.render.resolution_percentage = 100
    assert bpy.ops.likeness.neural_render(mode="RANGE", output_dir=str(tmp_path / "seq"), wait=True) == {"FINISHED"}
    files = sorted((tmp_path / "seq").glob("neural_*.png"))
    assert [f.name[-8:] for f in files] == ["0001.png", "0002.png", "0003.png"]
    a0, a1 = (np.asarray(Image.open(f))[..., :3].astype(float) for f in files[:2])
    assert np.abs(a0 - a1).mean() > 1.0  # the camera moved between frames
    assert bpy.data.images[f"Neural {scene.camera.name} sequence"].source == "SEQUENCE"

    # the headless script's neural turntable, through the same engine, from the downloaded bundle
    engine = engine_link.local_engine()
    out = tmp_path / "tt_neural"
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "turntable.py"),
        "--bundle",
        task.result["bundle_dir"],
        "-o",
        str(out),
        "--renderer",
        "neural",
        "--engine-url",
        engine.url,
        f"--token={engine.token}",  # a token may start with "-"
        "--frames",
        "2",
        "--size",
        "64",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(list((out / "frames").glob("neural_*.png"))) == 2 and (out / "turntable.mp4").stat().st_size > 500

    # the add-on going away stops the engine it started
    import addon_utils

    addon_utils.disable("blender_addon", default_set=True)
    assert proc.poll() is not None
    addon_utils.enable("blender_addon", default_set=True)


@pytest.mark.blender
def test_a_bundle_imported_from_disk_renders_through_an_engine_that_did_not_build_it(blender, tmp_path, bundle_dir):
    from PIL import Image

    from blender_addon import engine_link, scene_io
    from blender_addon.operators.render import UPLOADED_ID
    from engine.avatar import load_avatar
    from engine.conventions import Intrinsics
    from engine.extract.export import rgba_u8
    from engine.rig import deform_for_avatar

    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.mode, prefs.python_path, prefs.workspace = "LOCAL", sys.executable, str(tmp_path / "ws")
    scene = bpy.context.scene

    def render(avatar, out: str):
        scene.camera = avatar.camera
        scene.render.resolution_x = scene.render.resolution_y = 48
        scene.render.resolution_percentage = 100
        return bpy.ops.likeness.neural_render(avatar=avatar.name, mode="CURRENT", output_dir=out, wait=True)

    # a bundle downloaded from another engine has no field: the render says so, and what to do
    assert bpy.ops.likeness.import_avatar(directory=str(_bundle_copy(bundle_dir, tmp_path / "dl", field=False)))
    with pytest.raises(RuntimeError, match="has no radiance field .*connect to the engine that built"):
        render(scene_io.find_avatar(bpy.context), str(tmp_path / "r0"))

    # the whole bundle folder, imported from disk: its field (and asset) go to the fresh engine once, then it renders
    folder = _bundle_copy(bundle_dir, tmp_path / "on_disk", asset=True)
    assert bpy.ops.likeness.import_avatar(directory=str(folder)) == {"FINISHED"}
    avatar = scene_io.find_avatar(bpy.context)
    assert avatar.info["avatar_id"] == "" and UPLOADED_ID not in avatar.info
    assert render(avatar, str(tmp_path / "r1")) == {"FINISHED"}
    uploaded = avatar.info[UPLOADED_ID]
    stored = tmp_path / "ws" / "avatars"
    assert [p.name for p in stored.iterdir() if not p.name.startswith(".")] == [uploaded]
    img = bpy.data.images[f"Neural {avatar.camera.name}"]
    assert tuple(img.size) == (48, 48)
    served = np.asarray(Image.open(img.filepath), np.int16)

    # the pixels are the bundle's own: the same request rendered in-process from the folder
    [(_, cam2world, intrinsics, expression, rig, pose)] = scene_io.frame_requests(
        scene, avatar.camera, avatar, [scene.frame_current]
    )
    if (folder / "asset" / "head.glb").is_file():  # Keys From: Auto -- the asset skin's keys, on the asset rig
        from engine.rig.asset_rig import read_asset_keys

        defaults = read_asset_keys(folder / "asset" / "head.glb").default_weights
        assert rig == "asset" and max(expression.values()) == pytest.approx(defaults.max(), abs=1e-5)
    local = load_avatar(folder)
    deform = None if expression is None else deform_for_avatar(local, expression, rig=rig)
    mine = rgba_u8(local.render(np.array(cam2world), Intrinsics.from_dict(intrinsics), deform=deform)).astype(np.int16)
    print(f"neural render of an uploaded bundle vs in-process: max |diff| {np.abs(served - mine).max()}")
    assert np.abs(served - mine).max() <= 2 and (mine[..., 3] > 128).mean() > 0.05  # the head in the photo frame
    assert pose is None  # the armature at rest

    # the asset armature's head bone turned (as the Live Link import keys it): the neural render turns the head too
    arm = scene_io.pose_armature(avatar)
    if arm is not None:
        from mathutils import Quaternion

        from blender_addon.livelink import rotation_quaternion
        from engine.asset.skinning import pose_deform

        pb = arm.pose.bones["head"]
        rest = pb.bone.matrix_local.to_quaternion()
        pb.rotation_mode = "QUATERNION"
        pb.rotation_quaternion = rest.inverted() @ Quaternion(rotation_quaternion(0.4, 0.1, 0.0)) @ rest
        bpy.context.view_layer.update()
        [(_, cam2world, intrinsics, expression, rig, pose)] = scene_io.frame_requests(
            scene, avatar.camera, avatar, [scene.frame_current]
        )
        assert set(pose) == {"head"}
        assert render(avatar, str(tmp_path / "r1t")) == {"FINISHED"}
        turned = np.asarray(Image.open(bpy.data.images[f"Neural {avatar.camera.name}"].filepath), np.int16)
        deform = pose_deform(local, pose, None if expression is None else deform_for_avatar(local, expression, rig=rig))
        mine = rgba_u8(local.render(np.array(cam2world), Intrinsics.from_dict(intrinsics), deform=deform))
        print(f"head bone turned: served vs in-process max |diff| {np.abs(turned - mine.astype(np.int16)).max()}")
        assert np.abs(turned - mine.astype(np.int16)).max() <= 2 and np.abs(turned - served).max() > 32
        pb.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
        bpy.context.view_layer.update()

    # the next render uses the remembered id: nothing is sent again (the folder's field may even be gone now)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in stored.rglob("*"))
    (folder / "field.safetensors").unlink()
    assert render(avatar, str(tmp_path / "r2")) == {"FINISHED"}
    assert sorted((p.name, p.stat().st_mtime_ns) for p in stored.rglob("*")) == before
    engine_link.stop_local_engine()
