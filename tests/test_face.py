"""Face analysis: the optional face-alignment weights loader (tested on small weights made here), landmark
lifting and the canonical pose."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from engine.errors import BackendUnavailable
from engine.face.landmarks import choose_face, load_face_alignment_weights


def test_face_alignment_weights_load_from_local_folder(tmp_path):
    from safetensors.torch import save_file

    save_file({"conv1.weight": torch.randn(4, 3, 3, 3)}, str(tmp_path / "3DFAN4-tiny.safetensors"))
    got = load_face_alignment_weights(tmp_path)
    assert got["state_dict"]["conv1.weight"].shape == (4, 3, 3, 3)


def test_face_alignment_pth_loads_weights_only(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "2DFAN4-tiny.pth")
    assert torch.equal(load_face_alignment_weights(tmp_path)["state_dict"]["w"], torch.ones(2))
    (tmp_path / "2DFAN4-tiny.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(BackendUnavailable, match="could not be read"):
        load_face_alignment_weights(tmp_path)


def test_missing_weights_say_so_in_one_line_and_fall_back(tmp_path, monkeypatch, caplog, astronaut_rgb):
    monkeypatch.setenv("LIKENESS_FACE_ALIGNMENT_DIR", str(tmp_path / "empty"))
    with pytest.raises(BackendUnavailable) as exc:
        load_face_alignment_weights()
    assert "\n" not in exc.value.message and "mediapipe" in exc.value.message
    with caplog.at_level(logging.WARNING, logger="likeness"):
        face, n, backend = choose_face(astronaut_rgb, backend="face-alignment")
    assert backend == "mediapipe" and n == 1
    assert any("face-alignment weights not found" in r.message for r in caplog.records)


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
