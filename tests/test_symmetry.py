"""Unseen landmarks completed from their mirror partners (engine.face.symmetry), on real mediapipe landmarks of
the demo portrait."""

from __future__ import annotations

import numpy as np
import pytest

from engine.face.mesh import MIRROR_LANDMARK, N_MESH
from engine.face.symmetry import complete_unseen, mirror_weights, photo_cos


@pytest.fixture(scope="module")
def symmetric_face(astronaut_rgb) -> np.ndarray:
    """The astronaut's 478 world landmarks made exactly symmetric about x = 0."""
    from engine.rig.fit import image_landmarks, lift

    p = lift(image_landmarks(astronaut_rgb), astronaut_rgb.shape[1], astronaut_rgb.shape[0])
    mirrored = p[MIRROR_LANDMARK[:N_MESH]] * np.array([-1.0, 1.0, 1.0])
    out = p.copy()
    out[:N_MESH] = 0.5 * (p[:N_MESH] + mirrored)
    return out


def camera_at(yaw_deg: float, distance: float = 0.8) -> np.ndarray:
    a = np.radians(yaw_deg)
    return np.array([distance * np.sin(a), 0.0, distance * np.cos(a)])


def test_normals_face_the_camera_in_front(symmetric_face):
    cos = photo_cos(symmetric_face, camera_at(0.0))
    assert np.median(cos) > 0.6  # outward normals: a frontal camera sees the face head-on
    assert cos[1] > 0.8  # the nose tip


def test_frontal_photo_keeps_every_landmark(symmetric_face):
    """Seen from the front, both sides are seen alike: nothing is replaced, so an asymmetric smile survives."""
    smirk = symmetric_face.copy()
    smirk[291] += [0.004, 0.006, 0.0]  # the left mouth corner pulled up and out
    out, w = complete_unseen(smirk, camera_at(0.0))
    assert w.max() == 0.0
    assert np.array_equal(out, smirk)


def test_turned_photo_restores_the_far_side(symmetric_face):
    """Camera at the subject's right (-x), 50 degrees round: the far (left, +x) jaw and cheek are guesses. Push
    them 8 mm outward, as mediapipe's guesses often are: completion brings them back from the seen right side,
    and leaves the seen side where it was."""
    cam = camera_at(-50.0)
    guessed = symmetric_face.copy()
    far = symmetric_face[:N_MESH, 0] > 0.03
    guessed[:N_MESH][far] += [0.008, 0.0, 0.0]
    w = mirror_weights(guessed, cam)
    assert (w[far] > 0.5).sum() > 20  # the far side is largely replaced...
    near = symmetric_face[:N_MESH, 0] < -0.01
    assert (w[near] == 0.0).mean() > 0.9  # ...the seen side hardly ever (only its own hidden folds)
    seen = photo_cos(guessed, cam) > 0.5
    assert w[seen].max() == 0.0
    out, _ = complete_unseen(guessed, cam)
    hidden = far & (w > 0.99)
    assert np.abs(out[:N_MESH][hidden] - symmetric_face[:N_MESH][hidden]).max() < 1e-6
    kept = near & (w == 0.0)
    assert np.array_equal(out[:N_MESH][kept], guessed[:N_MESH][kept])
    err_before = np.linalg.norm(guessed[:N_MESH][far] - symmetric_face[:N_MESH][far], axis=1).mean()
    err_after = np.linalg.norm(out[:N_MESH][far] - symmetric_face[:N_MESH][far], axis=1).mean()
    assert err_after < 0.5 * err_before
    assert np.array_equal(out[N_MESH:], guessed[N_MESH:])  # iris points kept
