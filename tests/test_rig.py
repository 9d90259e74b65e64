"""The expression rig without a built avatar: names, proxy topology, the authored shapes, the warp (fast path vs
its exact twin), the renderer's deform hook, fitting, Live Link Face CSV and glTF morph targets."""

from __future__ import annotations

import io
import itertools
from collections import Counter

import numpy as np
import pytest
import torch

from engine.errors import InputError
from engine.rig import arkit
from engine.rig import topology as T

REAL_LLF_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,EyeSquintLeft,"
    "EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,EyeSquintRight,"
    "EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthRight,MouthLeft,"
    "MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,MouthDimpleRight,"
    "MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,MouthShrugUpper,"
    "MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,MouthUpperUpRight,"
    "BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,CheekSquintLeft,"
    "CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,"
    "LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
)


@pytest.fixture(scope="module")
def landmarks(astronaut_rgb) -> np.ndarray:
    """The demo portrait's 478 landmarks, lifted to metric 3-D (world-like frame)."""
    from engine.rig.fit import image_landmarks, lift

    pts = image_landmarks(astronaut_rgb)
    return lift(pts, astronaut_rgb.shape[1], astronaut_rgb.shape[0])


@pytest.fixture(scope="module")
def rig(landmarks):
    from engine.rig.rig import build_rig

    return build_rig(landmarks)


# ----------------------------------------------------------------------------------------------- names
def test_arkit_names_and_three_spellings():
    assert len(arkit.ARKIT_NAMES) == 52 == len(set(arkit.ARKIT_NAMES))
    for n in arkit.ARKIT_NAMES:
        for spelling in (n, arkit.livelink_name(n), arkit.suffix_name(n), n.upper(), arkit.suffix_name(n).lower()):
            assert arkit.canonical_name(spelling) == n
    assert arkit.livelink_name("eyeBlink_L") == "EyeBlinkLeft" and arkit.suffix_name("JawOpen") == "jawOpen"
    assert arkit.mirror_name("mouthSmile_L") == "mouthSmileRight" and arkit.mirror_name("jawOpen") == "jawOpen"
    assert arkit.parse_assignments(["jawOpen=0.8", "EyeBlinkLeft=1", "mouthSmile_R=0"]) == {
        "jawOpen": 0.8,
        "eyeBlinkLeft": 1.0,
        "mouthSmileRight": 0.0,
    }
    for bad in (["jawOpn=0.5"], ["jawOpen=1.5"], ["jawOpen=-0.1"], ["jawOpen"], ["jawOpen=x"], ["jawOpen=nan"]):
        with pytest.raises(InputError):
            arkit.parse_assignments(bad)
    with pytest.raises(InputError, match="twice"):
        arkit.parse_weights({"jawOpen": 0.1, "JawOpen": 0.2})


# ----------------------------------------------------------------------------------------------- topology
def test_proxy_topology_is_a_face_with_four_holes():
    t = T.mesh_triangles()
    uses = Counter(tuple(sorted(e)) for tri in t for e in itertools.combinations(tri, 2))
    assert max(uses.values()) == 2  # a manifold surface
    boundary = [e for e, n in uses.items() if n == 1]
    assert 468 - len(uses) + len(t) == -2  # Euler characteristic of a sphere with four holes
    loops = T.contours()
    assert len(loops["mouth_loop"]) == 20 and len(loops["eye_left_loop"]) == len(loops["eye_right_loop"]) == 16
    on_boundary = {v for e in boundary for v in e}
    assert set(loops["mouth_loop"]) <= on_boundary and set(loops["eye_left_loop"]) <= on_boundary


def test_mirror_map_is_an_involution_that_keeps_the_mesh(landmarks):
    m = T.mirror_proxy_index()
    assert np.array_equal(m[m], np.arange(T.N_PROXY))
    edges = {tuple(sorted(e)) for e in T.proxy_edges().tolist()}
    kept = sum(tuple(sorted((m[a], m[b]))) in edges for a, b in edges)
    assert kept / len(edges) > 0.99
    assert m[T.MOUTH_CORNER["left"]] == T.MOUTH_CORNER["right"] and m[T.EYE_OUTER["left"]] == T.EYE_OUTER["right"]
    v = T.proxy_positions(landmarks)
    assert v[T.EYE_OUTER["left"], 0] > 0 > v[T.EYE_OUTER["right"], 0]  # the subject's left is +X


