"""The face-alignment (FAN) backend, run on small TorchScript networks made here with FAN's interface
((1, 3, 256, 256) RGB in [0, 1] -> (1, 68, 64, 64) heatmaps) and saved under face-alignment's file names."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.config import preset
from engine.errors import BackendUnavailable
from engine.face.analysis import analyse
from engine.face.camera import estimate_pose
from engine.face.fan import (
    FAN_HEATMAP_PX,
    IBUG68_OF_TEMPLATE,
    MEDIAPIPE_OF_IBUG68,
    FanCrop,
    crop_from_box,
    decode_heatmaps,
    find_fan_weights,
    ibug_box,
    load_fan,
    run_fan,
)
from engine.face.landmarks import choose_face
from engine.io.images import demo_photo

FAN_FILE = "2DFAN4-cd938726ad.zip"


class GaussianPeaks(torch.nn.Module):
    """A FAN stand-in that draws one Gaussian per iBUG point at fixed continuous heatmap coordinates
    ``peaks_hm`` (68, 2) (pixel centres at +0.5), whatever the image."""

    def __init__(self, peaks_hm: np.ndarray, sigma: float = 1.5) -> None:
        super().__init__()
        self.register_buffer("peaks", torch.as_tensor(peaks_hm, dtype=torch.float32))
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = torch.arange(64, dtype=torch.float32) + 0.5
        dx = c[None, None, :] - self.peaks[:, 0, None, None]
        dy = c[None, :, None] - self.peaks[:, 1, None, None]
        hm = torch.exp(-(dx**2 + dy**2) / (2.0 * self.sigma**2))
        return hm[None] + 0.0 * x.mean()


class BrightSpot(torch.nn.Module):
    """A FAN stand-in that looks at the image: every heatmap is the 4 x 4-pooled brightness of the input crop."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hm = torch.nn.functional.avg_pool2d(x.mean(dim=1, keepdim=True), 4)
        return hm.expand(1, 68, 64, 64).contiguous()


class WrongShape(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1, :64, :64]


def save_fan(module: torch.nn.Module, folder, name: str = FAN_FILE):
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(module).save(str(folder / name))
    return folder


@pytest.fixture(scope="module")
def mp_face(astronaut_rgb):
    """The demo portrait's mediapipe face."""
    face, _, _ = choose_face(astronaut_rgb, backend="mediapipe")
    return face


def teacher_peaks(face, shift_px=(0.0, 0.0)) -> np.ndarray:
    """Heatmap coordinates (68, 2) of the mediapipe points standing for iBUG-68, moved by ``shift_px``."""
    crop = crop_from_box(ibug_box(face.points_px))
    return crop.photo_to_heatmap(face.points_px[MEDIAPIPE_OF_IBUG68, :2] + np.asarray(shift_px))


