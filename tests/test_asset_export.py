"""The asset's FBX and static OBJ (engine/asset/export.py, scripts/asset_export.py, docs/ASSET.md "Exports"):
exported through the real bpy module, read back with Blender's own FBX and OBJ importers in a fresh scene and
compared with the GLB itself (parts, the hair among them, vertex counts, UVs, the 52 ARKit keys vertex by vertex,
skinning, bones, camera, each material's colour and roughness maps); and the refusals: no Blender (exit code 2,
one line), a failing Blender (nothing in the folder changed)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from prior_support import prepared_prior

from engine.asset.export import EXPORT_FILES, blender_command
from engine.asset.maps import ROUGHNESS
from engine.cli import main
from engine.errors import BackendUnavailable

HAS_BPY = importlib.util.find_spec("bpy") is not None
needs_bpy = pytest.mark.skipif(not HAS_BPY, reason="needs the bpy module (pip install bpy==5.0.1)")

READ_BACK = r"""
import json, sys
import bpy
import numpy as np

kind, path, out = sys.argv[1:4]
bpy.ops.wm.read_factory_settings(use_empty=True)
if kind == "fbx":
    bpy.ops.import_scene.fbx(filepath=path)
else:
    bpy.ops.wm.obj_import(filepath=path)
got = {"meshes": {}, "bones": {}, "camera": None, "images": {}, "materials": {}}
for o in bpy.context.scene.objects:
    mw = np.array(o.matrix_world)
    world = lambda co: co @ mw[:3, :3].T + mw[:3, 3]
    if o.type == "MESH":
        me = o.data
        n = len(me.vertices)
        arrays = {}
        co = np.zeros(3 * n)
        me.vertices.foreach_get("co", co)
        arrays["basis"] = world(co.reshape(-1, 3))
        keys = me.shape_keys.key_blocks if me.shape_keys else []
        for kb in keys[1:]:
            kb.data.foreach_get("co", co)
            arrays["key_" + kb.name] = world(co.reshape(-1, 3))
        if me.uv_layers:
            uv, vi = np.zeros(2 * len(me.loops)), np.zeros(len(me.loops), dtype=np.int64)
            me.uv_layers[0].data.foreach_get("uv", uv)
            me.loops.foreach_get("vertex_index", vi)
            arrays["uv"], arrays["uv_vertex"] = uv.reshape(-1, 2), vi
        groups = {g.index: g.name for g in o.vertex_groups}
        arrays["group"] = np.array([groups[max(v.groups, key=lambda g: g.weight).group] if v.groups else ""
                                    for v in me.vertices])
        arrays["weight"] = np.array([max((g.weight for g in v.groups), default=0.0) for v in me.vertices])
        np.savez(f"{out}/{kind}_{o.name}.npz", **arrays)
        got["meshes"][o.name] = {
            "vertices": n, "uv_layers": len(me.uv_layers), "keys": [kb.name for kb in keys[1:]],
            "values": [kb.value for kb in keys[1:]], "materials": [m.name for m in me.materials if m],
            "armature": [m.object.name for m in o.modifiers if m.type == "ARMATURE" and m.object],
            "parent": o.parent.name if o.parent else None,
            "arrays": f"{out}/{kind}_{o.name}.npz"}
    elif o.type == "ARMATURE":
        for b in o.data.bones:
            got["bones"][b.name] = {"parent": b.parent.name if b.parent else None,
                                    "head": world(np.array(b.head_local)).tolist()}
        got["armature"] = o.name
    elif o.type == "CAMERA":
        c = o.data
        got["camera"] = {"lens": c.lens, "sensor_width": c.sensor_width, "sensor_height": c.sensor_height,
                         "matrix_world": mw.tolist()}
def image_into(sock):
    node = sock.links[0].from_node if sock.is_linked else None
    if node is None or node.type != "TEX_IMAGE" or node.image is None:
        return None
    img = node.image
    if img.size[0] and img.name not in saved:  # its pixels (RGB), top row first, as in the PNG
        px = np.zeros(img.channels * img.size[0] * img.size[1], np.float32)
        img.pixels.foreach_get(px)
        px = px.reshape(img.size[1], img.size[0], img.channels)[::-1, :, :3]
        np.save(saved.setdefault(img.name, f"{out}/{kind}_image_{img.name}.npy"), px)
    return img.name
