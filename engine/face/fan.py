"""The face-alignment backend: runs a locally present FAN (Bulat & Tzimiropoulos 2017, the TorchScript networks
of the ``face-alignment`` package) on a crop around a mediapipe face and returns the 68 iBUG points in photo
pixels. The crop and the heatmap decoding follow face-alignment 1.4.1 (``api.py``, ``utils.py``); the package
itself is not needed, and nothing is ever downloaded."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import BackendUnavailable
from engine.proxy.template import TEMPLATE_POINTS

log = logging.getLogger("likeness")

FAN_INPUT_PX = 256
FAN_HEATMAP_PX = 64
N_IBUG = 68
REFERENCE_SCALE = 195.0
"""face-alignment's box-to-scale divisor: ``scale = (box width + box height) / 195``; the crop side is 200 scale."""
WEIGHT_PREFIXES = ("3DFAN4", "2DFAN4")
"""File-name prefixes tried, best first: 3DFAN4 points are projections of 3-D points, which a rigid fit wants."""

# The mediapipe landmark nearest each iBUG-68 point (0-based iBUG order: jaw 0-16 from the subject's right ear,
# brows 17-26, nose 27-35, right eye 36-41, left eye 42-47, outer lips 48-59, inner lips 60-67). Authored for
# Likeness; the nose tip (30) is mediapipe 1, the template's nose tip.
MEDIAPIPE_OF_IBUG68 = np.array(
    [127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356]
    + [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]
    + [168, 197, 5, 1, 75, 97, 2, 326, 305]
    + [33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380]
    + [61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181]
    + [78, 82, 13, 312, 308, 317, 14, 87],
    dtype=np.int64,
)

# Template landmark (mediapipe index) -> iBUG-68 index. The forehead (10) and the point above the nose tip (4)
# have no iBUG partner and keep their mediapipe position.
IBUG68_OF_TEMPLATE: dict[int, int] = {
    int(mp): i for i, mp in enumerate(MEDIAPIPE_OF_IBUG68) if int(mp) in TEMPLATE_POINTS
}


def face_alignment_weights_dir() -> Path:
    """Where face-alignment's weights are looked for: $LIKENESS_FACE_ALIGNMENT_DIR, else torch's hub cache
    ($TORCH_HOME/hub/checkpoints, where face-alignment itself stores them)."""
    env = os.environ.get("LIKENESS_FACE_ALIGNMENT_DIR")
    if env:
        return Path(env)
    torch_home = os.environ.get("TORCH_HOME", os.path.join(os.path.expanduser("~"), ".cache", "torch"))
    return Path(torch_home) / "hub" / "checkpoints"


@dataclass(frozen=True)
class FanCrop:
    """face-alignment's square crop: centre ``center_px`` (x, y) in photo pixels and side ``200 * scale`` pixels,
    resampled to 256 x 256; its 64 x 64 heatmaps cover the same square."""

    center_px: tuple[float, float]
    scale: float

    @property
    def side_px(self) -> float:
        return 200.0 * self.scale

    def heatmap_to_photo(self, p_hm: np.ndarray) -> np.ndarray:
        """(N, 2) continuous heatmap coordinates (pixel centres at +0.5) -> (N, 2) photo pixels. face-alignment
        truncates the result to whole pixels; the fraction is kept here."""
        c = np.asarray(self.center_px, dtype=np.float64)
        return c + (np.asarray(p_hm, dtype=np.float64) / FAN_HEATMAP_PX - 0.5) * self.side_px

    def photo_to_heatmap(self, x_px: np.ndarray) -> np.ndarray:
        """(N, 2) photo pixels -> (N, 2) continuous heatmap coordinates; the inverse of :meth:`heatmap_to_photo`."""
        c = np.asarray(self.center_px, dtype=np.float64)
        return ((np.asarray(x_px, dtype=np.float64) - c) / self.side_px + 0.5) * FAN_HEATMAP_PX


def crop_from_box(box_px: tuple[float, float, float, float]) -> FanCrop:
    """face-alignment's crop of a face box (x0, y0, x1, y1): the centre moved up by 12 % of the box height."""
    x0, y0, x1, y1 = (float(v) for v in box_px)
    w, h = x1 - x0, y1 - y0
    return FanCrop((x0 + w / 2.0, y0 + h / 2.0 - 0.12 * h), (w + h) / REFERENCE_SCALE)