def test_oriented_triangles_face_outward(landmarks):
    v = T.proxy_positions(landmarks)
    t = T.oriented_triangles(v)
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    front = (v[t].mean(1)[:, 2] > 0.06) & (np.abs(v[t].mean(1)[:, 0]) < 0.03)
    assert (n[front, 2] > 0).mean() > 0.95


# ----------------------------------------------------------------------------------------------- shapes
def test_left_and_right_shapes_mirror_each_other(landmarks):
    from engine.rig.blendshapes import FLIP_X, author_shapes, mirror_geometry

    v = T.proxy_positions(landmarks)
    sym = 0.5 * (v + mirror_geometry(v))  # an exactly symmetric face
    d = author_shapes(sym)
    m = T.mirror_proxy_index()
    for name in arkit.ARKIT_NAMES:
        i, j = arkit.INDEX[name], arkit.INDEX[arkit.mirror_name(name)]
        np.testing.assert_allclose(d[j], d[i][m] * FLIP_X, atol=1e-9, err_msg=name)
        if name.endswith("Left") and not name.startswith(("jaw", "mouthLeft")):
            moved = np.linalg.norm(d[i], axis=1)
            assert np.average(sym[:, 0], weights=moved) > 0.005, f"{name} should move the subject's left (+X)"


def test_shapes_do_what_their_names_say(rig):
    d, v, fh = rig.deltas, rig.neutral, rig.measures.face_height

    def disp(name, idx):
        return d[arkit.INDEX[name], idx]

    assert disp("jawOpen", T.LOWER_LIP_INNER)[1] < -0.15 * fh  # the lower lip drops ...
    assert abs(disp("jawOpen", T.UPPER_LIP_INNER)).max() < 1e-3  # ... the upper lip stays
    assert disp("jawOpen", T.CHIN)[1] < -0.15 * fh
    c = T.contours()
    for side in ("left", "right"):
        s = side.capitalize()
        up, lo = c[f"eye_{side}_upper"][1:-1], c[f"eye_{side}_lower"]
        shut_up, shut_lo = v[up] + disp(f"eyeBlink{s}", up), v[lo] + disp(f"eyeBlink{s}", lo)
        o = np.argsort(shut_lo[:, 0])
        assert np.abs(shut_up[:, 1] - np.interp(shut_up[:, 0], shut_lo[o, 0], shut_lo[o, 1])).max() < 2e-4  # shut
        up = up[3]
        assert disp(f"mouthSmile{s}", T.MOUTH_CORNER[side])[1] > 0.1 * rig.measures.mouth_width
        assert disp(f"mouthFrown{s}", T.MOUTH_CORNER[side])[1] < 0
        assert disp(f"browOuterUp{s}", c[f"brow_{side}_upper"][-1])[1] > 0
        assert disp(f"browDown{s}", c[f"brow_{side}_upper"][0])[1] < 0
        assert disp(f"eyeWide{s}", up)[1] > 0
    assert disp("mouthSmileLeft", T.MOUTH_CORNER["left"])[0] > 0  # the left corner moves out to +X
    assert disp("mouthPucker", T.UPPER_LIP_TOP)[2] > 0 and disp("cheekPuff", T.CHEEK_CENTRE["left"])[0] > 0
    assert disp("eyeLookOutLeft", T.IRIS_CENTRE["left"])[0] > 0 > disp("eyeLookOutRight", T.IRIS_CENTRE["right"])[0]
    # smooth falloff: except the jaw, which moves the jaw line, shapes fade out before the face's outline
    oval = c["oval"]
    for k, name in enumerate(arkit.ARKIT_NAMES):
        if name.startswith("jaw") or name in ("tongueOut", "mouthShrugLower", "cheekPuff"):
            continue
        mag = np.linalg.norm(d[k], axis=1)
        assert mag[oval].max() <= 0.1 * mag.max() + 1e-9, name


def test_photo_expression_is_estimated_and_reproduced(rig):
    from engine.rig.neutral import FEATURES, features

    # The demo portrait smiles with parted lips: the estimate says so, and the neutral face is closed.
    w = dict(zip(arkit.ARKIT_NAMES, rig.photo_weights, strict=True))
    assert w["mouthSmileLeft"] > 0.2 and w["mouthSmileRight"] > 0.2 and w["jawOpen"] > 0.1
    assert w["eyeBlinkLeft"] < 0.1 and w["browDownLeft"] < 0.1
    np.testing.assert_allclose(rig.proxy_at(rig.photo_weights), rig.photo, atol=1e-9)
    f = dict(zip(FEATURES, features(rig.neutral), strict=True))
    assert abs(f["lip_gap"]) < 0.006 and abs(f["corner_lift_left"]) < 0.02


