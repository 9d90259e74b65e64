"""The add-on's pure modules (no bpy): frame conversions against the engine's, camera intrinsics <-> Blender camera
round trips, the dolly-zoom law, ARKit names, the GLB reader, the wire types and the extension zip."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from blender_addon import arkit, bundle, gltf_mesh
from blender_addon import conventions as cv
from blender_addon.client import types as wire
from blender_addon.client.errors import BadInput, Cancelled, NotFound, Unauthorized, error_from_body, error_from_job
from engine import conventions as ecv

REPO = Path(__file__).resolve().parents[1]


def test_world_conversion_matches_engine_and_round_trips():
    rng = np.random.default_rng(0)
    w2b = np.array(cv.WORLD_TO_BLENDER)
    np.testing.assert_array_equal(w2b, ecv.engine_to_blender_matrix())
    np.testing.assert_array_equal(np.array(cv.BLENDER_TO_WORLD), ecv.blender_to_engine_matrix())
    for p in rng.normal(size=(20, 3)):
        b = cv.engine_to_blender_point(p)
        np.testing.assert_allclose(b, (w2b @ np.append(p, 1.0))[:3])
        np.testing.assert_allclose(cv.blender_to_engine_point(b), p)
    # the head faces -Y in Blender, +Y engine up is +Z
    assert cv.engine_to_blender_point((0, 0, 1)) == (0.0, -1.0, 0.0)
    assert cv.engine_to_blender_point((0, 1, 0)) == (0.0, 0.0, 1.0)


def test_cam2world_round_trip_and_orbit_agree_with_engine():
    c2w = ecv.orbit_camera_gl(30.0, 10.0, 1.4)
    b = cv.cam2world_engine_to_blender(c2w)
    np.testing.assert_allclose(cv.cam2world_blender_to_engine(b), c2w, atol=1e-12)
    # object scale in Blender does not leak into the engine's rotation
    scaled = np.array(b) @ np.diag([2.0, 2.0, 2.0, 1.0])
    np.testing.assert_allclose(cv.cam2world_blender_to_engine(scaled), c2w, atol=1e-12)
    # the add-on's orbit offset is the engine's orbit camera position in Blender axes
    np.testing.assert_allclose(cv.orbit_offset_blender(1.4, 30.0, 10.0), np.array(b)[:3, 3], atol=1e-12)


@pytest.mark.parametrize(
    "intr",
    [
        cv.Intrinsics(836.76, 836.76, 256.0, 256.0, 512, 512),
        cv.Intrinsics(729.66, 729.66, 155.17, 246.82, 256, 256),  # off-centre principal point (work crop)
        cv.Intrinsics(1200.0, 1200.0, 610.0, 830.0, 1200, 1600),  # portrait
        cv.Intrinsics(1500.0, 1400.0, 900.0, 500.0, 1920, 1080),  # landscape, non-square pixels
    ],
)
def test_intrinsics_camera_round_trip(intr):
    p = cv.camera_params_from_intrinsics(intr)
    back = cv.intrinsics_from_camera_params(
        p.lens_mm,
        p.sensor_width_mm,
        24.0,
        p.sensor_fit,
        p.shift_x,
        p.shift_y,
        p.resolution_x,
        p.resolution_y,
        p.pixel_aspect_x,
        p.pixel_aspect_y,
    )
    for k in ("fx", "fy", "cx", "cy"):
        assert getattr(back, k) == pytest.approx(getattr(intr, k), rel=1e-9, abs=1e-9), k
    assert (back.width, back.height) == (intr.width, intr.height)


def test_intrinsics_from_auto_and_vertical_fit():
    # AUTO fits sensor_width to the larger side; VERTICAL fits sensor_height to the height
    auto = cv.intrinsics_from_camera_params(50.0, 36.0, 24.0, "AUTO", 0.1, -0.05, 600, 800)
    assert auto.fx == pytest.approx(50.0 / 36.0 * 800)
    assert auto.cx == pytest.approx(300 - 0.1 * 800) and auto.cy == pytest.approx(400 - 0.05 * 800)
    vert = cv.intrinsics_from_camera_params(50.0, 36.0, 24.0, "VERTICAL", 0.0, 0.0, 800, 600)
    assert vert.fy == pytest.approx(50.0 / 24.0 * 600)


def test_work_crop_intrinsics_match_the_manifest(bundle_dir):
    b = bundle.read_bundle(bundle_dir)
    x0, y0, side = b.crop_box_px
    work = b.photo_intrinsics.cropped_resized(x0, y0, side, b.work_intrinsics.width)
    for k in ("fx", "fy", "cx", "cy"):
        assert getattr(work, k) == pytest.approx(getattr(b.work_intrinsics, k), rel=1e-6)


def test_projection_matches_engine():
    c2w = ecv.orbit_camera_gl(-20.0, 5.0, 1.5)
    intr = cv.Intrinsics(700.0, 700.0, 300.0, 260.0, 640, 480)
    pts = np.random.default_rng(1).normal(scale=0.1, size=(10, 3))
    uv, _ = ecv.project_points(pts, c2w, ecv.Intrinsics(700.0, 700.0, 300.0, 260.0, 640, 480))
    w2c = np.linalg.inv(c2w)
    for p, want in zip(pts, uv, strict=True):
        got = intr.project((w2c @ np.append(p, 1.0))[:3])
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_dolly_law_keeps_size_and_inverts():
    lens0, depth0 = 58.8, 1.38
    for lens1 in (24.0, 35.0, 85.0, 200.0):
        move = cv.dolly_move_for_lens(lens0, depth0, lens1)
        assert cv.dolly_lens_mm(lens0, depth0, move) == pytest.approx(lens1)
        assert lens1 / (depth0 + move) == pytest.approx(lens0 / depth0)  # image size ~ lens / depth
    with pytest.raises(ValueError):
        cv.dolly_lens_mm(lens0, depth0, -depth0 - 0.1)


def test_arkit_spellings():
    assert len(arkit.ARKIT_52) == 52 == len(set(arkit.ARKIT_52))
    for raw in ("eyeBlinkLeft", "EyeBlinkLeft", "eyeBlink_L", "EYEBLINKLEFT"):
        assert arkit.canonical_name(raw) == "eyeBlinkLeft"
    assert arkit.canonical_name("mouthSmile_R") == "mouthSmileRight"
    assert arkit.canonical_name("custom shape") == "custom shape"


def write_glb(
    path: Path, positions, triangles, uv=None, morphs=None, node=None, sparse_morph=None, weights=None
) -> None:
    """A minimal GLB writer for tests: one mesh, one primitive, optional morph targets (dense, or one sparse) and
    the mesh's default morph ``weights`` (a list in target order)."""
    chunks, views, accessors = [], [], []

    def add(arr: np.ndarray, ctype: int, kind: str, sparse: tuple | None = None) -> int:
        if sparse is None:
            data = np.ascontiguousarray(arr).tobytes()
            views.append({"buffer": 0, "byteOffset": sum(len(c) for c in chunks), "byteLength": len(data)})
            chunks.append(data + b"\0" * (-len(data) % 4))
            acc = {"bufferView": len(views) - 1, "componentType": ctype, "count": len(arr), "type": kind}
        else:
            idx, vals = sparse
            acc = {
                "componentType": ctype,
                "count": len(arr),
                "type": kind,
                "sparse": {
                    "count": len(idx),
                    "indices": {"bufferView": 0, "componentType": 5125},
                    "values": {"bufferView": 0},
                },
            }
            for key, a in (("indices", idx.astype(np.uint32)), ("values", vals.astype(np.float32))):
                data = a.tobytes()
                views.append({"buffer": 0, "byteOffset": sum(len(c) for c in chunks), "byteLength": len(data)})
                chunks.append(data + b"\0" * (-len(data) % 4))
                acc["sparse"][key]["bufferView"] = len(views) - 1
        if kind == "VEC3":
            acc["min"], acc["max"] = np.min(arr, 0).tolist(), np.max(arr, 0).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    prim = {
        "attributes": {"POSITION": add(positions.astype(np.float32), 5126, "VEC3")},
        "indices": add(triangles.astype(np.uint32).ravel(), 5125, "SCALAR"),
    }
    if uv is not None:
        prim["attributes"]["TEXCOORD_0"] = add(uv.astype(np.float32), 5126, "VEC2")
    names = []
    targets = []
    for name, delta in (morphs or {}).items():
        names.append(name)
        targets.append({"POSITION": add(delta.astype(np.float32), 5126, "VEC3")})
    if sparse_morph is not None:
        name, idx, vals = sparse_morph
        names.append(name)
        targets.append({"POSITION": add(np.zeros_like(positions, np.float32), 5126, "VEC3", (idx, vals))})
    if targets:
        prim["targets"] = targets
    mesh = {"name": "likeness_head", "primitives": [prim]}
    if names:
        mesh["extras"] = {"targetNames": names}
    if weights is not None:
        mesh["weights"] = list(weights)
    binary = b"".join(chunks)
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [dict(node or {}, mesh=0)],
        "meshes": [mesh],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(binary)}],
    }
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(binary), 0x004E4942) + binary
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body)


