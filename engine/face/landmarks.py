"""Landmark backends behind one interface. mediapipe (embedded in its wheel) is the default; face-alignment is
optional and used only when its package and weights are already on disk -- nothing is ever downloaded."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import BackendUnavailable, FaceIndexError, FaceTooSmall, NoFaceFound
from engine.face.quiet import quiet_native_stderr

log = logging.getLogger("likeness")

MIN_FACE_PX = 96
MP_MAX_SIDE = 1600


@dataclass(frozen=True)
class FaceLandmarks:
    """One face: mediapipe-topology landmarks ``points_px`` (478, 3) = (u, v, z) in photo pixels, where z is
    relative depth in the same pixel units (smaller is closer), and its box (x0, y0, x1, y1) in pixels."""

    points_px: np.ndarray
    box_px: tuple[float, float, float, float]

    @property
    def width_px(self) -> float:
        return float(self.box_px[2] - self.box_px[0])

    @property
    def size_px(self) -> float:
        """The face's size: the larger side of its landmark box (forehead to chin, or ear to ear)."""
        return float(max(self.box_px[2] - self.box_px[0], self.box_px[3] - self.box_px[1]))


def _face_mesh(img: np.ndarray, max_faces: int):
    import mediapipe as mp

    with quiet_native_stderr(), mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=max_faces, refine_landmarks=True
    ) as fm:
        res = fm.process(np.ascontiguousarray(img))
    return [np.array([[q.x, q.y, q.z] for q in f.landmark], dtype=np.float64) for f in res.multi_face_landmarks or []]


def _detections(img: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Full-range detector boxes (x0, y0, x1, y1) in ``img`` pixels."""
    import mediapipe as mp

    h, w = img.shape[:2]
    with quiet_native_stderr(), mp.solutions.face_detection.FaceDetection(
        model_selection=1, min_detection_confidence=0.5
    ) as fd:
        res = fd.process(np.ascontiguousarray(img))
    boxes = []
    for d in res.detections or []:
        b = d.location_data.relative_bounding_box
        boxes.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h))
    return boxes


def _to_face(p: np.ndarray, x0: float, y0: float, side_x: float, side_y: float) -> FaceLandmarks:
    pts = np.stack([x0 + p[:, 0] * side_x, y0 + p[:, 1] * side_y, p[:, 2] * side_x], axis=1)
    box = (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
    return FaceLandmarks(pts, tuple(float(b) for b in box))


def _box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _mediapipe_faces(rgb: np.ndarray) -> list[FaceLandmarks]:
    """Faces with 478 landmarks. The full-range detector finds faces however small they are in the frame; each
    is re-cropped and meshed on its own (the mesh model's built-in detector only sees faces that fill the
    frame); whole-image meshing catches what the detector missed."""
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, MP_MAX_SIDE / max(h, w))
    img = rgb
    if scale < 1.0:
        img = cv2.resize(rgb, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_AREA)
    faces = [_to_face(p, 0.0, 0.0, w, h) for p in _face_mesh(img, 8)]
    for x0, y0, x1, y1 in _detections(img):
        x0, y0, x1, y1 = (v / scale for v in (x0, y0, x1, y1))
        side = 2.2 * max(x1 - x0, y1 - y0)
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        cx0, cy0 = cx - side / 2.0, cy - side / 2.0
        if any(_box_iou(f.box_px, (x0, y0, x1, y1)) > 0.3 for f in faces):
            continue
        k = min(1.0, 512.0 / side) if side > 512 else 512.0 / side
        m = np.array([[k, 0.0, -cx0 * k], [0.0, k, -cy0 * k]])
        out = int(round(side * k))
        crop = cv2.warpAffine(rgb, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for p in _face_mesh(crop, 1):
            faces.append(_to_face(p, cx0, cy0, side, side))
    return faces


def _mediapipe_count_detections(rgb: np.ndarray) -> int:
    """Faces the full-range detector sees (used to tell 'no face' from 'face too small')."""
    import mediapipe as mp

    with (
        quiet_native_stderr(),
        mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as fd,
    ):
        res = fd.process(np.ascontiguousarray(rgb))
    return len(res.detections or [])


def face_alignment_weights_dir() -> Path:
    """Where face-alignment's weights are looked for: $LIKENESS_FACE_ALIGNMENT_DIR, else torch's hub cache."""
    env = os.environ.get("LIKENESS_FACE_ALIGNMENT_DIR")
    if env:
        return Path(env)
    torch_home = os.environ.get("TORCH_HOME", os.path.join(os.path.expanduser("~"), ".cache", "torch"))
    return Path(torch_home) / "hub" / "checkpoints"


def load_face_alignment_weights(directory: Path | None = None) -> dict:
    """Load face-alignment's 3D-FAN weights from a local folder (safetensors, or a TorchScript/.pth file opened
    with ``weights_only``). Raises :class:`BackendUnavailable` with one clear line when absent."""
    directory = Path(directory) if directory else face_alignment_weights_dir()
    candidates = sorted(directory.glob("*3DFAN4*")) + sorted(directory.glob("*2DFAN4*")) if directory.is_dir() else []
    if not candidates:
        raise BackendUnavailable(
            f"face-alignment weights not found in {directory}; using the embedded mediapipe landmarks",
            "put 3DFAN4 weights there or set LIKENESS_FACE_ALIGNMENT_DIR",
        )
    path = candidates[0]
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return {"path": str(path), "state_dict": load_file(str(path))}
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file means the backend is unavailable
        raise BackendUnavailable(f"face-alignment weights at {path} could not be read ({type(exc).__name__})") from exc
    return {"path": str(path), "state_dict": state}


def detect_faces(rgb: np.ndarray, backend: str = "auto") -> tuple[list[FaceLandmarks], str]:
    """All faces, largest first, and the name of the backend that found them.

    ``face-alignment`` refines nothing yet beyond checking its weights: its 68 points do not carry the dense
    mesh the head proxy needs, so landmarks always come from mediapipe; the check makes the choice explicit.
    """
    used = "mediapipe"
    if backend in ("auto", "face-alignment"):
        try:
            load_face_alignment_weights()
            log.info("face-alignment weights found; dense landmarks still come from mediapipe")
        except BackendUnavailable as exc:
            if backend == "face-alignment":
                log.warning("%s", exc.message)
    faces = _mediapipe_faces(rgb)
    faces.sort(key=lambda f: -f.size_px)
    return faces, used


def choose_face(rgb: np.ndarray, face_index: int = 0, backend: str = "auto") -> tuple[FaceLandmarks, int, str]:
    """The face to build from, how many faces the photo shows, and the backend name.

    Raises NoFaceFound, FaceTooSmall or FaceIndexError with a one-line message."""
    faces, used = detect_faces(rgb, backend)
    if not faces:
        if _mediapipe_count_detections(rgb) > 0:
            raise FaceTooSmall(
                "a face was detected but is too small or too blurred for landmarks",
                f"use a photo where the face is at least {MIN_FACE_PX} pixels wide",
            )
        raise NoFaceFound("no face found in the photo", "use a photo with one clearly visible, unobstructed face")
    if face_index >= len(faces):
        raise FaceIndexError(f"--face {face_index} asked for, but the photo shows {len(faces)} face(s)")
    face = faces[face_index]
    if face.size_px < MIN_FACE_PX:
        raise FaceTooSmall(
            f"the face is {face.size_px:.0f} pixels tall; Likeness needs at least {MIN_FACE_PX}",
            "use a closer or higher-resolution photo",
        )
    return face, len(faces), used