# ----------------------------------------------------------------------------------------------- warp
def test_closest_point_fast_exact_and_brute_agree(rig):
    from engine.rig.deform import NearestTriangle

    v = rig.neutral
    finder = NearestTriangle(v, rig.triangles)
    rng = np.random.default_rng(0)
    p = rng.uniform(v.min(0) - 0.01, v.max(0) + 0.01, (3000, 3))

    def closest(mode):
        tri, bary = finder.query(p, mode)
        return np.einsum("nk,nkd->nd", bary, v[rig.triangles[tri]])

    brute, exact, fast = closest("brute"), closest("exact"), closest("fast")
    d_brute = np.linalg.norm(p - brute, axis=1)
    np.testing.assert_allclose(np.linalg.norm(p - exact, axis=1), d_brute, atol=1e-9)
    # the fast path stands a nearby sample's triangle in: at most about a sample spacing farther
    assert np.all(np.linalg.norm(p - fast, axis=1) <= d_brute + 1.2e-3)
    assert np.median(np.linalg.norm(p - fast, axis=1) - d_brute) < 1e-5


def test_warp_maps_the_expressed_proxy_onto_the_photo_proxy(rig):
    from engine.rig.deform import warp_points
    from engine.rig.expression import warp_spec

    w = arkit.to_vector({"jawOpen": 1.0, "mouthSmileLeft": 0.5, "browInnerUp": 1.0})
    spec = warp_spec(rig, w, 1.0)
    free = np.setdiff1d(np.arange(T.N_MESH), T.contours()["mouth_loop"] + sum(T.eye_loops().values(), []))
    q, cav = warp_points(spec.observed[free], spec, mode="brute")
    err = np.linalg.norm(q - spec.source[free], axis=1)
    # exact but for the guard at the mouth corners, which keeps lip colour from reaching into the photo's mouth
    assert np.quantile(err, 0.99) < 2e-4 and err.max() < 1e-3
    assert cav.max() < 0.01  # the skin is skin, not mouth cavity
    # a point 5 mm in front of the expressed face maps 5 mm in front of the photo's face
    n = np.cross(*(spec.observed[rig.triangles[:, k]] - spec.observed[rig.triangles[:, 0]] for k in (1, 2)))
    t = np.nonzero(np.isin(rig.triangles, [T.NOSE_TIP]).any(1))[0][0]
    c = spec.observed[rig.triangles[t]].mean(0) + 0.005 * n[t] / np.linalg.norm(n[t])
    qc, _ = warp_points(c[None], spec, mode="brute")
    src_c = spec.source[rig.triangles[t]].mean(0)
    assert abs(np.linalg.norm(qc[0] - src_c) - 0.005) < 2e-4


def test_baked_warp_matches_its_exact_twin(rig):
    from engine.rig.deform import warp_points
    from engine.rig.expression import ExpressionDeform

    w = arkit.to_vector({"jawOpen": 0.8, "eyeBlinkLeft": 1.0, "mouthSmileRight": 0.7})
    d = ExpressionDeform(rig, w, 1.0)
    rng = np.random.default_rng(1)
    surf = rig.proxy_at(w)[: T.N_MESH]
    p = surf[rng.integers(0, len(surf), 4000)] + rng.normal(0, 0.004, (4000, 3))
    exact, _ = warp_points(p, d.spec, mode="exact")
    fast = d.sample(torch.as_tensor(p, dtype=torch.float32))[0].double().numpy()
    err = np.linalg.norm(fast - exact, axis=1)
    # seams (the lips, a closed eye) jump by centimetres; everywhere else the grid follows the exact map
    assert np.median(err) < 3e-4 and np.quantile(err, 0.9) < 1.5e-3


def test_no_warp_at_the_photo_expression_and_no_cavity_when_lips_press(rig):
    from engine.rig.expression import ExpressionDeform

    d = ExpressionDeform(rig, rig.photo_weights, 1.0)
    assert d.identity and d.baked is None
    x = torch.rand(100, 3)
    assert torch.equal(d(x), x)
    closed = ExpressionDeform(rig, arkit.to_vector({"mouthClose": 1.0, "mouthShrugLower": 1.0}), 1.0)
    assert closed.baked.cavity is None
    opened = ExpressionDeform(rig, arkit.to_vector({"jawOpen": 1.0}), 1.0)
    assert opened.baked.cavity is not None