def read_obj_vertices(path: Path) -> np.ndarray:
    return np.array(
        [[float(v) for v in ln.split()[1:4]] for ln in path.read_text().splitlines() if ln.startswith("v ")]
    )


def test_glb_reader_matches_the_bundle_obj(bundle_dir):
    mesh = gltf_mesh.read_glb(bundle_dir / "head.glb")
    np.testing.assert_allclose(mesh.positions, read_obj_vertices(bundle_dir / "head.obj"), atol=2e-6)
    assert mesh.triangles.shape[1] == 3 and mesh.triangles.max() < len(mesh.positions)
    assert mesh.uv is not None and mesh.normals is not None
    lengths = np.linalg.norm(mesh.normals, axis=1)
    # unit normals; a zero one (the engine writes one for a vertex whose faces are degenerate) stays zero, which
    # Blender's custom normals read as "use the computed normal"
    assert np.all((np.abs(lengths - 1.0) < 1e-5) | (lengths == 0.0)) and (lengths == 0.0).mean() < 1e-3


def test_glb_reader_morph_targets_sparse_and_node_transform(tmp_path):
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    tris = np.array([[0, 1, 2], [0, 2, 3]])
    jaw = np.zeros_like(pos)
    jaw[1] = (0.0, -0.1, 0.0)
    glb = tmp_path / "m.glb"
    write_glb(
        glb,
        pos,
        tris,
        uv=np.array([[0, 0], [1, 0], [0, 1], [1, 1]], float),
        morphs={"jawOpen": jaw},
        node={"translation": [0.0, 0.5, 0.0]},
        sparse_morph=("EyeBlinkLeft", np.array([2, 3]), np.array([[0, 0, 0.2], [0.3, 0, 0]])),
    )
    m = gltf_mesh.read_glb(glb)
    np.testing.assert_allclose(m.positions, pos + [0.0, 0.5, 0.0])
    np.testing.assert_allclose(m.uv[:, 1], [1.0, 1.0, 0.0, 0.0])  # glTF v down -> Blender v up
    assert list(m.morphs) == ["jawOpen", "EyeBlinkLeft"]
    np.testing.assert_allclose(m.morphs["jawOpen"], jaw)
    np.testing.assert_allclose(m.morphs["EyeBlinkLeft"][[2, 3]], [[0, 0, 0.2], [0.3, 0, 0]])
    np.testing.assert_allclose(m.morphs["EyeBlinkLeft"][[0, 1]], 0.0)
    assert m.weights == {"jawOpen": 0.0, "EyeBlinkLeft": 0.0}  # no default weights: 0
    with pytest.raises(ValueError):
        gltf_mesh.read_glb(_write(tmp_path / "bad.glb", b"not a glb at all, really"))


