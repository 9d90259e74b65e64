"""Head and neck rotation (engine/rig/pose.py, engine/asset/skinning.py): the Live Link angle convention, the
refusals, the neck blend's weights, the backward warp against the forward skinning, the posed field's cube; and
on the session's draft bundle, the asset GLB's skin weights, the fallback fit for a bundle without an asset, and
the neural render agreeing with the skinned mesh under head turns (scripts/key_agreement.py --heads)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from engine.errors import InputError
from engine.rig.pose import (
    NeckBlend,
    PoseDeform,
    PosedField,
    about_joint,
    body_pose,
    check_pose,
    eye_gaze,
    pose_points,
    rotation_matrix,
)


def _blend() -> NeckBlend:
    """A neck cut tilted as the template's (its front lower), 2.5 cm of blend above it, 3 cm of fade below."""
    n = np.array([0.0, 0.9, 0.45])
    return NeckBlend(np.array([0.0, -0.11, -0.02]), n / np.linalg.norm(n), 0.025, 0.03,
                     np.array([0.0, -0.10, -0.05]), np.array([0.0, -0.03, -0.035]))  # fmt: skip


def test_live_link_angles_turn_the_face_as_documented():
    face = np.array([0.0, 0.0, 1.0])  # the engine's face looks toward +Z, +X is the subject's left
    assert (rotation_matrix(0.3, 0, 0) @ face)[0] > 0.25  # +yaw: toward the subject's left
    assert (rotation_matrix(0, 0.3, 0) @ face)[1] < -0.25  # +pitch: chin down
    assert (rotation_matrix(0, 0, 0.3) @ np.array([1.0, 0, 0]))[1] > 0.25  # +roll: the left ear up
    r = rotation_matrix(0.4, -0.3, 0.2)
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_matches_the_addons_quaternion():
    """The add-on's rotation_quaternion (Blender axes) is the same rotation in the engine's axes."""
    from blender_addon.livelink import rotation_quaternion

    w, x, y, z = rotation_quaternion(0.4, -0.3, 0.2)
    q = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    to_b = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # engine (x, y, z) -> Blender (x, -z, y)
    np.testing.assert_allclose(to_b.T @ q @ to_b, rotation_matrix(0.4, -0.3, 0.2), atol=1e-12)


@pytest.mark.parametrize(
    "pose, words",
    [
        ({"jaw": np.eye(4)}, "not 'jaw'"),
        ({"eye_L": about_joint(rotation_matrix(0.0, math.radians(60), 0.0), [0.03, 0, 0.02])}, "60 degrees"),
        ({"head": about_joint(rotation_matrix(0.9, 0, 0), [0, -0.03, 0]), "eye_R": np.eye(4)}, "52 degrees"),
        ({"head": np.eye(3)}, "4x4"),
        ({"head": [[1, 0, 0, 0]] * 4}, "last row"),
        ({"head": np.diag([1.2, 1.2, 1.2, 1.0])}, "not a rotation"),
        ({"head": np.diag([1.0, 1.0, -1.0, 1.0])}, "not a rotation"),
        ({"head": about_joint(np.eye(3), [0, 0, 0]) + np.pad(np.ones((3, 1)) * 0.9, ((0, 1), (3, 0)))}, "1 m"),
        ({"head": np.full((4, 4), np.nan)}, "finite"),
        ({"neck": "not a matrix"}, "4x4"),
    ],
)
def test_bad_poses_are_refused_in_one_line(pose, words):
    with pytest.raises(InputError) as e:
        check_pose(pose)
    assert words in e.value.message and "\n" not in e.value.message


def test_identity_bones_are_dropped():
    assert check_pose({"head": np.eye(4), "neck": np.eye(4).tolist()}) == {}
    assert check_pose(None) == {}
    turned = about_joint(rotation_matrix(0.2, 0, 0), [0, -0.03, 0])
    assert set(check_pose({"head": turned, "neck": np.eye(4)})) == {"head"}


def test_an_eyes_gaze_is_its_turn_from_the_head():
    """eye_gaze: an eye bone's rotation relative to the head bone (the armature's eye is the head's child), about
    the eyeball's centre; an eye that turns with the head has no gaze of its own, one left at rest under a turned
    head looks away from the head's direction."""
    centre = np.array([0.032, 0.0, 0.02])
    head = about_joint(rotation_matrix(0.3, 0.1, 0.0), [0, -0.04, -0.01])
    look = about_joint(rotation_matrix(0.25, -0.15, 0.0), centre)
    assert eye_gaze(check_pose({"head": head, "eye_L": head})) == {}
    gaze = eye_gaze(check_pose({"head": head, "eye_L": head @ look, "eye_R": np.eye(4)}))
    np.testing.assert_allclose(gaze["eye_L"], look[:3, :3], atol=1e-12)
    np.testing.assert_allclose(gaze["eye_R"], head[:3, :3].T, atol=1e-12)
    assert set(body_pose(check_pose({"head": head, "eye_L": look}))) == {"head"}