def test_renderer_sees_a_plain_deform_in_its_proposal_pass():
    """A deform that moves the whole surface: the proposal pass must look for the surface where it now is."""
    from test_render import sphere_field

    from engine.conventions import Intrinsics, orbit_camera_gl
    from engine.render.renderer import RenderOptions, render_image

    field = sphere_field()
    cam, intr = orbit_camera_gl(0.0, 0.0, 0.6), Intrinsics.from_fov(40.0, 64, 64)
    opts = RenderOptions(n_coarse=32, n_fine=8, learned_only=True)
    plain = render_image(field, cam, intr, opts)
    shift = torch.tensor([0.05, 0.0, 0.0])
    moved = render_image(field, cam, intr, opts, deform=lambda x: x - shift)  # observed x shows the field at x - s
    ys, xs = np.nonzero(plain["alpha"] > 0.5)
    ym, xm = np.nonzero(moved["alpha"] > 0.5)
    assert abs(len(xm) - len(xs)) < 0.03 * len(xs)
    expect_px = intr.fx * 0.05 / 0.6  # the silhouette's centre moves with the sphere's centre, 0.6 m away
    assert abs((xm.mean() - xs.mean()) - expect_px) < 1.0


# ----------------------------------------------------------------------------------------------- fitting
def _landmarks_of(rig, weights) -> np.ndarray:
    """The 478 landmarks a detector would report for the rig's proxy at ``weights``."""
    return T.landmarks_from_proxy(rig.proxy_at(weights))


def test_fit_recovers_weights_from_landmarks_under_any_pose(rig):
    from scipy.spatial.transform import Rotation

    from engine.rig.fit import fit_weights

    truth = arkit.to_vector({"jawOpen": 0.6, "eyeBlinkLeft": 0.9, "mouthSmileRight": 0.5, "browInnerUp": 0.4})
    lm = _landmarks_of(rig, truth)
    moved = 1.3 * lm @ Rotation.from_euler("xyz", [10, -25, 5], degrees=True).as_matrix().T + [0.1, -0.2, 0.5]
    w = fit_weights(rig, moved)
    assert np.abs(w - truth).max() < 0.08 and np.abs(w - truth).mean() < 0.01
    assert np.all((w >= 0) & (w <= 1))


def test_fit_in_the_image_with_a_known_camera(rig):
    from engine.conventions import Intrinsics, orbit_camera_gl, project_points
    from engine.rig.fit import fit_weights_image

    truth = arkit.to_vector({"jawOpen": 0.5, "eyeBlinkRight": 1.0, "mouthSmileLeft": 0.7})
    cam, intr = orbit_camera_gl(10.0, 5.0, 1.2), Intrinsics.from_fov(12.0, 256, 256)
    px, _ = project_points(_landmarks_of(rig, truth), cam, intr)
    w = fit_weights_image(rig, px, cam, intr)
    assert np.abs(w - truth).mean() < 0.02


def test_temporal_smoothing_is_zero_phase():
    from engine.rig.fit import smooth_weights

    t = np.arange(60)
    step = np.zeros((60, 52))
    step[30:, 0] = 1.0
    rng = np.random.default_rng(0)
    noisy = np.clip(step + rng.normal(0, 0.1, step.shape), 0, 1)
    s = smooth_weights(noisy, fps=30.0, sigma_s=0.05)
    assert np.std(s[:25, 5]) < 0.6 * np.std(noisy[:25, 5])
    assert abs(np.interp(0.5, s[20:40, 0], t[20:40]) - 29.5) < 1.0  # the step stays where it was


# ----------------------------------------------------------------------------------------------- Live Link Face
def test_livelink_export_then_import_gives_the_same_keyframes(tmp_path):
    from engine.rig.livelink import Take, read_csv, write_csv

    rng = np.random.default_rng(2)
    w = np.round(rng.uniform(0, 1, (40, 52)), 4)
    times = np.arange(40) / 60.0 + 0.25 / 60.0
    take = Take(times - times[0], w, {"HeadYaw": rng.normal(0, 0.1, 40)}, 60.0)
    write_csv(tmp_path / "k.csv", take, start_s=14 * 3600 + 3 * 60 + 52.5)
    back = read_csv(tmp_path / "k.csv")
    np.testing.assert_allclose(back.weights, w, atol=1e-6)
    np.testing.assert_allclose(back.times_s, take.times_s, atol=1e-6)
    np.testing.assert_allclose(back.extra["HeadYaw"], take.extra["HeadYaw"], atol=1e-5)
    assert back.fps == 60.0 and (tmp_path / "k.csv").read_text().splitlines()[0] == REAL_LLF_HEADER