saved = {}
for m in bpy.data.materials:
    for nd in (m.node_tree.nodes if m.node_tree else []):
        if nd.type == "TEX_IMAGE" and nd.image:
            got["images"][nd.image.name] = {"size": list(nd.image.size), "packed": nd.image.packed_file is not None,
                                            "file": bpy.path.basename(nd.image.filepath),
                                            "colorspace": nd.image.colorspace_settings.name}
    bsdf = next((nd for nd in m.node_tree.nodes if nd.type == "BSDF_PRINCIPLED"), None) if m.node_tree else None
    if bsdf is not None:
        r = bsdf.inputs["Roughness"]
        got["materials"][m.name] = {"base_color": image_into(bsdf.inputs["Base Color"]),
                                    "roughness": image_into(r), "roughness_value": r.default_value}
for name, path in saved.items():
    got["images"][name]["pixels"] = path
print(json.dumps(got))
"""


def read_back(kind: str, path: Path, tmp: Path) -> dict:
    """What Blender's own importer makes of ``path`` (kind fbx | obj), in a fresh process and scene."""
    p = subprocess.run([sys.executable, "-c", READ_BACK, kind, str(path), str(tmp)], capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def glb_asset(glb: Path) -> dict:
    """The GLB's own numbers, in Blender's axes ((x, y, z) glTF -> (x, -z, y)): per part the positions, the
    morph targets (name -> positions), the UVs (v up), the joint each vertex follows most; joints; the camera."""
    from engine.rig.gltf import accessor_array, read_glb

    to_b = lambda p: np.stack([p[:, 0], -p[:, 2], p[:, 1]], 1)  # noqa: E731
    g, binary = read_glb(glb.read_bytes())
    joints = [g["nodes"][j]["name"] for j in g["skins"][0]["joints"]]
    parts = {}
    for node in g["nodes"]:
        if "mesh" not in node:
            continue
        mesh = g["meshes"][node["mesh"]]
        prim = mesh["primitives"][0]
        pos = accessor_array(g, binary, prim["attributes"]["POSITION"]).astype(np.float64)
        names = mesh.get("extras", {}).get("targetNames", [])
        assert len(names) == len(prim.get("targets", [])), node["name"]
        targets = {
            n: to_b(pos + accessor_array(g, binary, t["POSITION"]))
            for n, t in zip(names, prim.get("targets", []), strict=True)
        }
        uv = accessor_array(g, binary, prim["attributes"]["TEXCOORD_0"]) * [1.0, -1.0] + [0.0, 1.0]
        jw = accessor_array(g, binary, prim["attributes"]["WEIGHTS_0"])
        jj = accessor_array(g, binary, prim["attributes"]["JOINTS_0"]).astype(np.int64)
        follows = np.array(joints)[jj[np.arange(len(jj)), jw.argmax(1)]]
        parts[node["name"]] = {"basis": to_b(pos), "targets": targets, "uv": uv, "group": follows,
                               "weights": mesh.get("weights", []), "max_weight": jw.max(1)}  # fmt: skip
    cam_node = next(n for n in g["nodes"] if "camera" in n)
    world, heads = {}, {}
    for j in g["skins"][0]["joints"]:  # parents before children (neck -> head -> eyes)
        parent = next((p for p in g["skins"][0]["joints"] if j in g["nodes"][p].get("children", [])), None)
        world[j] = np.asarray(g["nodes"][j].get("translation", [0, 0, 0]), float) + world.get(parent, 0.0)
        heads[g["nodes"][j]["name"]] = (to_b(world[j][None])[0], g["nodes"][parent]["name"] if parent else None)
    m = np.asarray(cam_node["matrix"], float).reshape(4, 4).T  # column-major
    conv = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    cam = g["cameras"][cam_node["camera"]]["perspective"]
    return {"parts": parts, "bones": heads, "camera": {**cam, "position": conv @ m[:3, 3], "forward": conv @ -m[:3, 2]}}


def uv_per_vertex(arrays) -> np.ndarray:
    """The imported UVs as one per vertex (the GLB's vertices are split at seams: each has one)."""
    uv = np.full((int(arrays["uv_vertex"].max()) + 1, 2), np.nan)
    uv[arrays["uv_vertex"]] = arrays["uv"]
    return uv


def _asset_info(folder: Path) -> dict:
    try:
        return json.loads((folder / "asset.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.fixture(scope="module")
def exported(bundle_dir, tmp_path_factory) -> dict:
    """The session's draft bundle's asset (its own when made since the hair part, else built at 1024 px) in a
    scratch folder, exported by the CLI: ``likeness asset BUNDLE -o FOLDER --exports fbx,obj --exports-only``."""
    if not HAS_BPY:
        pytest.skip("needs the bpy module (pip install bpy==5.0.1)")
    folder = tmp_path_factory.mktemp("export") / "asset"
    own = bundle_dir / "asset"
    if (own / "head.glb").is_file() and "hair" in _asset_info(own) and (own / "roughness.png").is_file():
        shutil.copytree(own, folder)
    else:
        prepared_prior()
        from engine.asset.build import build_asset

        build_asset(bundle_dir, folder, texture_size=1024, subdiv=0)
    import time

    t0 = time.monotonic()
    rc = main(["asset", str(bundle_dir), "-o", str(folder), "--exports", "fbx,obj", "--exports-only"])
    return {"folder": folder, "rc": rc, "seconds": time.monotonic() - t0}


@pytest.mark.slow  # the session's draft bundle (~40 s to build when not built already); the exports ~2 s
@pytest.mark.blender
@needs_bpy
def test_fbx_round_trip(exported, tmp_path):
    folder = exported["folder"]
    assert exported["rc"] == 0
    info = json.loads((folder / "asset.json").read_text())
    assert {k: v["files"] for k, v in info["exports"].items()} == {k: list(v) for k, v in EXPORT_FILES.items()}
    assert (folder / "head.fbx").read_bytes()[:18] == b"Kaydara FBX Binary"
    ref = glb_asset(folder / "head.glb")
    got = read_back("fbx", folder / "head.fbx", tmp_path)
    from engine.rig.arkit import ARKIT_NAMES

    assert sorted(got["meshes"]) == sorted(ref["parts"])
    errors = {}
    for name, part in ref["parts"].items():
        b = got["meshes"][name]
        arr = np.load(b["arrays"])
        assert b["vertices"] == len(part["basis"]) and b["uv_layers"] == 1, name
        assert b["armature"] == [got["armature"]], name
        assert np.abs(uv_per_vertex(arr) - part["uv"]).max() < 1e-5, name
        assert (arr["group"] == part["group"]).all(), name  # the skinning: each vertex follows the same bone
        assert np.abs(arr["weight"] - part["max_weight"]).max() < 1e-4, name  # ... as much (the throat blends)
        assert b["keys"] == list(part["targets"]), name
        assert np.allclose(b["values"], part["weights"], atol=1e-4), name  # the photo's expression as defaults
        errors[name] = float(np.abs(arr["basis"] - part["basis"]).max())
        for key, target in part["targets"].items():
            errors[f"{name}/{key}"] = float(np.abs(arr["key_" + key] - target).max())
    assert got["meshes"]["skin"]["keys"] == list(ARKIT_NAMES)
    worst = max(errors, key=errors.get)
    print(f"FBX: max vertex error {errors[worst] * 1e6:.2f} um ({worst}); skin basis {errors['skin'] * 1e6:.2f} um")
    assert errors[worst] < 1e-5  # metres: 10 um (measured: well under 1 um)
    assert set(got["bones"]) == {"neck", "head", "eye_L", "eye_R"}
    for bone, (head, parent) in ref["bones"].items():
        assert got["bones"][bone]["parent"] == parent
        assert np.abs(np.array(got["bones"][bone]["head"]) - head).max() < 1e-5, bone
    cam, want = got["camera"], ref["camera"]
    assert cam is not None
    yfov = 2 * math.atan(0.5 * cam["sensor_height"] / cam["lens"])
    xfov = 2 * math.atan(0.5 * cam["sensor_width"] / cam["lens"])
    want_x = 2 * math.atan(want["aspectRatio"] * math.tan(0.5 * want["yfov"]))
    print(f"FBX camera: lens {cam['lens']:.3f} mm, film {cam['sensor_width']:.2f} x {cam['sensor_height']:.2f} mm, "
          f"fov {math.degrees(xfov):.3f} x {math.degrees(yfov):.3f} deg (GLB {math.degrees(want_x):.3f} x "
          f"{math.degrees(want['yfov']):.3f})")  # fmt: skip
    assert abs(yfov / want["yfov"] - 1) < 0.01 and abs(xfov / want_x - 1) < 0.01
    assert abs(cam["lens"] / (12.0 / math.tan(0.5 * want["yfov"])) - 1) < 0.01  # glTF importer's 24 mm film height
    mw = np.array(cam["matrix_world"])
    assert np.abs(mw[:3, 3] - want["position"]).max() < 1e-4
    fwd = -mw[:3, 2] / np.linalg.norm(mw[:3, 2])
    assert math.degrees(math.acos(min(1.0, float(fwd @ want["forward"])))) < 0.1
    atlas = got["images"]["likeness_atlas"]
    assert atlas["packed"] and atlas["size"] == [info["texture_size"]] * 2  # embedded, read back from the FBX
    assert got["images"]["likeness_normal"]["packed"]
    mats = got["materials"]
    for mat in ("likeness_skin", "likeness_eye", "likeness_mouth"):  # the roughness map, straight into Roughness
        assert mats[mat]["base_color"] == "likeness_atlas" and mats[mat]["roughness"] == "likeness_roughness", mat
    rough = got["images"]["likeness_roughness"]
    assert rough["packed"] and rough["colorspace"] == "Non-Color"
    assert_pixels(rough["pixels"], folder / "roughness.png")
    _check_hair(got, info, folder, "likeness_hair")
    hair = got["meshes"]["hair"]  # skinned by the neck blend as in the GLB (the head's, save where it reaches the
    arr = np.load(hair["arrays"])  # throat), and no shape keys
    assert hair["keys"] == [] and hair["parent"] == got["armature"] and hair["armature"] == [got["armature"]]
    assert (arr["group"] == ref["parts"]["hair"]["group"]).all() and (arr["group"] == "head").mean() > 0.9
    assert got["images"]["likeness_hair"]["packed"]


def assert_pixels(npy: str, png: Path) -> None:
    """An image Blender read back has the asset's PNG's pixels (8-bit: within half a step)."""
    from PIL import Image

    want = np.asarray(Image.open(png).convert("RGB"), np.float64) / 255.0
    got = np.load(npy).astype(np.float64)
    got = np.repeat(got[..., :1], 3, -1) if got.shape[-1] == 1 else got
    assert got.shape == want.shape and np.abs(got - want).max() < 0.5 / 255, (npy, np.abs(got - want).max())


def _check_hair(got: dict, info: dict, folder: Path, image: str) -> None:
    """The hair part came back (the draft demo has hair: docs/ASSET.md "Hair") on its own material, coloured from
    its own texture (hair.png's pixels), with its constant roughness."""
    assert "hair" in info["parts"] and "hair" in got["meshes"], info.get("hair_skipped")
    assert got["meshes"]["hair"]["materials"] == ["likeness_hair"]
    mat = got["materials"]["likeness_hair"]
    assert mat["base_color"] == image and mat["roughness"] is None
    assert abs(mat["roughness_value"] - ROUGHNESS["scalp"]) < 1e-6
    assert got["images"][image]["size"] == [info["hair"]["texture_px"]] * 2
    assert_pixels(got["images"][image]["pixels"], folder / "hair.png")


@pytest.mark.slow  # see test_fbx_round_trip
@pytest.mark.blender
@needs_bpy
def test_obj_round_trip(exported, tmp_path):
    folder = exported["folder"]
    assert exported["rc"] == 0
    mtl = (folder / "head_static.mtl").read_text()
    assert "map_Kd texture.png" in mtl and "/" not in mtl.split("map_Kd", 1)[1].splitlines()[0]
    blocks = {blk.split("\n", 1)[0].strip(): blk.splitlines() for blk in mtl.split("newmtl ")[1:]}
    assert "map_Kd hair.png" in blocks["likeness_hair"] and "Pr 0.700000" in blocks["likeness_hair"]
    for mat in ("likeness_skin", "likeness_eye", "likeness_mouth"):
        assert {"map_Kd texture.png", "map_Pr roughness.png"} <= set(blocks[mat]), mat
    ref = glb_asset(folder / "head.glb")
    got = read_back("obj", folder / "head_static.obj", tmp_path)
    assert sorted(got["meshes"]) == sorted(ref["parts"])
    errors = {}
    for name, part in ref["parts"].items():
        b = got["meshes"][name]
        arr = np.load(b["arrays"])
        assert b["vertices"] == len(part["basis"]) and b["uv_layers"] == 1 and b["keys"] == [], name
        assert np.abs(uv_per_vertex(arr) - part["uv"]).max() < 2e-6, name  # 6 decimals
        errors[name] = float(np.abs(arr["basis"] - part["basis"]).max())  # neutral: not the photo's expression
    worst = max(errors, key=errors.get)
    print(f"OBJ: max vertex error {errors[worst] * 1e6:.2f} um ({worst})")
    assert errors[worst] < 2e-6  # 6 decimals in metres
    info = json.loads((folder / "asset.json").read_text())
    atlas = got["images"]["texture.png"]
    assert atlas["size"] == [info["texture_size"]] * 2
    _check_hair(got, info, folder, "hair.png")
    assert got["meshes"]["hair"]["keys"] == [] and got["meshes"]["hair"]["parent"] is None  # static, no rig
    for mat in ("likeness_skin", "likeness_eye", "likeness_mouth"):
        assert got["materials"][mat]["roughness"] == "roughness.png", mat
    assert_pixels(got["images"]["roughness.png"]["pixels"], folder / "roughness.png")


def _fake_asset(folder: Path) -> dict:
    folder.mkdir(parents=True)
    files = {"head.glb": b"glTF not really", "head.fbx": b"the earlier export", "asset.json": b'{"format": "x"}'}
    for n, data in files.items():
        (folder / n).write_bytes(data)
    return files


def test_no_blender_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    with pytest.raises(BackendUnavailable, match="need Blender") as exc:
        blender_command(env={"PATH": str(tmp_path)}, has_bpy=False)
    assert "pip install 'likeness[blender]'" in exc.value.hint
    files = _fake_asset(tmp_path / "b" / "asset")
    monkeypatch.setenv("LIKENESS_BLENDER", str(tmp_path / "no-such-blender"))
    assert main(["asset", str(tmp_path / "b"), "--exports", "fbx,obj"]) == 2  # refused before the rebuild
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-blender" in err[0] and "pip install 'likeness[blender]'" in err[0]
    assert {p.name: p.read_bytes() for p in (tmp_path / "b" / "asset").iterdir()} == files


@needs_bpy
def test_failed_export_changes_nothing(tmp_path, capsys):
    """Real Blender fails on a broken GLB: exit code 1, one line, the earlier head.fbx kept, no staging left."""
    folder = tmp_path / "b" / "asset"
    files = _fake_asset(folder)
    assert main(["asset", str(tmp_path / "b"), "--exports", "fbx,obj", "--exports-only"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the Blender export failed" in err[0]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files  # no half file, no leftover folder


def test_exports_only_needs_exports(tmp_path, capsys):
    assert main(["asset", str(tmp_path), "--exports-only"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["asset", str(tmp_path), "--exports", "fbx,stl"])
    assert exc.value.code == 2
    assert "choose from fbx, obj" in capsys.readouterr().err


def test_script_runs_without_the_engine():
    """scripts/asset_export.py imports nothing of the engine (Blender's Python has no engine)."""
    src = (Path(__file__).resolve().parents[1] / "scripts" / "asset_export.py").read_text()
    assert "import engine" not in src and "from engine" not in src
    assert os.path.basename(blender_command(env={}, has_bpy=True)[0]) == os.path.basename(sys.executable)
