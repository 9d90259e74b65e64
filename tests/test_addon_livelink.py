"""The add-on's Live Link Face CSV import: its pure reader against the engine's on the same files (no bpy), the
rotation convention, and the operator in the real ``bpy`` module on an imported bundle -- shape-key and bone keys
at the mapped frames, keys outside the take's range kept, bad input leaving the scene as it was."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the repository on the path
    sys.path.insert(0, str(REPO))

from blender_addon import livelink as ll  # noqa: E402
from engine.errors import InputError  # noqa: E402
from engine.rig import livelink as ell  # noqa: E402
from engine.rig.arkit import ARKIT_NAMES, INDEX  # noqa: E402

ADDON = "blender_addon"
START_S = 14 * 3600 + 3 * 60 + 52.5  # the take starts at 14:03:52:30 (60 fps timecodes)
ROWS, TAKE_FPS = 30, 60.0


def _take() -> ell.Take:
    """30 rows at 60 fps with known curves: jawOpen and eyeBlinkLeft move, the rest 0; head and eyes turn."""
    t = np.arange(ROWS) / TAKE_FPS
    w = np.zeros((ROWS, len(ARKIT_NAMES)))
    w[:, INDEX["jawOpen"]] = 0.5 + 0.5 * np.sin(2 * np.pi * t)
    w[:, INDEX["eyeBlinkLeft"]] = np.linspace(0.0, 1.0, ROWS)
    w[:, INDEX["mouthSmileRight"]] = 0.25
    extra = {
        "HeadYaw": 0.3 * np.sin(2 * np.pi * t),
        "HeadPitch": np.linspace(-0.1, 0.2, ROWS),
        "HeadRoll": np.full(ROWS, 0.05),
        "LeftEyeYaw": np.linspace(0.0, 0.25, ROWS),
        "LeftEyePitch": np.full(ROWS, -0.1),
        "RightEyeYaw": np.linspace(0.0, 0.2, ROWS),
    }
    return ell.Take(t, w, extra, TAKE_FPS)


@pytest.fixture
def take_csv(tmp_path) -> Path:
    """A genuine-format file: the engine's writer (the app's header and column order, HH:MM:SS:FF.sss)."""
    path = tmp_path / "take.csv"
    ell.write_csv(path, _take(), start_s=START_S)
    return path


def _agree(text: str, fps: float | None = None) -> ll.Take:
    """Both readers on ``text``: the same times, rate, present shapes and rotations."""
    e, a = ell.parse_csv(text, fps), ll.parse_csv(text, fps)
    np.testing.assert_allclose(a.times_s, e.times_s, atol=1e-9)
    assert a.fps == e.fps
    assert a.shapes, "no shapes read"
    for name, values in a.shapes.items():
        np.testing.assert_allclose(values, e.weights[:, INDEX[name]], atol=0)
    assert set(a.rotations) == set(e.extra)
    for name, values in a.rotations.items():
        np.testing.assert_allclose(values, e.extra[name], atol=0)
    return a


# --- the pure reader (no bpy) ---


def test_reader_reads_the_apps_file_like_the_engine(take_csv):
    text = take_csv.read_text()
    assert text.startswith("Timecode,BlendShapeCount,EyeBlinkLeft,") and "14:03:52:30.000" in text
    a = _agree(text)
    assert a.rows == ROWS and a.timed_by == "timecode" and a.fps == 60.0
    assert set(a.shapes) == set(ARKIT_NAMES) and set(a.rotations) == set(ll.ROTATIONS)
    np.testing.assert_allclose(a.times_s, np.arange(ROWS) / 60.0, atol=1e-9)
    np.testing.assert_allclose(a.shapes["jawOpen"], _take().weights[:, INDEX["jawOpen"]], atol=1e-5)
    np.testing.assert_allclose(a.rotations["HeadYaw"], _take().extra["HeadYaw"], atol=1e-5)
    assert ll.read_csv(take_csv) == a


def test_reader_agrees_with_the_engine_on_spellings_order_rates_and_timecodes():
    # the three spellings in any case, columns in any order, a BOM, blank lines, short rows, a clipped weight
    text = (
        "\ufeffjawOpen,EYEBLINK_L,timecode,eyeblinkright,HEADYAW,Other\n"
        "0.5,1.5,01:00:00:00.000,0.1,0.01,x\n\n"
        "0.6,-0.2,01:00:00:15.500,0.2\n"
        "0.7,0.3,01:00:01:02.000,,0.03,y\n"
    )
    a = _agree(text)
    assert set(a.shapes) == {"jawOpen", "eyeBlinkLeft", "eyeBlinkRight"} and set(a.rotations) == {"HeadYaw"}
    assert a.shapes["eyeBlinkLeft"] == (1.0, 0.0, 0.3) and a.fps == 24.0  # frame numbers up to 15 over 2 s: 24
    assert a.shapes["eyeBlinkRight"][2] == 0.0 and a.rotations["HeadYaw"][1] == 0.0
    # under a second of timecodes: 60, or the rate given; frame numbers of 30 fps over seconds: 30
    _agree("Timecode,JawOpen\n10:00:00:01,0\n10:00:00:02,1\n")
    assert _agree("Timecode,JawOpen\n10:00:00:01,0\n10:00:00:02,1\n", fps=30.0).times_s[1] == pytest.approx(1 / 30)
    codes = [f"10:00:{s:02d}:{f:02d}" for s in range(2) for f in range(0, 30, 7)]
    assert _agree("Timecode,JawOpen\n" + "".join(f"{c},0.5\n" for c in codes)).fps == 30.0
    # across midnight
    assert _agree("Timecode,JawOpen\n23:59:59:59.000,0\n00:00:00:01.000,1\n").times_s[1] == pytest.approx(2 / 60)
    # one unreadable timecode, or none at all: rows by index / fps
    bad = _agree("Timecode,JawOpen\n10:00:00:01,0\nnot a time,0.5\n10:00:00:03,1\n", fps=25.0)
    assert bad.timed_by == "index" and bad.times_s == (0.0, 0.04, 0.08)
    assert _agree("JawOpen\n0\n1\n").times_s == (0.0, 1 / 60)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no keyframes"),
        ("Timecode,JawOpen\n", "no keyframes"),
        ("Timecode,Foo,HeadYaw\n10:00:00:01,1,0.1\n", "no ARKit blendshape columns"),
        ("Timecode,JawOpen\n10:00:00:01,abc\n", "row 2 of the CSV holds a non-number"),
        ("JawOpen,jaw_open,jawopen\n0,0,0\n", "names jawOpen twice"),
        ("JawOpen\nnan\n", "non-finite weights"),
    ],
)
def test_reader_refuses_what_the_engine_refuses(text, message):
    with pytest.raises(InputError):
        ell.parse_csv(text)
    with pytest.raises(ll.TakeInvalid, match=message):
        ll.parse_csv(text)


def test_reader_refuses_unreadable_files_and_bad_rotations(tmp_path):
    binary = tmp_path / "take.csv"
    binary.write_bytes(b"Timecode,JawOpen\n\xff\xfe\x00\x81,1\n")
    with pytest.raises(ll.TakeInvalid, match="not a UTF-8 text CSV"):
        ll.read_csv(binary)
    with pytest.raises(ll.TakeInvalid, match="could not read"):
        ll.read_csv(tmp_path / "missing.csv")
    with pytest.raises(ll.TakeInvalid, match="non-finite head or eye rotations"):
        ll.parse_csv("JawOpen,HeadYaw\n0,inf\n")


def _rotate(q, v):
    """``v`` rotated by the unit quaternion ``q`` (w, x, y, z)."""
    w, u = q[0], np.array(q[1:])
    v = np.asarray(v, float)
    return v + 2 * np.cross(u, np.cross(u, v) + w * v)


def test_rotation_convention_in_blender_axes():
    """Blender axes: X the subject's left, -Y where the face looks, Z up (the engine's (x, y, z) is (x, -z, y))."""
    front, left = (0.0, -1.0, 0.0), (1.0, 0.0, 0.0)
    assert _rotate(ll.rotation_quaternion(0.3, 0, 0), front)[0] > 0.25  # yaw: toward the subject's left
    assert _rotate(ll.rotation_quaternion(0, 0.3, 0), front)[2] < -0.25  # pitch: chin down
    assert _rotate(ll.rotation_quaternion(0, 0, 0.3), left)[2] > 0.25  # roll: the left ear rises
    q = ll.rotation_quaternion(0.4, -0.2, 0.1)
    assert math.isclose(sum(c * c for c in q), 1.0) and ll.rotation_quaternion(0, 0, 0) == (1.0, 0.0, 0.0, 0.0)
    # composed yaw . pitch . roll: roll first, in the head's own frame
    expect = _rotate(ll.rotation_quaternion(0.4, 0, 0), _rotate(ll.rotation_quaternion(0, -0.2, 0), _rotate(
        ll.rotation_quaternion(0, 0, 0.1), front)))  # fmt: skip
    np.testing.assert_allclose(_rotate(q, front), expect, atol=1e-12)


def test_reader_is_pure_python():
    """No bpy, mathutils or engine in the reader: it runs in plain Python and in Blender alike."""
    import ast

    for name in ("livelink.py", "arkit.py"):
        tree = ast.parse((REPO / "blender_addon" / name).read_text())
        mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
        assert not {m.split(".")[0] for m in mods} & {"bpy", "mathutils", "bmesh", "engine", "numpy", "torch"}, mods


# --- the operator in bpy ---


def _fail(exc):
    raise exc


@pytest.fixture
def bpy_addon():
    bpy = pytest.importorskip("bpy", reason="needs the bpy module (pip install bpy==5.0.1)")
    import addon_utils

    addon_utils.enable(ADDON, default_set=True, handle_error=_fail)
    bpy.ops.wm.read_homefile(use_empty=True)
    yield bpy
    addon_utils.disable(ADDON, default_set=True, handle_error=_fail)


@pytest.fixture
def avatar(bpy_addon, bundle_dir):
    bpy = bpy_addon
    from blender_addon import scene_io

    assert bpy.ops.likeness.import_avatar(directory=str(bundle_dir)) == {"FINISHED"}
    av = scene_io.find_avatar(bpy.context)
    bpy.context.view_layer.objects.active = av.head
    return av


def _keys(fc) -> list[tuple[float, float]]:
    return [tuple(kp.co) for kp in fc.keyframe_points]


def _curve(id_data, path: str, index: int = 0):
    from blender_addon import scene_io

    return next((f for f in scene_io.fcurves(id_data) if f.data_path == path and f.array_index == index), None)


def _animation_state(bpy) -> tuple:
    from blender_addon import scene_io

    ids = [*bpy.data.objects, *bpy.data.shape_keys]
    curves = [(i.name, f.data_path, f.array_index, len(f.keyframe_points)) for i in ids for f in scene_io.fcurves(i)]
    s = bpy.context.scene
    return len(bpy.data.actions), sorted(curves), s.render.fps, s.render.fps_base, s.frame_start, s.frame_end


@pytest.mark.blender
@pytest.mark.slow
def test_operator_keys_shape_keys_and_bones_at_the_mapped_frames(avatar, take_csv):
    import bpy

    from blender_addon import scene_io

    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.frame_start, scene.frame_end = 1, 10
    head_key = avatar.head.data.shape_keys
    jaw = head_key.key_blocks["jawOpen"]
    for frame, value in ((1, 0.9), (7, 0.8), (100, 0.7)):  # 1 and 100 lie outside the take's frames, 7 inside
        jaw.value = value
        jaw.keyframe_insert("value", frame=frame)
    before = _keys(_curve(head_key, 'key_blocks["jawOpen"].value'))
    assert [f for f, _ in before] == [1, 7, 100]

    assert bpy.ops.likeness.import_livelink_csv(filepath=str(take_csv), frame_start=5) == {"FINISHED"}
    take = ll.read_csv(take_csv)
    frames = 5 + np.asarray(take.times_s) * 24.0  # 60 fps rows on a 24 fps scene: 0.4 frames apart
    targets = scene_io.livelink_targets(bpy.context)
    asset = [o for o in targets.meshes if o.get("likeness_role", "").startswith("asset_")]
    assert avatar.head in targets.meshes and len(targets.meshes) == 1 + len(asset)
    for obj in targets.meshes:
        key = obj.data.shape_keys
        assert key.animation_data.action is not None
        for name in ("jawOpen", "eyeBlinkLeft", "mouthSmileRight", "tongueOut"):
            got = [k for k in _keys(_curve(key, f'key_blocks["{name}"].value')) if 4.5 < k[0] < 20]
            np.testing.assert_allclose([f for f, _ in got], frames, atol=1e-4)
            np.testing.assert_allclose([v for _, v in got], take.shapes[name], atol=1e-4)
    # the keys outside the take's frames are kept, the one inside replaced
    jaw_keys = _keys(_curve(head_key, 'key_blocks["jawOpen"].value'))
    assert jaw_keys[0] == pytest.approx((1.0, 0.9)) and jaw_keys[-1] == pytest.approx((100.0, 0.7))
    assert len(jaw_keys) == ROWS + 2 and not any(abs(f - 7) < 1e-3 and abs(v - 0.8) < 1e-3 for f, v in jaw_keys)
    assert scene.frame_end == math.ceil(frames[-1])  # was 10: extended to cover the take
    # evaluated: the shape key follows the take between rows too
    scene.frame_set(7)  # row 5 exactly
    assert jaw.value == pytest.approx(take.shapes["jawOpen"][5], abs=1e-4)

    if targets.armature is None:
        assert not asset
        return
    arm = targets.armature
    for bone in ("head", "eye_L", "eye_R"):
        assert all(_curve(arm, f'pose.bones["{bone}"].rotation_quaternion', i) is not None for i in range(4))
    # the posed bones in armature space turn by the convention's rotations (the eyes on top of the head)
    for row in (5, 10, 25):
        scene.frame_set(int(round(frames[row])))
        r = {n: _rotate_from(arm, n) for n in ("head", "eye_L", "eye_R")}
        head_q = ll.rotation_quaternion(*(take.rotations.get(c, [0.0] * ROWS)[row] for c in _cols("head")))
        np.testing.assert_allclose(r["head"], _matrix(head_q), atol=1e-4)
        for eye in ("eye_L", "eye_R"):
            eye_q = ll.rotation_quaternion(*(take.rotations.get(c, [0.0] * ROWS)[row] for c in _cols(eye)))
            np.testing.assert_allclose(r[eye], _matrix(head_q) @ _matrix(eye_q), atol=1e-4)

    # again at the take's own rate, every second row, later on: the first import's keys stay
    assert bpy.ops.likeness.import_livelink_csv(filepath=str(take_csv), frame_start=200, rate="TAKE", step=2) == {
        "FINISHED"
    }
    assert (scene.render.fps, scene.render.fps_base) == (60, 1.0)
    got = [k for k in _keys(_curve(head_key, 'key_blocks["jawOpen"].value')) if k[0] >= 200]
    rows = [*range(0, ROWS, 2), ROWS - 1]
    np.testing.assert_allclose([f for f, _ in got], [200 + i for i in rows], atol=1e-4)
    np.testing.assert_allclose([v for _, v in got], [take.shapes["jawOpen"][i] for i in rows], atol=1e-4)
    assert len(_keys(_curve(head_key, 'key_blocks["jawOpen"].value'))) == ROWS + 2 + len(rows)
    assert len(_keys(_curve(arm, 'pose.bones["head"].rotation_quaternion', 0))) == ROWS + len(rows)

    # one source per eyeball's gaze: the take's eye columns keyed the eye bones, so the eyeballs' look keys are
    # muted (the skin's stay, for the lids); a take keyed without eye rotation gives them back
    def looks(muted: bool) -> bool:
        eyes = [o for o in avatar.collection.all_objects if o.get("likeness_role") in ("asset_eye_L", "asset_eye_R")]
        blocks = [kb for o in eyes for kb in o.data.shape_keys.key_blocks if kb.name.startswith("eyeLook")]
        return len(eyes) == 2 and len(blocks) >= 8 and all(kb.mute == muted for kb in blocks)

    skin = next(o for o in asset if o.get("likeness_role") == "asset_skin")
    assert looks(muted=True)
    assert not any(kb.mute for kb in skin.data.shape_keys.key_blocks if kb.name.startswith("eyeLook"))
    assert bpy.ops.likeness.import_livelink_csv(filepath=str(take_csv), frame_start=400, eye_rotation=False) == {
        "FINISHED"
    }
    assert looks(muted=False)


def _cols(bone: str) -> tuple[str, str, str]:
    from blender_addon.scene_io.livelink import BONE_COLUMNS

    return BONE_COLUMNS[bone]


def _matrix(q) -> np.ndarray:
    return np.stack([_rotate(q, e) for e in np.eye(3)], axis=1)


def _rotate_from(arm, bone: str) -> np.ndarray:
    """The posed bone's rotation from its rest pose, in armature space (3, 3)."""
    pb = arm.pose.bones[bone]
    return np.array(pb.matrix.to_3x3() @ arm.data.bones[bone].matrix_local.to_3x3().inverted())