def test_neck_blend_weights():
    b = _blend()
    up = b.normal
    pts = b.point + np.outer(np.linspace(-0.06, 0.06, 121), up)
    w = b.weights(pts)
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert (w >= -1e-12).all()
    h = np.linspace(-0.06, 0.06, 121)
    assert (w[h >= 0.025, 2] == 1).all() and (w[h <= 0, 2] == 0).all()  # the cut itself is the neck's alone
    assert (w[h <= -0.03, 0] == 1).all() and (np.diff(w[:, 2]) >= 0).all()
    assert NeckBlend.from_dict(json.loads(json.dumps(b.to_dict()))).to_dict() == b.to_dict()
    with pytest.raises(ValueError):
        NeckBlend.from_dict({**b.to_dict(), "plane_normal": [0, 0, 0]})
    with pytest.raises((ValueError, KeyError)):
        NeckBlend.from_dict({"plane_point_m": [0, 0, 0]})


def test_backward_warp_inverts_the_skinning():
    """Points round the head and neck, skinned forward by a neck bend and a head turn (each bone about its own
    joint, the head's including the neck's), come back through PoseDeform.unpose: exactly where one bone has all
    the weight; in the throat's blend to a rest point that skins onto the posed one (a turn this strong folds
    the blend a little, as any linear blend skinning does, so a few have two)."""
    b = _blend()
    neck = about_joint(rotation_matrix(0.0, 0.15, 0.05), b.neck_joint)
    head = neck @ about_joint(rotation_matrix(0.5, -0.2, 0.1), b.head_joint)
    pose = check_pose({"neck": neck, "head": head})
    rng = np.random.default_rng(3)
    rest = rng.uniform([-0.1, -0.25, -0.12], [0.1, 0.12, 0.14], (40000, 3))
    rest = rest[np.linalg.norm(np.cross(rest - b.point, b.normal), axis=1) < 0.06]  # inside a neck's girth
    posed = pose_points(b, pose, rest)
    scale = 0.96
    back = PoseDeform(b, pose, scale).unpose(torch.as_tensor(posed * scale, dtype=torch.float32))[0]
    back = back.double().numpy() / scale
    err = np.linalg.norm(back - rest, axis=1)
    lands = np.linalg.norm(pose_points(b, pose, back) - posed, axis=1)
    h = (rest - b.point) @ b.normal
    pure = (h > b.head_m + 0.005) | (h < -b.root_m - 0.005)
    print(
        f"forward then backward, {len(rest)} points: off the blend max {1e6 * err[pure].max():.1f} um; in it "
        f"{(lands[~pure] < 1e-5).mean():.2%} land within 10 um, {(err[~pure] < 1e-4).mean():.2%} are the same point"
    )
    assert err[pure].max() < 2e-5
    assert (lands[~pure] < 1e-5).mean() > 0.999 and (err[~pure] < 1e-4).mean() > 0.97
    top = pose_points(b, pose, b.head_joint[None] + [[0.0, 0.15, 0.0]])[0]  # the crown moves with the head
    assert np.linalg.norm(top - (head[:3, :3] @ (b.head_joint + [0, 0.15, 0]) + head[:3, 3])) < 1e-12
    body = b.point - 0.05 * b.normal  # the chest below the fade stays
    np.testing.assert_allclose(pose_points(b, pose, body[None])[0], body)


class _Ball:
    """A real (analytic) field: a 6 cm ball of SDF at the crown, red, in a 0.2-unit cube."""

    box_center = torch.zeros(3)
    box_half = 0.2
    beta = 0.002
    voxel = 0.004

    def __init__(self, centre):
        self.c = torch.as_tensor(centre, dtype=torch.float32)

    def sdf_at(self, x):
        return (x - self.c).norm(dim=-1) - 0.06

    def density(self, x, beta=None):
        b = beta or self.beta
        return torch.sigmoid(-self.sdf_at(x) / b) / b

    def colour(self, x, learned_only=False, view_dirs=None):
        return torch.tensor([1.0, 0.0, 0.0]).expand(len(x), 3)


def test_posed_field_moves_the_ball_and_holds_it_in_its_cube():
    b = _blend()
    crown = b.head_joint + [0.0, 0.145, 0.0]
    ball = _Ball(crown)
    head = about_joint(rotation_matrix(0.0, 0.0, 1.5), b.head_joint)  # the head on its shoulder: out of the cube
    field = PosedField(ball, PoseDeform(b, check_pose({"head": head}), 1.0), ball)
    moved = head[:3, :3] @ crown + head[:3, 3]
    assert np.abs(moved).max() + 0.06 > 0.2  # outside the field's own cube ...
    lo = field.box_center.numpy() - field.box_half
    hi = field.box_center.numpy() + field.box_half
    assert (moved - 0.06 >= lo).all() and (moved + 0.06 <= hi).all()  # ... inside the posed field's
    x = torch.as_tensor(np.stack([moved, crown]), dtype=torch.float32)
    sig = field.density(x)
    assert sig[0] > 100 and sig[1] < 1e-3  # the ball is where the head took it, not where it was
    outside = torch.tensor([[0.0, -0.3, 0.0]])  # below the field's cube, the body's (not moved): empty
    assert field.density(outside)[0] == 0