def ibug_box(points_px: np.ndarray) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) of the mediapipe landmarks that stand for the 68 iBUG points, pixels."""
    p = np.asarray(points_px)[MEDIAPIPE_OF_IBUG68, :2]
    return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())


def crop_input(rgb_u8: np.ndarray, crop: FanCrop) -> np.ndarray:
    """The (256, 256, 3) uint8 network input, as face-alignment cuts it: the integer pixel range
    [trunc(c - side/2 + side/256), trunc(c + side/2)) copied with zero padding, then resized bilinearly (the
    side/256 is face-alignment's 1-based corner; kept so real weights see what they were run with)."""
    import cv2

    side = crop.side_px
    c = np.asarray(crop.center_px, dtype=np.float64)
    ul = np.trunc(c - side / 2.0 + side / FAN_INPUT_PX).astype(np.int64)
    br = np.trunc(c + side / 2.0).astype(np.int64)
    out = np.zeros((br[1] - ul[1], br[0] - ul[0], 3), np.uint8)
    h, w = rgb_u8.shape[:2]
    sx0, sx1 = max(ul[0], 0), min(br[0], w)
    sy0, sy1 = max(ul[1], 0), min(br[1], h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - ul[1] : sy1 - ul[1], sx0 - ul[0] : sx1 - ul[0]] = rgb_u8[sy0:sy1, sx0:sx1, :3]
    return cv2.resize(out, (FAN_INPUT_PX, FAN_INPUT_PX), interpolation=cv2.INTER_LINEAR)


def decode_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(68, 64, 64) heatmaps -> (68, 2) continuous heatmap coordinates (x, y) and (68,) peak scores: the argmax
    pixel's centre moved a quarter pixel toward the higher neighbour on each axis (not on the border)."""
    n, hh, ww = heatmaps.shape
    flat = heatmaps.reshape(n, hh * ww)
    idx = flat.argmax(axis=1)
    scores = flat[np.arange(n), idx]
    ix, iy = idx % ww, idx // ww
    pts = np.stack([ix, iy], axis=1).astype(np.float64) + 0.5
    for j in range(n):
        x, y = ix[j], iy[j]
        if 0 < x < ww - 1 and 0 < y < hh - 1:
            hm = heatmaps[j]
            pts[j] += 0.25 * np.sign([hm[y, x + 1] - hm[y, x - 1], hm[y + 1, x] - hm[y - 1, x]])
    return pts, scores


@dataclass(frozen=True)
class Fan:
    """A loaded FAN: TorchScript ``net`` mapping (1, 3, 256, 256) RGB in [0, 1] to (1, 68, 64, 64) heatmaps, and
    the file it came from."""

    net: object
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


def find_fan_weights(directory: Path) -> list[Path]:
    """FAN files in ``directory`` (any 3DFAN4* then 2DFAN4* file; face-alignment's are ``.zip`` TorchScript)."""
    if not directory.is_dir():
        return []
    return [p for pre in WEIGHT_PREFIXES for p in sorted(directory.glob(f"{pre}*")) if p.is_file()]


def _load_script(path: Path):
    import torch

    if path.suffix == ".safetensors":
        raise BackendUnavailable(
            f"face-alignment weights at {path} are a bare state dict; Likeness runs the TorchScript FAN",
            "use face-alignment's 2DFAN4/3DFAN4 .zip file",
        )
    try:
        net = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any unreadable file means the backend is unavailable
        raise BackendUnavailable(
            f"face-alignment weights at {path} could not be read as TorchScript ({type(exc).__name__})",
            "replace the file with face-alignment's own 2DFAN4/3DFAN4 .zip, or remove it",
        ) from exc
    return net.eval()


def load_fan(directory: Path | None = None) -> Fan:
    """The best FAN in ``directory`` (default :func:`face_alignment_weights_dir`). Raises
    :class:`BackendUnavailable` with one line when there is none, or when none of the files loads."""
    directory = Path(directory) if directory else face_alignment_weights_dir()
    paths = find_fan_weights(directory)
    if not paths:
        raise BackendUnavailable(
            f"face-alignment weights not found in {directory}",
            "put face-alignment's 3DFAN4 or 2DFAN4 .zip there or set LIKENESS_FACE_ALIGNMENT_DIR",
        )
    first_error = None
    for path in paths:
        try:
            return Fan(_load_script(path), path)
        except BackendUnavailable as exc:
            log.warning("%s", exc.message)
            first_error = first_error or exc
    raise first_error


def run_fan(fan: Fan, rgb_u8: np.ndarray, crop: FanCrop) -> tuple[np.ndarray, np.ndarray]:
    """The 68 iBUG points (68, 2) in photo pixels and their (68,) heatmap peak scores for one face crop."""
    import torch

    x = torch.from_numpy(crop_input(rgb_u8, crop)).permute(2, 0, 1)[None].float().div_(255.0)
    with torch.no_grad():
        out = fan.net(x)
    if isinstance(out, list | tuple):
        out = out[-1]
    shape = (1, N_IBUG, FAN_HEATMAP_PX, FAN_HEATMAP_PX)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise BackendUnavailable(f"face-alignment network {fan.name} returned {got}, not heatmaps {shape}")
    pts_hm, scores = decode_heatmaps(out[0].float().cpu().numpy())
    return crop.heatmap_to_photo(pts_hm), scores


def replace_pose_points(points_px: np.ndarray, ibug68_px: np.ndarray) -> np.ndarray:
    """(478, 3) mediapipe landmarks with (u, v) of each template landmark that has an iBUG partner taken from
    ``ibug68_px`` (68, 2); z and every other landmark unchanged."""
    out = np.array(points_px, dtype=np.float64, copy=True)
    for mp_index, ibug_index in IBUG68_OF_TEMPLATE.items():
        out[mp_index, :2] = ibug68_px[ibug_index]
    return out
