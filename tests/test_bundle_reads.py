"""Bundles are read only inside themselves, and a bad one is refused cleanly (issue 16, item 4).

Every bundle file read goes through ``engine.io.bundle.bundle_file`` (the add-on keeps a bpy-free copy, checked
here to agree on good and evil names). A corpus of malformed and evil bundles, generated from the session's draft
bundle on disk, must each give one :class:`BundleError` line -- never a traceback, a huge allocation or a read
outside the folder. Outside every bundle sits a *valid* sentinel (a real field file, landmarks, expression and
manifest with distinctive values), so a reader that followed a name out of the bundle would succeed instead of
refusing. Then the same against a real ``likeness serve`` and the ``likeness render`` CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_server_harness import REPO, ServerProcess, photo_camera

from blender_addon import bundle as addon_bundle
from engine.avatar import load_avatar, load_landmarks_world
from engine.errors import BundleError
from engine.io import bundle as engine_bundle
from engine.io.bundle import read_manifest

SENTINEL = 7.25  # every landmark coordinate of the outside landmarks.json
SENTINEL_TEXT = "SENTINEL-OUTSIDE-THE-BUNDLE"
NEEDED = ("manifest.json", "field.safetensors", "landmarks.json", "expression.json", "head.glb", "texture.png")


@pytest.fixture(scope="module")
def good(request) -> Path:
    """The draft demo bundle (``draft_bundle``), or LIKENESS_TEST_BUNDLE to reuse one already built."""
    env = os.environ.get("LIKENESS_TEST_BUNDLE")
    return Path(env) if env else request.getfixturevalue("draft_bundle")


def _place(src: Path, dst: Path) -> None:
    """``dst`` holds ``src``'s bytes: a hard link when possible (the tests replace, never edit, such files)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _replace(path: Path, data: bytes | str) -> None:
    """Write ``path`` as a new file (unlinking first, so a hard-linked original is never modified)."""
    path.unlink(missing_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)