@pytest.mark.slow
def test_asset_glb_skins_by_the_neck_blend(bundle_dir):
    """The draft bundle's asset records its neck blend, its skin's weights are that blend's, the neck cut is the
    neck bone's alone and the face the head's; a bundle without the asset gets nearly the same blend from the
    prior fitted to its landmarks."""
    from engine.asset.skinning import neck_blend_for_avatar
    from engine.avatar import load_avatar
    from engine.rig.gltf import accessor_array, read_glb

    glb = bundle_dir / "asset" / "head.glb"
    if not glb.is_file():
        pytest.skip("the bundle has no asset (the head prior is not prepared)")
    g, binary = read_glb(glb.read_bytes())
    blend = NeckBlend.from_dict(g["skins"][0]["extras"]["likeness_neck_blend"])
    names = np.array([g["nodes"][j]["name"] for j in g["skins"][0]["joints"]])
    skin = next(m for m in g["meshes"] if m["name"] == "skin")["primitives"][0]["attributes"]
    pos = accessor_array(g, binary, skin["POSITION"])
    jw, jj = accessor_array(g, binary, skin["WEIGHTS_0"]), accessor_array(g, binary, skin["JOINTS_0"]).astype(int)
    head = (jw * (names[jj] == "head")).sum(1)
    np.testing.assert_allclose(head, blend.weights(pos)[:, 2], atol=2e-4)
    h = (pos - blend.point) @ blend.normal
    assert (head[h < 0.0] < 1e-3).all() and (head[h > blend.head_m] > 0.999).all()
    assert 0.9 < (head > 0.999).mean() < 0.995  # the throat and the nape blend, the rest is the head's
    avatar = load_avatar(bundle_dir)
    assert neck_blend_for_avatar(avatar).to_dict() == blend.to_dict()
    # the neural render's backward warp finds the skin vertices of the turned head back where they were (the chin
    # tipped down onto the throat folds the skin: there a vertex of the chin lands where one of the throat does)
    from engine.asset.skinning import head_pose

    pose = check_pose(head_pose(avatar, 30.0, 15.0, -10.0))
    posed = pose_points(blend, pose, pos)
    back = PoseDeform(blend, pose, avatar.scale).unpose(torch.as_tensor(posed * avatar.scale, dtype=torch.float32))
    back = back[0].double().numpy() / avatar.scale
    err = np.linalg.norm(back - pos, axis=1)
    lands = np.linalg.norm(pose_points(blend, pose, back) - posed, axis=1)
    print(f"skin vertices posed (30/15/-10 deg) and back: {(err < 1e-4).mean():.2%} within 0.1 mm, every one "
          f"landing within {1000 * lands.max():.4f} mm of its posed place")  # fmt: skip
    assert (err < 1e-4).mean() > 0.97 and lands.max() < 1e-4
    bare = _without_asset(bundle_dir)
    fitted = neck_blend_for_avatar(load_avatar(bare))
    gap = np.linalg.norm(fitted.point - blend.point)
    angle = math.degrees(math.acos(min(1.0, float(fitted.normal @ blend.normal))))
    print(f"no asset: the fitted neck cut's plane is {1000 * gap:.1f} mm and {angle:.1f} deg from the asset's")
    assert gap < 0.006 and angle < 5.0


def _without_asset(bundle_dir):
    import tempfile
    from pathlib import Path

    old = Path(tempfile.mkdtemp(prefix="likeness-noasset-")) / "b"
    shutil.copytree(bundle_dir, old, ignore=shutil.ignore_patterns("asset", "turntable*"))
    m = json.loads((bundle_dir / "manifest.json").read_text())
    m["files"] = {k: v for k, v in m["files"].items() if not k.startswith("asset_") and (old / v).exists()}
    m.pop("asset", None)
    (old / "manifest.json").write_text(json.dumps(m))
    return old


@pytest.mark.slow
def test_neural_render_follows_the_skinned_mesh_under_head_turns(bundle_dir, capsys):
    """scripts/key_agreement.py --heads: the field turned by engine.rig.pose against the asset skinned by the GLB's
    weights, silhouette IoU at the front and in profile no more than 0.025 below the rest pose's own (a head tipped
    down shows more of the field's neck under the jaw, which the asset, cut there, does not have)."""
    import sys
    from pathlib import Path

    if not (bundle_dir / "asset" / "head.glb").is_file():
        pytest.skip("the bundle has no asset (the head prior is not prepared)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import key_agreement

    rc = key_agreement.main([str(bundle_dir), "--yaws", "0,90", "--size", "96", "--keys", "none",
                             "--heads", "25,0,0;0,20,0;0,0,15"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    report = json.loads(out)
    for view in ("yaw0", "yaw90"):
        rest = report[view]["neutral_iou"]
        heads = {k: v["iou"] for k, v in report[view]["heads"].items()}
        print(view, rest, heads)
        assert len(heads) == 3 and min(heads.values()) >= rest - 0.025, (view, rest, heads)
        assert all(v["field_moved_px"] > 20 and v["mesh_moved_px"] > 20 for v in report[view]["heads"].values())
    assert key_agreement.main([str(bundle_dir), "--heads", "25,0"]) == 2