@pytest.mark.blender
@pytest.mark.slow
def test_operator_bad_input_changes_nothing(avatar, take_csv, tmp_path, monkeypatch):
    import bpy

    from blender_addon.operators.livelink import LIKENESS_OT_import_livelink_csv as Op

    returned = []
    execute = Op.execute
    monkeypatch.setattr(Op, "execute", lambda self, context: returned.append(execute(self, context)) or returned[-1])
    files = {
        "no_arkit.csv": b"Timecode,HeadYaw,Foo\n10:00:00:01,0.1,2\n",
        "empty.csv": b"",
        "latin1.csv": "Timecode,JawOpen\n10:00:00:01,0.5\n# caf\xe9\n".encode("latin-1"),
    }
    messages = {"no_arkit.csv": "no ARKit blendshape columns", "empty.csv": "no keyframes",
                "latin1.csv": "not a UTF-8 text CSV"}  # fmt: skip
    state = _animation_state(bpy)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(RuntimeError, match=messages[name]):  # an ERROR report raises in scripts
            bpy.ops.likeness.import_livelink_csv(filepath=str(tmp_path / name), rate="TAKE")
        assert returned.pop() == {"CANCELLED"} and _animation_state(bpy) == state
    # a good take, but nothing to key: an avatar-less scene whose active mesh has no ARKit shape keys
    bpy.ops.wm.read_homefile(use_empty=True)
    mesh = bpy.data.meshes.new("plain")
    obj = bpy.data.objects.new("plain", mesh)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    obj.shape_key_add(name="Basis")
    obj.shape_key_add(name="smile")
    state = _animation_state(bpy)
    with pytest.raises(RuntimeError, match="No mesh in this scene has shape keys named after"):
        bpy.ops.likeness.import_livelink_csv(filepath=str(take_csv), rate="TAKE")
    assert returned.pop() == {"CANCELLED"} and _animation_state(bpy) == state
    # the same mesh with one ARKit key is a target of its own
    obj.shape_key_add(name="JawOpen")
    assert bpy.ops.likeness.import_livelink_csv(filepath=str(take_csv), frame_start=1) == {"FINISHED"}
    assert returned.pop() == {"FINISHED"}
    assert len(_keys(_curve(mesh.shape_keys, 'key_blocks["JawOpen"].value'))) == ROWS
