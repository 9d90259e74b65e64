"""The artist asset's levels of detail in the real ``bpy`` module: a bundle whose asset has head_subd1.glb imports
one skin per level beside one set of eyes, teeth, tongue, armature and camera; the LOD enum offers exactly the
levels present and switching shows one skin; expressions (set, and a Live Link take) reach every level; every
level is skinned to the one armature. Bundles with level 0 only, or no asset at all, still import."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the bpy module (pip install bpy==5.0.1)")
import test_addon_blender as tab  # noqa: E402  (its enable / disable)
import test_addon_livelink as tll  # noqa: E402  (its take)

from blender_addon import scene_io  # noqa: E402
from blender_addon.bundle import read_bundle  # noqa: E402
from blender_addon.livelink import read_csv  # noqa: E402
from engine.rig.arkit import ARKIT_NAMES  # noqa: E402

pytestmark = [pytest.mark.blender, pytest.mark.slow]
NAME = "astronaut"


@pytest.fixture
def addon():
    """The add-on enabled on an empty scene; disabled afterwards (as in test_addon_blender)."""
    mod = tab.enable()
    bpy.ops.wm.read_homefile(use_empty=True)
    yield mod
    tab.disable()


@pytest.fixture
def take_csv(tmp_path) -> Path:
    """test_addon_livelink's take: 30 rows at 60 fps, jawOpen and eyeBlinkLeft moving, the app's file format."""
    path = tmp_path / "take.csv"
    tll.ell.write_csv(path, tll._take(), start_s=tll.START_S)
    return path


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("turntable*", "view_*"))
    return dst


def _write_manifest(path: Path, manifest: dict) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest, indent=1))


@pytest.fixture(scope="module")
def lod_bundle(bundle_dir, tmp_path_factory) -> Path:
    """The test bundle with its asset subdivided once: as built when it already has head_subd1.glb, else a copy
    whose asset the engine writes again with ``subdiv=1`` (256 px textures, a few seconds)."""
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    files = manifest["files"]
    if "asset_glb" not in files:
        pytest.skip("the bundle has no asset (the head prior is not prepared)")
    if "asset_subd1_glb" in files:
        return bundle_dir
    from engine.asset.build import asset_files, build_asset

    out = _copy(bundle_dir, tmp_path_factory.mktemp("lod") / "bundle")
    shutil.rmtree(out / "asset")
    build_asset(out, texture_size=256, subdiv=1)
    files = {k: v for k, v in files.items() if not k.startswith("asset_")}
    files |= {f"asset_{k}": f"asset/{v}" for k, v in asset_files(1).items()}
    _write_manifest(out, dict(manifest, files=files))
    assert (out / "asset" / "head_subd1.glb").is_file()
    return out


def _levels(bundle: Path) -> list[int]:
    files = json.loads((bundle / "manifest.json").read_text())["files"]
    return [0] + [k for k in (1, 2) if f"asset_subd{k}_glb" in files]


def _import(path: Path):
    assert bpy.ops.likeness.import_avatar(directory=str(path)) == {"FINISHED"}
    av = scene_io.find_avatar(bpy.context)
    return av, scene_io.asset_collection(av)


def _offered(coll) -> list[int]:
    """The levels the enum accepts, tried through RNA (a dynamic enum refuses an identifier it does not offer)."""
    ok = []
    for k in (0, 1, 2):
        try:
            coll.likeness_asset.lod = f"LOD{k}"
        except TypeError:
            continue
        ok.append(k)
    return ok


def _evaluated(obj) -> np.ndarray:
    """The evaluated (shape keys, armature) vertex positions of ``obj`` in world space, (N, 3)."""
    dg = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(dg)
    co = np.empty(len(ev.data.vertices) * 3, np.float32)
    ev.data.vertices.foreach_get("co", co)
    m = np.array(ev.matrix_world)
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


def _key_co(kb) -> np.ndarray:
    co = np.empty(len(kb.data) * 3, np.float32)
    kb.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def test_levels_are_one_tidy_asset_with_one_rig(addon, lod_bundle):
    levels = _levels(lod_bundle)
    assert 1 in levels
    av, sub = _import(lod_bundle)
    assert sub is not None and sub.name == f"{NAME} asset" and sub.name in av.collection.children
    skins = scene_io.lod_skins(sub)
    assert list(skins) == levels
    for k, skin in skins.items():
        assert skin.name == (f"{NAME} asset skin" if k == 0 else f"{NAME} asset skin LOD{k}")
        assert skin[scene_io.ROLE] == ("asset_skin" if k == 0 else f"asset_skin_lod{k}")
        assert skin[scene_io.LOD_PROP] == k and skin.name in sub.objects
    n0 = len(skins[0].data.vertices)
    for k in levels[1:]:
        assert len(skins[k].data.vertices) > 3 * n0  # really the subdivided skin, not level 0 again
    # eyes, teeth, tongue, armature and camera once: nothing of the level files' own copies is left
    roles = [o[scene_io.ROLE] for o in sub.objects]
    for part in ("eye_L", "eye_R", "teeth_upper", "teeth_lower", "tongue", "photo_camera"):
        assert roles.count(f"asset_{part}") == 1, roles
    assert sum(o.type == "ARMATURE" for o in sub.objects) == 1 and sum(o.type == "CAMERA" for o in sub.objects) == 1
    hair = roles.count("asset_hair")
    assert hair == (json.loads((lod_bundle / "asset" / "asset.json").read_text()).get("hair") is not None)
    assert len(sub.objects) == 6 + hair + 1 + len(levels)  # the parts (+ the hair, once), the armature, the skins
    assert len(bpy.data.armatures) == 1
    assert len([m for m in bpy.data.materials if m.name.startswith("likeness_skin")]) == 1
    assert not [b.name for b in (*bpy.data.materials, *bpy.data.meshes, *bpy.data.images) if b.users == 0]
    stray = set(bpy.data.objects) - set(av.collection.all_objects)
    arm = next(o for o in sub.objects if o.type == "ARMATURE")
    assert stray <= {pb.custom_shape for pb in arm.pose.bones}  # only the glTF importer's bone shape
    assert "glTF_not_exported" not in bpy.data.collections
    # find_avatar and friends see the same avatar from any level's skin
    for skin in skins.values():
        bpy.context.view_layer.objects.active = skin
        assert scene_io.find_avatar(bpy.context).collection == av.collection
    assert av.head is not None and av.camera is not None

    # one rig: every level parented and skinned to the one armature, with the same bone groups and materials
    for skin in skins.values():
        assert skin.parent == arm and skin.parent_type == "OBJECT"
        assert [m.object for m in skin.modifiers if m.type == "ARMATURE"] == [arm]
        assert {g.name for g in skin.vertex_groups} == {g.name for g in skins[0].vertex_groups}
        assert list(skin.data.materials) == list(skins[0].data.materials)
        assert [kb.name for kb in skin.data.shape_keys.key_blocks] == ["Basis", *ARKIT_NAMES]

    # a head turn moves every level alike
    rest = {}
    for k in levels:
        scene_io.show_lod(sub, k)
        rest[k] = _evaluated(skins[k])
    pb = arm.pose.bones["head"]
    pb.rotation_mode = "XYZ"
    pb.rotation_euler = (0.0, 0.0, 0.35)
    moved = {}
    for k in levels:
        scene_io.show_lod(sub, k)
        moved[k] = np.linalg.norm(_evaluated(skins[k]) - rest[k], axis=1)
    for k in levels:
        assert moved[k].max() > 0.02, k  # the face swings by centimetres
        assert moved[k].mean() == pytest.approx(moved[0].mean(), rel=0.1), (k, moved[k].mean(), moved[0].mean())


def test_lod_enum_offers_the_levels_present_and_switches_the_skins(addon, lod_bundle):
    levels = _levels(lod_bundle)
    av, sub = _import(lod_bundle)
    skins = scene_io.lod_skins(sub)
    assert sub.likeness_asset.lod == "LOD0" and scene_io.shown_lod(sub) == 0
    for k, skin in skins.items():  # level 0 shows after import
        assert (skin.hide_viewport, skin.hide_render) == ((k != 0),) * 2
    assert _offered(sub) == levels
    for level in [*reversed(levels), *levels]:
        sub.likeness_asset.lod = f"LOD{level}"
        for k, skin in skins.items():
            assert skin.hide_viewport == (k != level) and skin.hide_render == (k != level), (level, k)
        assert scene_io.shown_lod(sub) == level
    missing = [k for k in (1, 2) if k not in levels]
    for k in missing:
        with pytest.raises(TypeError, match="not found"):
            sub.likeness_asset.lod = f"LOD{k}"
    with pytest.raises(ValueError, match="no skin of level"):
        scene_io.show_lod(sub, 3)

    # the panel's switch between the asset and the scan head
    layer = bpy.context.view_layer
    assert not scene_io.asset_shown(layer, sub) and sub.hide_render  # the asset starts hidden
    assert bpy.ops.likeness.show_asset(show=True) == {"FINISHED"}
    assert scene_io.asset_shown(layer, sub) and not sub.hide_render
    assert av.head.hide_get() and av.head.hide_render
    assert bpy.ops.likeness.show_asset(show=False) == {"FINISHED"}
    assert not scene_io.asset_shown(layer, sub) and sub.hide_render and not av.head.hide_get()


def test_expression_reaches_every_level(addon, lod_bundle):
    levels = _levels(lod_bundle)
    av, sub = _import(lod_bundle)
    skins = scene_io.lod_skins(sub)
    targets = scene_io.livelink_targets(bpy.context, av.name)
    # level 0's skin takes the keys; the finer levels and the parts follow it through drivers
    assert skins[0] in targets.meshes and av.head in targets.meshes
    assert not [o.name for o in targets.meshes if o.name in sub.objects and o != skins[0]]
    assert scene_io.set_expression(targets, {"JawOpen": 0.0, "eyeBlink_L": 0.0}) == 4  # head + skin, 2 each
    before = {}
    for k in levels:
        sub.likeness_asset.lod = f"LOD{k}"
        bpy.context.view_layer.update()
        before[k] = _evaluated(skins[k])
    assert scene_io.set_expression(targets, {"JawOpen": 0.7, "eyeBlink_L": 0.4}) == 4
    assert av.head.data.shape_keys.key_blocks["jawOpen"].value == pytest.approx(0.7)
    for k in levels:
        sub.likeness_asset.lod = f"LOD{k}"
        bpy.context.view_layer.update()
        kbs = skins[k].data.shape_keys.key_blocks
        assert kbs["jawOpen"].value == pytest.approx(0.7) and kbs["eyeBlinkLeft"].value == pytest.approx(0.4), k
        # and the surface moves by those amounts of the level's own shapes (the armature is at rest)
        basis = _key_co(kbs["Basis"])
        want = 0.7 * (_key_co(kbs["jawOpen"]) - basis) + 0.4 * (_key_co(kbs["eyeBlinkLeft"]) - basis)
        got = _evaluated(skins[k]) - before[k]
        assert np.abs(want).max() > 0.005
        np.testing.assert_allclose(got, want, atol=2e-5)
    teeth = next(o for o in sub.objects if o[scene_io.ROLE] == "asset_teeth_lower")
    assert teeth.data.shape_keys.key_blocks["jawOpen"].value == pytest.approx(0.7)


def test_live_link_take_reaches_every_level(addon, lod_bundle, take_csv):
    levels = _levels(lod_bundle)
    av, sub = _import(lod_bundle)
    skins = scene_io.lod_skins(sub)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 60, 1.0
    bpy.context.view_layer.objects.active = av.head
    assert bpy.ops.likeness.import_livelink_csv(filepath=str(take_csv), frame_start=1) == {"FINISHED"}
    take = read_csv(take_csv)
    assert skins[0].data.shape_keys.animation_data.action is not None
    for k in levels[1:]:  # driven, not keyed: keys there would be overridden
        anim = skins[k].data.shape_keys.animation_data
        assert anim.action is None and len(anim.drivers) == len(ARKIT_NAMES)
    for row in (3, 17, 29):
        scene.frame_set(1 + row)  # one row per frame at the take's rate
        for k in levels:
            sub.likeness_asset.lod = f"LOD{k}"
            bpy.context.view_layer.update()
            kbs = skins[k].data.shape_keys.key_blocks
            for name in ("jawOpen", "eyeBlinkLeft", "mouthSmileRight"):
                assert kbs[name].value == pytest.approx(take.shapes[name][row], abs=1e-4), (row, k, name)


def test_bundles_with_level_0_only_or_no_asset_still_import(addon, lod_bundle, tmp_path):
    manifest = json.loads((lod_bundle / "manifest.json").read_text())
    only0 = _copy(lod_bundle, tmp_path / "only0")
    files = {k: v for k, v in manifest["files"].items() if not k.startswith("asset_subd")}
    for f in (only0 / "asset").glob("*subd*"):
        f.unlink()
    _write_manifest(only0, dict(manifest, files=files))
    av, sub = _import(only0)
    assert list(scene_io.lod_skins(sub)) == [0] and _offered(sub) == [0]
    skin = scene_io.lod_skins(sub)[0]
    assert not skin.hide_viewport and not skin.hide_render
    assert skin.name == f"{NAME} asset skin"

    # a level file that does not import is left out with a warning; the rest imports
    broken = _copy(lod_bundle, tmp_path / "broken")
    (broken / "asset" / "head_subd1.glb").write_bytes(b"glTF not really")
    bpy.ops.wm.read_homefile(use_empty=True)
    av = scene_io.import_bundle(bpy.context, read_bundle(broken))  # what the operator reports as warnings
    sub = scene_io.asset_collection(av)
    left = [k for k in _levels(lod_bundle) if k != 1]
    assert list(scene_io.lod_skins(sub)) == left and any("level 1" in w for w in av.warnings), av.warnings
    objects = len(bpy.data.objects)
    assert len(bpy.data.armatures) == 1 and objects == len(av.collection.all_objects) + 1  # + the bone shape

    old = _copy(lod_bundle, tmp_path / "old")
    shutil.rmtree(old / "asset")
    m = dict(manifest, files={k: v for k, v in manifest["files"].items() if not k.startswith("asset_")})
    m.pop("asset", None)
    _write_manifest(old, m)
    bpy.ops.wm.read_homefile(use_empty=True)
    av, sub = _import(old)
    assert sub is None and av.head is not None
    with pytest.raises(RuntimeError, match="has no asset"):
        bpy.ops.likeness.show_asset(show=True)
