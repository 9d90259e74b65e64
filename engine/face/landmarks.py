"""Landmark backends behind one interface. mediapipe (embedded in its wheel) finds every face and its dense 478
landmarks; face-alignment's FAN (engine/face/fan.py), used only when its weights are already on disk, places the
68 iBUG points that the head pose is fitted to. Nothing is ever downloaded."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from engine.errors import BackendUnavailable, FaceIndexError, FaceTooSmall, NoFaceFound
from engine.face.fan import (
    MEDIAPIPE_OF_IBUG68,
    Fan,
    crop_from_box,
    ibug_box,
    load_fan,
    replace_pose_points,
    run_fan,
)
from engine.face.quiet import quiet_native_stderr

log = logging.getLogger("likeness")

MIN_FACE_PX = 96
MP_MAX_SIDE = 1600


@dataclass(frozen=True)
class FaceLandmarks:
    """One face: mediapipe-topology landmarks ``points_px`` (478, 3) = (u, v, z) in photo pixels, where z is
    relative depth in the same pixel units (smaller is closer), and its box (x0, y0, x1, y1) in pixels.
    ``ibug68_px`` (68, 2) are the FAN's iBUG-68 points in photo pixels when the face-alignment backend ran."""

    points_px: np.ndarray
    box_px: tuple[float, float, float, float]
    ibug68_px: np.ndarray | None = None
    pose_source: str = "mediapipe"
    """What placed the pose points: ``mediapipe`` or ``face-alignment (<weights file>)``."""

    @property
    def pose_points_px(self) -> np.ndarray:
        """(478, 3) landmarks for the head-pose fit: ``points_px`` with the template landmarks' (u, v) taken
        from the FAN's matching iBUG points when there are any."""
        if self.ibug68_px is None:
            return self.points_px
        return replace_pose_points(self.points_px, self.ibug68_px)

    @property
    def width_px(self) -> float:
        return float(self.box_px[2] - self.box_px[0])

    @property
    def size_px(self) -> float:
        """The face's size: the larger side of its landmark box (forehead to chin, or ear to ear)."""
        return float(max(self.box_px[2] - self.box_px[0], self.box_px[3] - self.box_px[1]))


def _face_mesh(img: np.ndarray, max_faces: int):
    import mediapipe as mp

    with (
        quiet_native_stderr(),
        mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces, refine_landmarks=True) as fm,
    ):
        res = fm.process(np.ascontiguousarray(img))
    return [np.array([[q.x, q.y, q.z] for q in f.landmark], dtype=np.float64) for f in res.multi_face_landmarks or []]


def _detections(img: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Full-range detector boxes (x0, y0, x1, y1) in ``img`` pixels."""
    import mediapipe as mp

    h, w = img.shape[:2]
    with (
        quiet_native_stderr(),
        mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as fd,
    ):
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


def _mediapipe_view(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """``rgb`` scaled so its longer side is at most MP_MAX_SIDE (mediapipe and OpenCV are never handed a
    full-resolution photo), and the scale used."""
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, MP_MAX_SIDE / max(h, w))
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def _mediapipe_faces(rgb: np.ndarray) -> list[FaceLandmarks]:
    """Faces with 478 landmarks. The full-range detector finds faces however small they are in the frame; each
    is re-cropped and meshed on its own (the mesh model's built-in detector only sees faces that fill the
    frame); whole-image meshing catches what the detector missed."""
    import cv2

    h, w = rgb.shape[:2]
    img, scale = _mediapipe_view(rgb)
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
        res = fd.process(np.ascontiguousarray(_mediapipe_view(rgb)[0]))
    return len(res.detections or [])


def _fan_or_none(backend: str) -> Fan | None:
    """The local FAN when ``backend`` wants one; ``auto`` without usable weights logs one line and gets None,
    ``face-alignment`` raises :class:`BackendUnavailable`."""
    if backend == "mediapipe":
        return None
    try:
        return load_fan()
    except BackendUnavailable as exc:
        if backend == "face-alignment":
            raise
        log.info("%s; pose landmarks come from mediapipe", exc.one_line())
        return None


def _agrees(face: FaceLandmarks, ibug68_px: np.ndarray) -> bool:
    """Whether the FAN points lie where mediapipe put the same features: median gap under 10 % of the face."""
    gap = np.linalg.norm(ibug68_px - face.points_px[MEDIAPIPE_OF_IBUG68, :2], axis=1)
    return float(np.median(gap)) < 0.1 * face.size_px


def refine_with_fan(rgb: np.ndarray, face: FaceLandmarks, fan: Fan, backend: str) -> FaceLandmarks:
    """``face`` with the FAN's 68 iBUG points (``ibug68_px``) from a crop of its mediapipe box. Points that
    disagree with mediapipe are dropped (a warning in ``auto``, :class:`BackendUnavailable` when asked for)."""
    ibug68_px, _ = run_fan(fan, rgb, crop_from_box(ibug_box(face.points_px)))
    if not _agrees(face, ibug68_px):
        msg = f"face-alignment ({fan.name}) points disagree with mediapipe's face"
        if backend == "face-alignment":
            raise BackendUnavailable(msg, "check the weights file, or use the mediapipe backend")
        log.warning("%s; pose landmarks come from mediapipe", msg)
        return face
    return replace(face, ibug68_px=ibug68_px, pose_source=f"face-alignment ({fan.name})")


def detect_faces(rgb: np.ndarray, backend: str = "auto") -> tuple[list[FaceLandmarks], str]:
    """All faces, largest first, and the backend that placed their pose points (``mediapipe`` or
    ``face-alignment``). mediapipe always finds the faces and gives the dense 478 landmarks; a local FAN then
    adds the 68 iBUG points of each face (``backend``: auto | mediapipe | face-alignment, see BuildConfig)."""
    faces = _mediapipe_faces(rgb)
    faces.sort(key=lambda f: -f.size_px)
    fan = _fan_or_none(backend) if faces else None
    if fan is None:
        return faces, "mediapipe"
    faces = [refine_with_fan(rgb, f, fan, backend) for f in faces]
    used = "face-alignment" if any(f.ibug68_px is not None for f in faces) else "mediapipe"
    return faces, used


def choose_face(rgb: np.ndarray, face_index: int = 0, backend: str = "auto") -> tuple[FaceLandmarks, int, str]:
    """The face to build from, how many faces the photo shows, and the backend that placed its pose points
    (only the chosen face is run through the FAN).

    Raises NoFaceFound, FaceTooSmall or FaceIndexError with a one-line message."""
    faces, _ = detect_faces(rgb, "mediapipe")
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
    fan = _fan_or_none(backend)
    if fan is not None:
        face = refine_with_fan(rgb, face, fan, backend)
    return face, len(faces), "face-alignment" if face.ibug68_px is not None else "mediapipe"