def _copy_bundle(good: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in NEEDED:
        _place(good / name, dst / name)
    return dst


@pytest.fixture
def world(tmp_path, good):
    """(a fresh copy of the good bundle, the folder of valid sentinels outside it)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    _place(good / "field.safetensors", outside / "field.safetensors")
    lm = json.loads((good / "landmarks.json").read_text())
    lm["landmarks_world"] = [[SENTINEL] * 3 for _ in lm["landmarks_world"]]
    (outside / "landmarks.json").write_text(json.dumps(lm))
    expr = json.loads((good / "expression.json").read_text())
    expr["estimate"] = SENTINEL_TEXT
    (outside / "expression.json").write_text(json.dumps(expr))
    (outside / "manifest.json").write_text((good / "manifest.json").read_text())
    (outside / "secret.txt").write_text(SENTINEL_TEXT)
    return _copy_bundle(good, tmp_path / "bundle"), outside


def _manifest(b: Path) -> dict:
    return json.loads((b / "manifest.json").read_text())


def _set(b: Path, dotted: str, value) -> None:
    """Set ``manifest[a][b]... = value`` (``dotted`` = ``"a.b..."``), or delete it when value is ``...``."""
    m = _manifest(b)
    *parents, last = dotted.split(".")
    d = m
    for p in parents:
        d = d[p]
    if value is ...:
        del d[last]
    else:
        d[last] = value
    _replace(b / "manifest.json", json.dumps(m))


def _field_state(good: Path):
    from safetensors.torch import load_file

    return load_file(str(good / "field.safetensors"))


def _save_field(b: Path, state: dict, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    (b / "field.safetensors").unlink()
    save_file(state, str(b / "field.safetensors"), metadata=metadata or {"format": "likeness-field", "version": "1"})


def _deep(n: int) -> str:
    return '{"format": "likeness-avatar", "format_version": 1, "files": {}, "x": ' + "[" * n + "]" * n + "}"


# name -> mutation of (bundle, outside folder); after it, load_avatar must refuse with one BundleError line.
CORPUS = {
    "manifest_is_a_list": lambda b, o: _replace(b / "manifest.json", "[]"),
    "manifest_is_a_string": lambda b, o: _replace(b / "manifest.json", '"likeness-avatar"'),
    "manifest_is_null": lambda b, o: _replace(b / "manifest.json", "null"),
    "manifest_truncated": lambda b, o: _replace(b / "manifest.json", (b / "manifest.json").read_text()[:500]),
    "manifest_not_utf8": lambda b, o: _replace(b / "manifest.json", b"\xff\xfe\x00garbage\x80"),
    "manifest_nested_100000_deep": lambda b, o: _replace(b / "manifest.json", "[" * 100000 + "]" * 100000),
    "manifest_value_nested_100000_deep": lambda b, o: _replace(b / "manifest.json", _deep(100000)),
    "manifest_value_nested_200_deep": lambda b, o: _replace(b / "manifest.json", _deep(200)),
    "manifest_is_a_directory": lambda b, o: ((b / "manifest.json").unlink(), (b / "manifest.json").mkdir()),
    "manifest_symlinked_outside": lambda b, o: (
        (b / "manifest.json").unlink(),
        os.symlink(o / "manifest.json", b / "manifest.json"),
    ),
    "format_version_abc": lambda b, o: _set(b, "format_version", "abc"),
    "format_version_null": lambda b, o: _set(b, "format_version", None),
    "format_version_1e308": lambda b, o: _set(b, "format_version", 1e308),
    "format_version_true": lambda b, o: _set(b, "format_version", True),
    "format_version_missing": lambda b, o: _set(b, "format_version", ...),
    "format_version_newer": lambda b, o: _set(b, "format_version", 2),
    "files_is_a_list": lambda b, o: _set(b, "files", ["field.safetensors"]),
    "files_missing": lambda b, o: _set(b, "files", ...),
    "nan_in_manifest": lambda b, o: _replace(
        b / "manifest.json", (b / "manifest.json").read_text().replace('"scale": ', '"scale": NaN, "x": ', 1)
    ),
    "infinity_in_manifest": lambda b, o: _replace(
        b / "manifest.json", (b / "manifest.json").read_text().replace('"scale": ', '"scale": 1e999, "x": ', 1)
    ),
    "field_dotdot_to_outside": lambda b, o: _set(b, "files.field", "../outside/field.safetensors"),
    "field_deep_dotdot": lambda b, o: _set(b, "files.field", "../../../../../../../../" + str(o / "field.safetensors")),
    "field_absolute": lambda b, o: _set(b, "files.field", str(o / "field.safetensors")),
    "field_symlink_outside": lambda b, o: (
        (b / "field.safetensors").unlink(),
        os.symlink(o / "field.safetensors", b / "field.safetensors"),
    ),
    "field_through_symlinked_dir": lambda b, o: (
        os.symlink(o, b / "sub"),
        _set(b, "files.field", "sub/field.safetensors"),
    ),
    "field_is_the_bundle": lambda b, o: _set(b, "files.field", "."),
    "field_is_a_directory": lambda b, o: ((b / "fdir").mkdir(), _set(b, "files.field", "fdir")),
    "field_is_a_fifo": lambda b, o: (os.mkfifo(b / "fifo"), _set(b, "files.field", "fifo")),
    "field_missing_key": lambda b, o: _set(b, "files.field", ...),
    "field_missing_file": lambda b, o: (b / "field.safetensors").unlink(),
    "field_name_not_a_string": lambda b, o: _set(b, "files.field", 12),
    "field_name_empty": lambda b, o: _set(b, "files.field", ""),
    "field_name_nul": lambda b, o: _set(b, "files.field", "field.safetensors\x00.png"),
    "field_name_backslash": lambda b, o: _set(b, "files.field", "..\\outside\\field.safetensors"),
    "field_truncated": lambda b, o: _replace(b / "field.safetensors", (b / "field.safetensors").read_bytes()[:100000]),
    "field_garbage": lambda b, o: _replace(b / "field.safetensors", os.urandom(4096)),
    "field_empty": lambda b, o: _replace(b / "field.safetensors", b""),
    "field_pickled": lambda b, o: _pickled(b),
    "field_wrong_format": lambda b, o: _resave(b, metadata={"format": "something-else", "version": "1"}),
    "field_no_metadata": lambda b, o: _resave(b, metadata={"x": "y"}),
    "field_newer_version": lambda b, o: _resave(b, metadata={"format": "likeness-field", "version": "2"}),
    "field_tensor_renamed": lambda b, o: _resave(b, rename=("mlp.0.weight", "mlp.0.weights")),
    "field_tensor_wrong_shape": lambda b, o: _resave(b, reshape="mlp.2.bias"),
    "field_sdf_wrong_shape": lambda b, o: _resave(b, reshape="sdf"),
    "field_nan_tensor": lambda b, o: _resave(b, nan="sdf"),
    "field_grid_res_huge": lambda b, o: _set(b, "field.grid_res", 100000),
    "field_grid_res_mismatch": lambda b, o: _set(b, "field.grid_res", _manifest(b)["field"]["grid_res"] + 1),
    "n_coarse_1e7": lambda b, o: _set(b, "settings.n_coarse", 1e7),
    "n_coarse_ten_million_int": lambda b, o: _set(b, "settings.n_coarse", 10_000_000),
    "n_fine_negative": lambda b, o: _set(b, "settings.n_fine", -3),
    "n_fine_string": lambda b, o: _set(b, "settings.n_fine", "10"),
    "settings_missing": lambda b, o: _set(b, "settings", ...),
    "settings_is_a_list": lambda b, o: _set(b, "settings", [40, 10]),
    "scale_negative": lambda b, o: _set(b, "canonical.scale", -0.9),
    "scale_zero": lambda b, o: _set(b, "canonical.scale", 0),
    "scale_huge_int": lambda b, o: _set(b, "canonical.scale", 10**400),
    "cam2world_3x3": lambda b, o: _set(b, "camera.cam2world", np.eye(3).tolist()),
    "cam2world_strings": lambda b, o: _set(b, "camera.cam2world", [["a"] * 4] * 4),
    "cam2world_not_rigid": lambda b, o: _set(b, "camera.cam2world", (np.eye(4) * 3.0).tolist()),
    "cam2world_at_the_head": lambda b, o: _set(b, "camera.cam2world", np.eye(4).tolist()),
    "work_fx_zero": lambda b, o: _set(b, "camera.work.intrinsics.fx", 0.0),
    "work_fy_negative": lambda b, o: _set(b, "camera.work.intrinsics.fy", -700.0),
    "photo_width_huge": lambda b, o: _set(b, "camera.photo.intrinsics.width", 10**9),
    "photo_intrinsics_missing": lambda b, o: _set(b, "camera.photo", {}),
}


def _pickled(b: Path) -> None:
    import torch

    (b / "field.safetensors").unlink()
    torch.save({"sdf": torch.zeros(2, 2)}, b / "field.safetensors")


def _resave(b: Path, metadata=None, rename=None, reshape=None, nan=None) -> None:
    import torch

    state = _field_state(b)
    if rename:
        state[rename[1]] = state.pop(rename[0])
    if reshape:
        state[reshape] = torch.zeros(*state[reshape].shape[:-1], state[reshape].shape[-1] + 1)
    if nan:
        state[nan] = state[nan].clone()
        state[nan].view(-1)[0] = float("nan")
    _save_field(b, state, metadata)


def _one_line_refusal(fn) -> str:
    with pytest.raises(BundleError) as info:
        fn()
    line = info.value.one_line()
    assert "\n" not in line and "\r" not in line and len(line) < 300, line
    assert SENTINEL_TEXT not in line
    return line


def test_the_good_bundle_loads(world):
    """The baseline the corpus departs from: the unmodified copy loads, with its own landmarks."""
    b, _ = world
    avatar = load_avatar(b)
    lm = load_landmarks_world(avatar)
    assert lm.shape == (478, 3) and not np.any(lm == SENTINEL)


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_load_avatar_refuses_a_bad_bundle_in_one_line(world, case):
    b, outside = world
    CORPUS[case](b, outside)
    line = _one_line_refusal(lambda: load_avatar(b))
    print(f"{case}: {line}")
    if case.startswith("field_"):
        assert "field" in line, line


# Readers beyond load_avatar: the landmarks (scripts, the rig) and the expression file (the rig).
READERS = {
    "landmarks_dotdot": lambda b, o: _set(b, "files.landmarks", "../outside/landmarks.json"),
    "landmarks_absolute": lambda b, o: _set(b, "files.landmarks", str(o / "landmarks.json")),
    "landmarks_symlink_outside": lambda b, o: (
        (b / "landmarks.json").unlink(),
        os.symlink(o / "landmarks.json", b / "landmarks.json"),
    ),
    "landmarks_missing_key": lambda b, o: _set(b, "files.landmarks", ...),
    "landmarks_is_a_list": lambda b, o: _replace(b / "landmarks.json", "[]"),
    "landmarks_wrong_shape": lambda b, o: _replace(
        b / "landmarks.json", json.dumps({"landmarks_world": [[0.0, 1.0]] * 478})
    ),
    "landmarks_strings": lambda b, o: _replace(
        b / "landmarks.json", json.dumps({"landmarks_world": [["x", 1, 2]] * 478})
    ),
    "landmarks_deep": lambda b, o: _replace(b / "landmarks.json", "[" * 100000 + "]" * 100000),
}
RIG_ONLY = {
    "expression_dotdot": lambda b, o: _set(b, "files.expression", "../outside/expression.json"),
    "expression_absolute": lambda b, o: _set(b, "files.expression", str(o / "expression.json")),
    "expression_symlink_outside": lambda b, o: (
        (b / "expression.json").unlink(),
        os.symlink(o / "expression.json", b / "expression.json"),
    ),
    "expression_is_a_list": lambda b, o: _replace(b / "expression.json", "[]"),
    "expression_weight_out_of_range": lambda b, o: _edit_expression(b, photo_weights={"jawOpen": 7.0}),
    "expression_weights_a_list": lambda b, o: _edit_expression(b, photo_weights=[0.1, 0.2]),
    "expression_neutral_ragged": lambda b, o: _edit_expression(b, neutral_proxy_world_m=[[1, 2], [3]]),
    "expression_newer_version": lambda b, o: _edit_expression(b, format_version=9),
    "landmarks_degenerate_face": lambda b, o: _replace(
        b / "landmarks.json", json.dumps({"landmarks_world": [[0.0] * 3] * 478})
    ),
}


def _edit_expression(b: Path, **changes) -> None:
    data = json.loads((b / "expression.json").read_text())
    data.update(changes)
    _replace(b / "expression.json", json.dumps(data))


@pytest.fixture
def loaded(world):
    """A good copy loaded once (the field), then its manifest or files spoiled for the readers after load."""
    b, outside = world
    return load_avatar(b), b, outside


@pytest.mark.parametrize("case", sorted(READERS))
def test_landmark_readers_refuse_in_one_line(loaded, case):
    from engine.rig import rig_for_avatar

    avatar, b, outside = loaded
    READERS[case](b, outside)
    avatar.manifest = read_manifest(b)
    print(f"{case}: {_one_line_refusal(lambda: load_landmarks_world(avatar))}")
    _one_line_refusal(lambda: rig_for_avatar(avatar))


@pytest.mark.parametrize("case", sorted(RIG_ONLY))
def test_expression_rig_refuses_in_one_line(loaded, case):
    from engine.rig import deform_for_avatar

    avatar, b, outside = loaded
    RIG_ONLY[case](b, outside)
    avatar.manifest = read_manifest(b)
    print(f"{case}: {_one_line_refusal(lambda: deform_for_avatar(avatar, {'jawOpen': 0.5}))}")


# -- the one helper, and the add-on's copy of it -------------------------------------------------------------------


@pytest.fixture
def layout(tmp_path):
    """A bundle folder with files, a sub-folder, links in and out, a loop, a dangling link and a FIFO."""
    root, out = tmp_path / "bundle", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    out.mkdir()
    (root / "a.png").write_bytes(b"a")
    (root / "sub" / "b.png").write_bytes(b"b")
    (root / "dir").mkdir()
    (out / "secret.png").write_text(SENTINEL_TEXT)
    os.symlink(out / "secret.png", root / "link_out")
    os.symlink(root / "a.png", root / "link_in")
    os.symlink("a.png", root / "link_rel_in")
    os.symlink(out, root / "dir_out")
    os.symlink(root / "loop", root / "loop")
    os.symlink("/nonexistent-likeness/x.png", root / "dangling_out")
    os.symlink("missing-target.png", root / "dangling_in")
    os.mkfifo(root / "fifo")
    return root, out


NAMES = [
    "a.png",
    "sub/b.png",
    "./a.png",
    "sub/../a.png",
    "sub//b.png",
    "link_in",
    "link_rel_in",
    "missing.png",
    "sub/missing.png",
    "dangling_in",
    "../outside/secret.png",
    "sub/../../outside/secret.png",
    "link_out",
    "dir_out/secret.png",
    "dir_out/../bundle/a.png",
    "dangling_out",
    "loop",
    "fifo",
    "dir",
    "sub",
    ".",
    "..",
    "",
    "a.png\x00",
    "..\\outside\\secret.png",
    "C:a.png",
    "/etc/passwd",
    "//etc/passwd",
    "x" * 2000,
    12,
    1.5,
    True,
    ["a.png"],
    {"a": "a.png"},
    "ABSOLUTE_INSIDE",
    "ABSENT",
]


def _outcome(fn, *args, **kw):
    try:
        p = fn(*args, **kw)
    except (BundleError, addon_bundle.BundleInvalid) as exc:
        text = str(exc)
        assert "\n" not in text and len(text) < 300 and SENTINEL_TEXT not in text, text
        return "refused"
    return None if p is None else p


@pytest.mark.parametrize("required", [True, False])
def test_engine_and_addon_resolve_names_alike(layout, required):
    root, out = layout
    expected_paths = {"a.png", "sub/b.png", "./a.png", "sub/../a.png", "sub//b.png", "link_in", "link_rel_in"}
    expected_paths.add("dir_out/../bundle/a.png")  # resolves (link first, then ..) back to bundle/a.png: inside
    for name in NAMES:
        manifest = (
            {"files": {}}
            if name == "ABSENT"
            else {"files": {"k": str(root / "a.png") if name == "ABSOLUTE_INSIDE" else name}}
        )
        engine = _outcome(engine_bundle.bundle_file, root, manifest, "k", required=required)
        addon = _outcome(addon_bundle.bundle_file, root, manifest, "k", required=required)
        assert engine == addon, (name, engine, addon)
        if isinstance(name, str) and name in expected_paths:
            assert isinstance(engine, Path) and engine.is_file() and engine.is_relative_to(root.resolve()), name
        elif name in ("missing.png", "sub/missing.png", "dangling_in", "ABSENT"):
            assert engine == ("refused" if required else None), (name, engine)
        else:
            assert engine == "refused", (name, engine)


def test_addon_reader_refuses_evil_bundles(world):
    b, outside = world
    assert addon_bundle.read_bundle(b).file("landmarks").is_file()
    cases = [
        lambda: _replace(b / "manifest.json", "[]"),
        lambda: _replace(b / "manifest.json", "[" * 100000 + "]" * 100000),
        lambda: _set(b, "files.landmarks", "../outside/landmarks.json"),
        lambda: _set(b, "files.glb", str(outside / "secret.txt")),
        lambda: _set(b, "files", ["head.glb"]),
        lambda: _set(b, "camera.cam2world", "identity"),
        lambda: _replace(b / "landmarks.json", json.dumps({"landmarks_world": [[1, 2]]})),
    ]
    original_manifest = (b / "manifest.json").read_text()
    original_lm = (b / "landmarks.json").read_text()
    for spoil in cases:
        _replace(b / "manifest.json", original_manifest)
        _replace(b / "landmarks.json", original_lm)
        spoil()
        with pytest.raises(addon_bundle.BundleInvalid) as info:
            addon_bundle.read_bundle(b)
        assert "\n" not in str(info.value) and SENTINEL_TEXT not in str(info.value)


# -- the CLI and the server -------------------------------------------------------------------------------------------


def test_cli_render_of_a_bad_bundle_exits_2_with_one_line(world, tmp_path):
    b, outside = world
    _set(b, "files.field", "../outside/field.safetensors")  # a valid field: followed, it would render
    for spoil in (None, lambda: _replace(b / "manifest.json", "[" * 100000 + "]" * 100000)):
        if spoil:
            spoil()
        out = tmp_path / "x.png"
        r = subprocess.run(
            [sys.executable, "-m", "engine", "render", str(b), "-o", str(out), "--size", "16"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
        assert len(lines) == 1 and "Traceback" not in r.stderr and lines[0].startswith("likeness: error:"), r.stderr
        assert not out.exists()


GOOD_ID, EVIL_ID, BROKEN_ID, BADFIELD_ID = "a1" * 16, "e1" * 16, "b1" * 16, "f1" * 16


@pytest.fixture(scope="module")
def served(tmp_path_factory, good):
    root = tmp_path_factory.mktemp("reads")
    ws = root / "ws"
    (ws / "avatars").mkdir(parents=True)
    (root / "landmarks.json").write_text(json.dumps({"landmarks_world": [[SENTINEL] * 3] * 478}))
    (root / "secret.json").write_text(json.dumps({"note": SENTINEL_TEXT}))
    _copy_bundle(good, ws / "avatars" / GOOD_ID)
    evil = _copy_bundle(good, ws / "avatars" / EVIL_ID)
    _set(evil, "files.landmarks", "../../../landmarks.json")
    _set(evil, "files.expression", "../../../secret.json")
    broken = _copy_bundle(good, ws / "avatars" / BROKEN_ID)
    _replace(broken / "manifest.json", "[]")
    badfield = _copy_bundle(good, ws / "avatars" / BADFIELD_ID)
    _replace(badfield / "field.safetensors", (good / "field.safetensors").read_bytes()[:4096])
    srv = ServerProcess(ws)
    srv.start()
    yield srv
    srv.stop()


def _bad_bundle(r) -> dict:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == "bad_bundle" and err["message"] and err["hint"], err
    assert "\n" not in err["message"] and SENTINEL_TEXT not in r.text and str(SENTINEL) not in r.text
    assert "/tmp" not in r.text, r.text
    return err


@pytest.mark.slow
def test_server_lists_the_good_and_refuses_the_bad_cleanly(served, good):
    cam = photo_camera(_manifest(good), 16)
    with served.client(timeout=600.0) as c:
        listing = c.get("/v1/avatars")
        assert listing.status_code == 200, listing.text
        body = listing.json()
        ids = [a["id"] for a in body["avatars"]]
        assert GOOD_ID in ids and EVIL_ID in ids and BROKEN_ID not in ids, body
        assert [s["id"] for s in body["skipped"]] == [BROKEN_ID], body
        assert body["skipped"][0]["code"] == "bad_bundle" and "JSON object" in body["skipped"][0]["message"]

        ok = c.post(f"/v1/avatars/{GOOD_ID}/render", json={**cam, "expression": {}})
        assert ok.status_code == 200 and ok.headers["content-type"] == "image/png", ok.text

        err = _bad_bundle(c.post(f"/v1/avatars/{EVIL_ID}/render", json={**cam, "expression": {"jawOpen": 0.5}}))
        assert "files.landmarks" in err["message"] and "outside" in err["message"], err
        _set(served.workspace / "avatars" / EVIL_ID, "files.landmarks", "landmarks.json")  # now the expression
        err = _bad_bundle(c.post(f"/v1/avatars/{EVIL_ID}/render", json={**cam, "expression": {"jawOpen": 0.5}}))
        assert "files.expression" in err["message"], err

        _bad_bundle(c.get(f"/v1/avatars/{BROKEN_ID}"))
        _bad_bundle(c.post(f"/v1/avatars/{BROKEN_ID}/render", json=cam))
        _bad_bundle(c.get(f"/v1/avatars/{BROKEN_ID}/files/glb"))
        _bad_bundle(c.post(f"/v1/avatars/{BADFIELD_ID}/render", json=cam))
        nope = c.get(f"/v1/avatars/{EVIL_ID}/files/expression")  # a file refusal says nothing: plain 404
        assert nope.status_code == 404 and nope.json()["error"]["code"] == "not_found", nope.text
        assert c.get("/v1/avatars").status_code == 200
    assert "Traceback" not in served.log(), served.log()[-3000:]
