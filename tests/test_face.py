"""Face analysis: landmark lifting and the canonical pose (the face-alignment backend: test_face_alignment.py)."""

from __future__ import annotations

import numpy as np

from engine.face.landmarks import choose_face


def test_pose_of_the_demo_is_frontal_and_metric(astronaut_rgb):
    from engine.face.camera import estimate_pose, photo_intrinsics
    from engine.proxy.template import LEFT_EYE_OUTER, RIGHT_EYE_OUTER

    face, _, _ = choose_face(astronaut_rgb)
    intr = photo_intrinsics(512, 512, 50.0)
    pose = estimate_pose(face.points_px, intr)
    lm = pose.landmarks_world()
    # Eyes ~9 cm apart, the subject's left eye at +X, the face toward +Z.
    eye_dist = np.linalg.norm(lm[LEFT_EYE_OUTER] - lm[RIGHT_EYE_OUTER])
    assert 0.07 < eye_dist < 0.12
    assert lm[LEFT_EYE_OUTER, 0] > lm[RIGHT_EYE_OUTER, 0]
    assert lm[1, 2] > 0.05  # nose tip in front of the head centre
    assert 0.7 < pose.scale < 1.4
    # The camera sits in front of the face.
    assert pose.cam2world_gl()[2, 3] > 0.3