def rotation_deg(r_a: np.ndarray, r_b: np.ndarray) -> float:
    c = (np.trace(r_a @ r_b.T) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def test_the_68_point_table_follows_ibug_order(mp_face):
    p = mp_face.points_px[MEDIAPIPE_OF_IBUG68, :2]
    assert len(set(MEDIAPIPE_OF_IBUG68.tolist())) == 68
    assert np.all(np.diff(p[0:9, 1]) > 0) and np.all(np.diff(p[8:17, 1]) < 0)  # jaw: down to the chin, up again
    assert p[0, 0] < p[8, 0] < p[16, 0]
    assert np.all(np.diff(p[27:31, 1]) > 0)  # nose bridge runs down to the tip
    assert p[19, 1] < p[37, 1] and p[24, 1] < p[44, 1]  # brows above the eyes
    assert p[36, 0] < p[39, 0] < p[42, 0] < p[45, 0] and p[48, 0] < p[51, 0] < p[54, 0]
    assert len(IBUG68_OF_TEMPLATE) == 15 and IBUG68_OF_TEMPLATE[1] == 30 and IBUG68_OF_TEMPLATE[152] == 8


def test_decoding_moves_a_quarter_pixel_toward_the_higher_neighbour():
    hm = np.zeros((68, 64, 64), np.float32)
    hm[:, 10, 20] = 1.0
    hm[:, 10, 21] = 0.5  # right neighbour higher -> +0.25 in x; y neighbours equal -> no move
    hm[0, 0, 0] = 2.0  # on the border: no refinement
    pts, scores = decode_heatmaps(hm)
    assert np.allclose(pts[1], [20.75, 10.5]) and np.allclose(pts[0], [0.5, 0.5])
    assert scores[0] == 2.0 and scores[1] == 1.0


def test_crop_maps_photo_to_heatmap_and_back():
    crop = FanCrop((210.0, 180.0), 1.3)
    x = np.array([[100.0, 90.0], [300.5, 250.25]])
    assert np.allclose(crop.heatmap_to_photo(crop.photo_to_heatmap(x)), x)
    assert np.allclose(crop.heatmap_to_photo(np.array([[0.0, 0.0], [64.0, 64.0]])), [[80.0, 50.0], [340.0, 310.0]])


def test_known_peaks_come_back_in_photo_pixels(tmp_path):
    """(a) Peaks on decodable positions (pixel centre +-1/4) return exactly, through the crop, in photo pixels."""
    rng = np.random.default_rng(0)
    crop = crop_from_box((140.0, 120.0, 330.0, 350.0))
    idx = rng.integers(1, FAN_HEATMAP_PX - 1, size=(68, 2))
    peaks = idx + 0.5 + 0.25 * rng.integers(-1, 2, size=(68, 2))
    fan = load_fan(save_fan(GaussianPeaks(peaks), tmp_path))
    got, scores = run_fan(fan, np.zeros((480, 480, 3), np.uint8), crop)
    assert np.abs(got - crop.heatmap_to_photo(peaks)).max() < 1e-3
    assert scores.min() > 0.8


def test_any_peak_comes_back_within_a_quarter_heatmap_pixel(tmp_path):
    rng = np.random.default_rng(1)
    crop = crop_from_box((140.0, 120.0, 330.0, 350.0))
    truth_px = crop.heatmap_to_photo(rng.uniform(2.0, 62.0, size=(68, 2)))
    fan = load_fan(save_fan(GaussianPeaks(crop.photo_to_heatmap(truth_px)), tmp_path))
    got, _ = run_fan(fan, np.zeros((480, 480, 3), np.uint8), crop)
    assert np.abs(got - truth_px).max() <= 0.25 * crop.side_px / FAN_HEATMAP_PX + 1e-6


def test_the_network_sees_the_face_crop(tmp_path):
    """A network that reads its input finds a bright spot of the photo where the photo has it."""
    rgb = np.zeros((400, 520, 3), np.uint8)
    spot = np.array([301.0, 187.0])  # photo pixel (x, y); its centre is at +0.5
    rgb[187:191, 301:305] = 255
    crop = crop_from_box((200.0, 110.0, 390.0, 330.0))
    got, _ = run_fan(load_fan(save_fan(BrightSpot(), tmp_path)), rgb, crop)
    # pooling = one heatmap pixel, decoding = a quarter of one; face-alignment's crop corner adds side / 256
    tol = 1.25 * crop.side_px / FAN_HEATMAP_PX + crop.side_px / 256
    assert np.abs(got - (spot + 2.0)).max() < tol


def test_auto_uses_local_weights_and_the_pose_follows(tmp_path, monkeypatch, astronaut_rgb, mp_face):
    """(b) A teacher whose heatmaps peak at the mediapipe-derived 68 points gives the mediapipe pose; shifted
    points move the head with them. The backend name reaches the analysis (and so the manifest)."""
    cfg = preset("draft", device="cpu")
    photo = demo_photo()
    ref = analyse(photo, replace(cfg, landmark_backend="mediapipe"))
    monkeypatch.setenv("LIKENESS_FACE_ALIGNMENT_DIR", str(save_fan(GaussianPeaks(teacher_peaks(mp_face)), tmp_path)))
    an = analyse(photo, cfg)
    assert cfg.landmark_backend == "auto" and an.backend == "face-alignment" and ref.backend == "mediapipe"
    assert an.face.pose_source == f"face-alignment ({FAN_FILE})"
    quarter_px = 0.25 * crop_from_box(ibug_box(mp_face.points_px)).side_px / FAN_HEATMAP_PX
    assert np.abs(an.face.ibug68_px - mp_face.points_px[MEDIAPIPE_OF_IBUG68, :2]).max() <= quarter_px + 1e-6
    for mp_index, ibug_index in IBUG68_OF_TEMPLATE.items():
        assert np.array_equal(an.face.pose_points_px[mp_index, :2], an.face.ibug68_px[ibug_index])
    assert np.array_equal(an.face.points_px, mp_face.points_px)  # the dense landmarks stay mediapipe's
    assert rotation_deg(an.pose.to_canonical.rotation, ref.pose.to_canonical.rotation) < 1.0
    assert abs(an.pose.scale / ref.pose.scale - 1.0) < 0.02

    shifted = save_fan(GaussianPeaks(teacher_peaks(mp_face, (6, 0))), tmp_path / "shifted")
    monkeypatch.setenv("LIKENESS_FACE_ALIGNMENT_DIR", str(shifted))
    moved, _, backend = choose_face(astronaut_rgb, backend="auto")
    assert backend == "face-alignment"

    def head_u(points_px):
        centre_cv = estimate_pose(points_px, ref.photo_intr).to_canonical.inverse().apply(np.zeros(3))
        return ref.photo_intr.fx * centre_cv[0] / centre_cv[2] + ref.photo_intr.cx

    du = head_u(moved.pose_points_px) - head_u(mp_face.points_px)
    assert 5.0 < du < 7.0


def test_absent_weights_log_one_line_and_use_mediapipe(tmp_path, monkeypatch, caplog, astronaut_rgb, mp_face):
    """(c) auto without weights: one line, the mediapipe result; face-alignment asked for: one clear error."""
    monkeypatch.setenv("LIKENESS_FACE_ALIGNMENT_DIR", str(tmp_path / "empty"))
    with caplog.at_level(logging.INFO, logger="likeness"):
        face, n, backend = choose_face(astronaut_rgb, backend="auto")
    assert backend == "mediapipe" and n == 1 and face.ibug68_px is None
    assert np.array_equal(face.pose_points_px, mp_face.points_px)
    lines = [r.getMessage() for r in caplog.records if "face-alignment" in r.getMessage()]
    assert len(lines) == 1 and "weights not found" in lines[0] and "\n" not in lines[0]
    with pytest.raises(BackendUnavailable, match="weights not found") as exc:
        choose_face(astronaut_rgb, backend="face-alignment")
    assert "\n" not in exc.value.one_line() and "LIKENESS_FACE_ALIGNMENT_DIR" in exc.value.hint
    assert exc.value.exit_code == 2 and exc.value.code == "backend_unavailable"


def test_unreadable_weights_say_so(tmp_path, monkeypatch, caplog, astronaut_rgb):
    """(d) A corrupt file: a clear BackendUnavailable when asked for, the mediapipe result with a line in auto."""
    (tmp_path / FAN_FILE).write_bytes(b"not a TorchScript archive")
    with pytest.raises(BackendUnavailable, match="could not be read as TorchScript"):
        load_fan(tmp_path)
    (tmp_path / "3DFAN4-tiny.safetensors").write_bytes(b"{}")
    with pytest.raises(BackendUnavailable, match="bare state dict"):
        load_fan(tmp_path)
    monkeypatch.setenv("LIKENESS_FACE_ALIGNMENT_DIR", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="likeness"):
        _, _, backend = choose_face(astronaut_rgb, backend="auto")
    assert backend == "mediapipe"
    assert any("pose landmarks come from mediapipe" in r.getMessage() for r in caplog.records)
    with pytest.raises(BackendUnavailable):
        choose_face(astronaut_rgb, backend="face-alignment")


def test_a_network_of_the_wrong_shape_or_disagreeing_is_refused(tmp_path, monkeypatch, astronaut_rgb):
    monkeypatch.setenv("LIKENESS_FACE_ALIGNMENT_DIR", str(save_fan(WrongShape(), tmp_path / "shape")))
    with pytest.raises(BackendUnavailable, match="not heatmaps"):
        choose_face(astronaut_rgb, backend="face-alignment")
    centre = np.full((68, 2), 32.0)
    monkeypatch.setenv("LIKENESS_FACE_ALIGNMENT_DIR", str(save_fan(GaussianPeaks(centre), tmp_path / "far")))
    _, _, backend = choose_face(astronaut_rgb, backend="auto")
    assert backend == "mediapipe"
    with pytest.raises(BackendUnavailable, match="disagree"):
        choose_face(astronaut_rgb, backend="face-alignment")


def test_weights_are_found_by_face_alignment_names_3d_first(tmp_path):
    for name in ("depth-6c4283c0e0.zip", "2DFAN4-cd938726ad.zip", "3DFAN4-4a694010b9.zip", "s3fd-619a316812.pth"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_fan_weights(tmp_path)] == ["3DFAN4-4a694010b9.zip", "2DFAN4-cd938726ad.zip"]
    assert find_fan_weights(tmp_path / "missing") == []
