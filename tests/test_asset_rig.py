"""The asset's morph targets move only what they name (engine/asset/rig.py): the pure fits on synthetic points,
then the template's own 52 keys cleaned and measured (docs/ASSET.md, "The rig")."""

from __future__ import annotations

import numpy as np
from prior_support import prepared_prior

from engine.asset.rig import eyeball_rotation_delta, rigid_fit, rotation_angle_deg, sphere_fit


def _rot(axis, deg) -> np.ndarray:
    a = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.radians(deg)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def _sphere(n=400, r=0.012, c=(0.03, 0.0, 0.08), seed=0) -> np.ndarray:
    p = np.random.default_rng(seed).normal(size=(n, 3))
    return r * p / np.linalg.norm(p, axis=1, keepdims=True) + c


def test_rigid_and_sphere_fits():
    p = _sphere()
    rot = _rot([1, 2, 0.5], 12.0)
    rot_fit, t, rms = rigid_fit(p, p @ rot.T + [0.001, -0.002, 0.0])
    assert np.allclose(rot_fit, rot, atol=1e-9) and rms < 1e-12 and abs(rotation_angle_deg(rot_fit) - 12.0) < 1e-6
    c, r = sphere_fit(p)
    assert np.allclose(c, [0.03, 0.0, 0.08], atol=1e-9) and abs(r - 0.012) < 1e-9


def test_eyeball_delta_becomes_a_rotation_about_the_centre():
    p = _sphere()
    c = p.mean(0)
    rot = _rot([1, 0, 0], 10.0)
    pivot = c - [0.0, 0.0, 0.01]  # the template's kind of delta: a turn about a point behind the centre,
    delta = (p - pivot) @ rot.T + pivot - p
    delta += 0.0002 * np.random.default_rng(1).normal(size=p.shape)  # ... not quite rigid
    new, note = eyeball_rotation_delta(p, delta)
    q = p + new
    cq, rq = sphere_fit(q)
    assert np.allclose(cq, [0.03, 0.0, 0.08], atol=1e-9) and abs(rq - 0.012) < 1e-9  # the ball stays put
    assert rigid_fit(p, q)[2] < 1e-12 and abs(note["angle_deg"] - 10.0) < 0.3
    assert note["template_centre_shift_mm"] > 1.5  # 10 deg about a pivot 1 cm back moves the centre 1.7 mm


def test_template_keys_cleaned_move_only_what_they_name():
    from engine.asset.rig import clean_deltas, neck_fade, rig_report

    prior = prepared_prior()
    clean, note = clean_deltas(prior)
    before = rig_report(prior, prior.vertices, prior.arkit_deltas)
    after = rig_report(prior, prior.vertices, clean)
    names = list(prior.arkit_names)
    jb, ja = before["keys"]["jawOpen"], after["keys"]["jawOpen"]
    assert jb["skin_max_2cm_below_chin_mm"] > 3.0 and jb["skin_max_neck_cut_mm"] > 1.0  # the template moves the neck
    assert ja["skin_max_2cm_below_chin_mm"] <= 2.0 and ja["skin_max_neck_cut_mm"] <= 0.1
    assert ja["max_mm"] == jb["max_mm"] and ja["chin_mm"] == jb["chin_mm"]  # the jaw itself moves as before
    assert ja["teeth_lower"]["moves_with_jaw"] and ja["tongue"]["moves_with_jaw"]
    for k, r in after["keys"].items():
        assert r["skin_max_neck_cut_mm"] <= 0.1, k
        if k.startswith("brow"):
            assert r["scalp_max_mm"] <= 1.0, k
        if k.startswith("eyeLook"):
            assert r["eyeball"]["rigid_rms_mm"] < 1e-3 and r["eyeball"]["centre_shift_mm"] < 1e-3, k
            assert abs(r["eyeball"]["angle_deg"] - before["keys"][k]["eyeball"]["angle_deg"]) < 0.05, k
            assert max(abs(g) for g in r["corners"]["gap_change_mm"]) < 0.5, k  # the corner stays on the ball
    fade = neck_fade(prior)
    face = fade == 1.0  # above the fade the skin keys are the template's, exactly
    skin = prior.part == 0
    assert np.array_equal(clean[:, face & skin], prior.arkit_deltas[:, face & skin].astype(np.float64))
    assert set(note["eyeball_rotation"]) == {n for n in names if n.startswith("eyeLook")}