def test_glb_reader_default_morph_weights(tmp_path, bundle_dir):
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    d = np.full_like(pos, 0.1)
    glb = tmp_path / "w.glb"
    write_glb(glb, pos, np.array([[0, 1, 2]]), morphs={"jawOpen": d, "eyeBlink_L": d}, weights=[0.25, 0.5])
    assert gltf_mesh.read_glb(glb).weights == {"jawOpen": 0.25, "eyeBlink_L": 0.5}
    # the node's weights override the mesh's (glTF 2.0, 3.7.2.2)
    write_glb(glb, pos, np.array([[0, 1, 2]]), morphs={"jawOpen": d, "eyeBlink_L": d}, weights=[0.25, 0.5],
              node={"weights": [1.0, 0.0]})  # fmt: skip
    assert gltf_mesh.read_glb(glb).weights == {"jawOpen": 1.0, "eyeBlink_L": 0.0}
    # a Likeness bundle: the defaults are the photo's expression (expression.json)
    expr = bundle_dir / "expression.json"
    if not expr.is_file():
        pytest.skip("the bundle predates the expression rig")
    photo = json.loads(expr.read_text())["photo_weights"]
    got = gltf_mesh.read_glb(bundle_dir / "head.glb").weights
    assert len(got) == 52 and {k for k, v in got.items() if v > 0} == {k for k, v in photo.items() if v > 0}
    assert all(abs(got[k] - photo.get(k, 0.0)) < 1e-6 for k in got)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bundle_reader_refuses_what_it_cannot_use(tmp_path, bundle_dir):
    with pytest.raises(bundle.BundleInvalid, match="no manifest.json"):
        bundle.read_bundle(tmp_path)
    m = json.loads((bundle_dir / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(dict(m, format_version=99)))
    with pytest.raises(bundle.BundleInvalid, match="update the add-on"):
        bundle.read_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(bundle.BundleInvalid, match="no head mesh"):
        bundle.read_bundle(tmp_path)
    b = bundle.read_bundle(bundle_dir)
    assert b.name == "astronaut" and b.quality == "draft" and b.file("glb").is_file()
    assert len(b.landmarks_world()) == 478


def test_pure_modules_work_without_bpy():
    """The client, conventions, bundle and GLB reader import and run in a Python where bpy cannot be imported."""
    code = (
        "import sys; sys.modules['bpy'] = None; sys.modules['mathutils'] = None\n"
        "import blender_addon\n"
        "from blender_addon import conventions, bundle, gltf_mesh, arkit\n"
        "from blender_addon.client import EngineClient, LocalEngine\n"
        "assert not hasattr(blender_addon, 'register')\n"
        "assert 'torch' not in sys.modules and 'engine' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_incompatible_api_version_is_refused_in_plain_words():
    from blender_addon.client.api import require_api_version
    from blender_addon.client.errors import EngineIncompatible

    ok = wire.Health("0.1.0", wire.API_VERSION, "cpu")
    assert require_api_version(ok, "x") is ok
    with pytest.raises(EngineIncompatible, match="speaks API version 2, this add-on speaks 1") as exc:
        require_api_version(wire.Health("0.9.0", 2, "cpu"), "http://127.0.0.1:8765")
    assert "update the Likeness add-on" in str(exc.value)


def test_wire_types_and_error_mapping():
    with pytest.raises(ValueError):
        wire.BuildOptions(quality="ultra")
    assert wire.BuildOptions("draft", 1, 0.0).to_dict() == {"quality": "draft", "face_index": 1}
    subject = wire.BuildOptions("draft", 0, 0.0, "subject").to_dict()
    assert subject == {"quality": "draft", "face_index": 0, "uv_layout": "subject"}
    with pytest.raises(ValueError, match="uv_layout"):
        wire.BuildOptions(uv_layout="cube")
    from engine.config import UV_LAYOUTS

    assert wire.UV_LAYOUTS == UV_LAYOUTS  # the add-on's copy (it imports nothing from the engine) stays the same
    job = wire.Job.from_dict(
        {
            "id": "j",
            "state": "running",
            "stage": "fit",
            "progress": 0.5,
            "eta_s": 12.0,
            "avatar_id": None,
            "error": None,
            "created": "c",
            "updated": "u",
            "extra": 1,
        }
    )
    assert not job.finished and wire.format_eta(job.eta_s) == "12 s" and wire.format_eta(600) == "10 min"
    e = error_from_body(422, {"error": {"code": "no_face", "message": "no face found", "hint": "use a portrait"}}, "")
    assert isinstance(e, BadInput) and e.code == "no_face" and str(e) == "no face found (use a portrait)"
    assert isinstance(error_from_body(401, None, "x"), Unauthorized)
    assert isinstance(error_from_body(404, {"error": {"code": "not_found", "message": "m"}}, "x"), NotFound)
    assert isinstance(error_from_job({"code": "cancelled", "message": "the build was cancelled"}), Cancelled)


def test_extension_zip_builds_and_validates(tmp_path):
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_addon.py"), "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    zpath = tmp_path / "likeness-0.1.0.zip"
    names = zipfile.ZipFile(zpath).namelist()
    assert {"blender_manifest.toml", "__init__.py", "client/api.py", "scene_io/importer.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_addon
    finally:
        sys.path.pop(0)
    assert build_addon.check_zip(zpath) == []
    # a broken archive is caught: manifest without permissions' reasons
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(zpath) as src, zipfile.ZipFile(bad, "w") as dst:
        for n in src.namelist():
            data = src.read(n)
            if n == "blender_manifest.toml":
                data = data.replace(b'network = "', b'network_x = "')
            dst.writestr(n, data)
    assert any("network" in p for p in build_addon.check_zip(bad))


def test_addon_knows_the_engines_bundle_files_and_enumerations():
    """The add-on keeps bpy-free copies of a few engine facts; they must agree with the engine's one source."""
    from blender_addon.bundle import FORMAT, FORMAT_VERSIONS, IMPORT_KEYS
    from blender_addon.client.types import QUALITIES as ADDON_QUALITIES
    from engine import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION
    from engine.config import QUALITIES
    from engine.io.manifest import BUNDLE_FILES, OPTIONAL_FILES

    known = set(BUNDLE_FILES) | set(OPTIONAL_FILES)
    assert set(IMPORT_KEYS) <= known, set(IMPORT_KEYS) - known
    assert ADDON_QUALITIES == QUALITIES
    assert FORMAT == BUNDLE_FORMAT and BUNDLE_FORMAT_VERSION in FORMAT_VERSIONS


def test_a_built_bundle_names_exactly_the_engines_files(bundle_dir):
    """Every fixed file the manifest lists is named as engine.io.manifest.BUNDLE_FILES (and OPTIONAL_FILES) say."""
    import json

    from engine.io.manifest import BUNDLE_FILES, OPTIONAL_FILES

    files = json.loads((bundle_dir / "manifest.json").read_text())["files"]
    fixed = {k: v for k, v in files.items() if not k.startswith("view_") and k not in OPTIONAL_FILES}
    assert fixed == BUNDLE_FILES
    assert all(OPTIONAL_FILES[k] == v for k, v in files.items() if k in OPTIONAL_FILES)


def test_addon_reads_the_builds_warnings(tmp_path, bundle_dir):
    import json
    import shutil

    from blender_addon.bundle import read_bundle

    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    assert [w for w in read_bundle(copy).warnings if not w.startswith("no artist asset")] == []
    m = json.loads((copy / "manifest.json").read_text())
    m["warnings"] = [{"code": "several_faces", "message": "the photo shows 2 faces; used face 0"}]
    (copy / "manifest.json").write_text(json.dumps(m))
    assert read_bundle(copy).warnings == ["the photo shows 2 faces; used face 0"]