def test_livelink_real_header_maps_columns_by_name_and_times_from_timecodes():
    from engine.rig.livelink import parse_csv

    names = REAL_LLF_HEADER.split(",")
    rows = []
    for i, tc in enumerate(["14:03:52:58.207", "14:03:52:59.207", "14:03:53:00.207", "14:03:53:01.700"]):
        vals = {n: 0.0 for n in names[2:]}
        vals["JawRight"], vals["JawLeft"], vals["MouthLeft"] = 0.1 * i, 0.2, 0.3
        vals["HeadYaw"] = -0.05
        rows.append(",".join([tc, "61"] + [f"{vals[n]}" for n in names[2:]]))
    take = parse_csv("\n".join([REAL_LLF_HEADER] + rows) + "\n")
    assert take.weights.shape == (4, 52)
    assert np.allclose(take.weights[:, arkit.INDEX["jawRight"]], [0.0, 0.1, 0.2, 0.3])
    assert np.allclose(take.weights[:, arkit.INDEX["jawLeft"]], 0.2)
    assert np.allclose(take.weights[:, arkit.INDEX["mouthLeft"]], 0.3)
    assert np.allclose(take.weights[:, arkit.INDEX["mouthRight"]], 0.0)
    assert take.fps == 60.0  # frame 59 then 00: a 60 fps take
    np.testing.assert_allclose(take.times_s, np.array([0.0, 1.0, 2.0, 3.493]) / 60.0, atol=1e-9)
    assert np.allclose(take.extra["HeadYaw"], -0.05)


def test_livelink_spellings_rate_inference_fallbacks_and_errors():
    from engine.rig.livelink import parse_csv, timecodes_to_seconds

    t, rate = timecodes_to_seconds(["10:00:00:28", "10:00:01:05", "10:00:02:29"])
    assert rate == 30.0 and np.allclose(t, [0.0, 7 / 30.0, 2.0 + 1 / 30.0 - 28 / 30.0 + 28 / 30.0])
    t, _ = timecodes_to_seconds(["23:59:59:59", "00:00:00:00"], fps=60)
    assert np.allclose(t, [0.0, 1 / 60.0])  # a take across midnight
    text = "eyeBlink_L,JAWOPEN,EyeBlinkRight,Unknown\n0.5,0.25,1,9\n0.1,1.5,0,9\n"
    take = parse_csv(text, fps=24)
    assert np.allclose(take.times_s, [0.0, 1 / 24])  # no timecode: row index / fps
    assert take.weights[0, arkit.INDEX["eyeBlinkLeft"]] == 0.5 and take.weights[1, arkit.INDEX["jawOpen"]] == 1.0
    with pytest.raises(InputError):
        parse_csv("Timecode,Foo\n00:00:00:00,1\n")
    with pytest.raises(InputError):
        parse_csv("JawOpen\nhello\n")
    with pytest.raises(InputError, match="twice"):
        parse_csv("JawOpen,jawOpen\n0,0\n")


# ----------------------------------------------------------------------------------------------- glTF
def test_morph_targets_round_trip_through_the_glb():
    import trimesh

    from engine.rig.gltf import accessor_array, add_morph_targets, read_glb

    mesh = trimesh.creation.icosphere(subdivisions=2)
    buf = io.BytesIO(trimesh.Scene(mesh).export(file_type="glb"))
    v = np.asarray(mesh.vertices, np.float32)
    deltas = np.zeros((3, len(v), 3), np.float32)
    deltas[0, :5, 1] = 0.1
    deltas[2, 7] = (0.0, 0.0, -0.2)
    out = add_morph_targets(buf.getvalue(), ["jawOpen", "eyeBlinkLeft", "tongueOut"], v * 2, deltas, [0.3, 0, 1])
    gltf, binary = read_glb(out)
    m = gltf["meshes"][0]
    assert m["extras"]["targetNames"] == ["jawOpen", "eyeBlinkLeft", "tongueOut"] and m["weights"] == [0.3, 0, 1]
    prim = m["primitives"][0]
    np.testing.assert_allclose(accessor_array(gltf, binary, prim["attributes"]["POSITION"]), v * 2)
    for k in range(3):
        np.testing.assert_allclose(accessor_array(gltf, binary, prim["targets"][k]["POSITION"]), deltas[k])
    assert len(trimesh.load(io.BytesIO(out), file_type="glb").geometry) == 1
