"""The render route's ``expression`` against a real ``likeness serve`` process (no mocks), serving the session's
draft bundle: absent or null renders the field as fitted (the photo's own expression); ``{}`` is the neutral face,
which differs from it when the photo is not neutral; the photo's weights reproduce the fitted render on either rig
(the proxy's from expression.json, the asset's from its GLB's default weights, the latter under the default rig,
auto); an unknown name or rig is refused before anything is queued."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from test_server_harness import ServerProcess, photo_camera, workspace_with

pytestmark = pytest.mark.slow  # a real server process / build (make quick skips it)

AVATAR_ID = "ab" * 16


@pytest.fixture(scope="module")
def served(tmp_path_factory, bundle_dir):
    ws = workspace_with(tmp_path_factory.mktemp("expr") / "ws", bundle_dir, AVATAR_ID)
    srv = ServerProcess(ws)
    srv.start()
    yield srv
    srv.stop()


def _rgba(r) -> np.ndarray:
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    return np.asarray(Image.open(io.BytesIO(r.content)), np.int16)


def test_empty_expression_is_neutral_and_absent_is_the_photo(served, bundle_dir):
    photo = json.loads((bundle_dir / "expression.json").read_text())["photo_weights"]
    assert max(photo.values()) > 0.2, "the demo portrait smiles: its photo expression is not neutral"
    with served.client(timeout=600.0) as c:
        manifest = c.get(f"/v1/avatars/{AVATAR_ID}").json()
        cam = photo_camera(manifest, 96)
        url = f"/v1/avatars/{AVATAR_ID}/render"
        absent = _rgba(c.post(url, json=cam))
        null = _rgba(c.post(url, json={**cam, "expression": None}))
        neutral = _rgba(c.post(url, json={**cam, "expression": {}, "rig": "proxy"}))
        neutral_auto = _rgba(c.post(url, json={**cam, "expression": {}}))
        as_photo = _rgba(c.post(url, json={**cam, "expression": photo, "rig": "proxy"}))
        as_photo_asset = None
        if (bundle_dir / "asset" / "head.glb").is_file():
            from engine.rig.arkit import ARKIT_NAMES, to_dict
            from engine.rig.asset_rig import read_asset_keys

            w = read_asset_keys(bundle_dir / "asset" / "head.glb").default_weights
            as_photo_asset = _rgba(c.post(url, json={**cam, "expression": to_dict(w, skip_zero=True)}))
            assert len(w) == len(ARKIT_NAMES)
        bad = c.post(url, json={**cam, "expression": {"jawOpn": 0.5}})
        bad_rig = c.post(url, json={**cam, "expression": {}, "rig": "scan"})
    np.testing.assert_array_equal(null, absent)
    assert (absent[..., 3] > 128).mean() > 0.3, "the face should fill the frame"
    diff = np.abs(neutral - absent)[..., :3].max(-1)
    print(f"neutral vs photo expression: {(diff > 8).mean():.1%} of pixels differ by more than 8/255")
    assert (diff > 8).mean() > 0.01, "{} must render the neutral face, not the photo's expression"
    # the default rig (auto) is the asset's here, which reads the photo's smile weaker (docs/RIG.md): its neutral
    # face is nearer the photo, but still not it
    if as_photo_asset is not None:
        diff_auto = np.abs(neutral_auto - absent)[..., :3].max(-1)
        print(f"asset rig: neutral vs photo: {(diff_auto > 8).mean():.1%} of pixels differ by more than 8/255")
        assert (diff_auto > 8).mean() > 0.002
        assert np.abs(neutral_auto - neutral).max() > 8, "the two rigs' neutral faces are not the same face"
    else:  # no asset: auto is the proxy
        np.testing.assert_array_equal(neutral_auto, neutral)
    assert np.abs(as_photo - absent).max() <= 1, "the photo's weights reproduce the fitted field"
    if as_photo_asset is not None:
        assert np.abs(as_photo_asset - absent).max() <= 1, "the asset's photo weights reproduce it on the asset rig"
    assert bad_rig.status_code == 422 and "rig" in bad_rig.text, bad_rig.text
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_expression", bad.text
    assert "jawOpn" in bad.json()["error"]["message"]


def test_head_pose_turns_the_head_as_in_process(served, bundle_dir):
    """``pose`` (the asset armature's head bone, a rigid 4x4 in world axes) renders what engine.rig.pose renders
    in-process, with and without an expression; the identity pose is the rest pose; a bone the armature does not
    have, a scaled matrix or a far translation are refused (422) before anything is rendered."""
    from engine.asset.skinning import head_pose, pose_deform
    from engine.avatar import load_avatar
    from engine.conventions import Intrinsics
    from engine.extract.export import rgba_u8
    from engine.rig import deform_for_avatar

    local = load_avatar(bundle_dir)
    turn = head_pose(local, 25.0, 10.0, -5.0)["head"]
    with served.client(timeout=600.0) as c:
        cam = photo_camera(c.get(f"/v1/avatars/{AVATAR_ID}").json(), 96)
        url = f"/v1/avatars/{AVATAR_ID}/render"
        rest = _rgba(c.post(url, json=cam))
        identity = _rgba(c.post(url, json={**cam, "pose": {"head": np.eye(4).tolist(), "neck": np.eye(4).tolist()}}))
        turned = _rgba(c.post(url, json={**cam, "pose": {"head": turn.tolist()}}))
        both = _rgba(c.post(url, json={**cam, "pose": {"head": turn.tolist()}, "expression": {"jawOpen": 0.6}}))
        scaled = turn.copy()
        scaled[:3, :3] *= 1.2
        far = turn.copy()
        far[:3, 3] += 2.0
        bad = [
            c.post(url, json={**cam, "pose": {"jaw": turn.tolist()}}),
            c.post(url, json={**cam, "pose": {"head": scaled.tolist()}}),
            c.post(url, json={**cam, "pose": {"head": far.tolist()}}),
            c.post(url, json={**cam, "pose": {"head": turn[:3].tolist()}}),
        ]
    np.testing.assert_array_equal(identity, rest)
    cam2world, intr = np.array(cam["cam2world"]), Intrinsics.from_dict(cam["intrinsics"])
    mine = rgba_u8(local.render(cam2world, intr, deform=pose_deform(local, {"head": turn}))).astype(np.int16)
    jaw = pose_deform(local, {"head": turn}, deform_for_avatar(local, {"jawOpen": 0.6}))
    mine_both = rgba_u8(local.render(cam2world, intr, deform=jaw)).astype(np.int16)
    moved = (np.abs(turned - rest)[..., :3].max(-1) > 24).mean()
    print(f"head turned 25/10/-5 deg: {moved:.1%} of pixels change; served vs in-process max |diff| "
          f"{np.abs(turned - mine).max()} / {np.abs(both - mine_both).max()} (with jawOpen)")  # fmt: skip
    assert moved > 0.05
    assert np.abs(turned - mine).max() <= 2 and np.abs(both - mine_both).max() <= 2
    assert np.abs(both - turned).max() > 24  # the jaw opens on the turned head
    for r in bad:
        assert r.status_code == 422, r.text
    assert "jaw" in bad[0].text and "rotation" in bad[1].text and "1 m" in bad[2].text


def test_eye_bones_turn_the_eyes_as_in_process(served, bundle_dir):
    """An eye bone in ``pose`` (turned from the head's direction) renders what engine.asset.skinning.render_deform
    renders in-process, alone and under a turned head; an eye turned past 50 degrees, or on the proxy's rig, is a
    422 with the reason."""
    from engine.asset.skinning import head_pose, render_deform
    from engine.avatar import load_avatar
    from engine.conventions import Intrinsics
    from engine.extract.export import rgba_u8
    from engine.rig import rig_named
    from engine.rig.pose import about_joint, rotation_matrix

    local = load_avatar(bundle_dir)
    if getattr(rig_named(local, "auto"), "eyes", None) is None:
        pytest.skip("the draft bundle has no asset (the head prior is not prepared: likeness prepare-prior)")
    centre = rig_named(local, "asset").eyes["left"][0]
    look = about_joint(rotation_matrix(np.radians(25.0), np.radians(-10.0), 0.0), centre)
    head = head_pose(local, 20.0, 0.0, 0.0)["head"]
    cases = {"eye": {"eye_L": look}, "eye+head": {"head": head, "eye_L": head @ look}}
    with served.client(timeout=600.0) as c:
        cam = photo_camera(c.get(f"/v1/avatars/{AVATAR_ID}").json(), 96)
        url = f"/v1/avatars/{AVATAR_ID}/render"
        rest = _rgba(c.post(url, json=cam))
        got = {
            k: _rgba(c.post(url, json={**cam, "pose": {b: m.tolist() for b, m in p.items()}})) for k, p in cases.items()
        }
        far = about_joint(rotation_matrix(np.radians(70.0), 0.0, 0.0), centre)
        too_far = c.post(url, json={**cam, "pose": {"eye_L": far.tolist()}})
        proxy = c.post(url, json={**cam, "pose": {"eye_L": look.tolist()}, "rig": "proxy"})
    cam2world, intr = np.array(cam["cam2world"]), Intrinsics.from_dict(cam["intrinsics"])
    for k, p in cases.items():
        mine = rgba_u8(local.render(cam2world, intr, deform=render_deform(local, None, p))).astype(np.int16)
        print(f"{k}: served vs in-process max |diff| {np.abs(got[k] - mine).max()}")
        assert np.abs(got[k] - mine).max() <= 2
    assert np.abs(got["eye"] - rest).max() > 24  # the iris moved
    assert too_far.status_code == 422 and "70 degrees" in too_far.text, too_far.text
    assert proxy.status_code == 422 and "rig" in proxy.text, proxy.text
