"""Everything the build needs from the photo: the chosen face, its landmarks, camera, pose, the square work
crop around the face and the selfie matte of that crop."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.ndimage as ndi

from engine.config import BuildConfig
from engine.conventions import Intrinsics
from engine.face.camera import HeadPose, estimate_pose, photo_intrinsics
from engine.face.landmarks import FaceLandmarks, choose_face
from engine.face.quiet import quiet_native_stderr
from engine.io.images import Photo

log = logging.getLogger("likeness")


@dataclass(frozen=True)
class FaceAnalysis:
    """The photo's camera and pose, and the work crop: ``crop_rgb`` (S, S, 3) float32 in [0, 1], ``matte`` (S, S)
    in [0, 1], ``crop_box`` (x0, y0, side) in photo pixels, ``work_intr`` its camera; ``in_photo`` (S, S) bool: the
    crop pixels that lie inside the photo (the rest are edge-replicated padding)."""

    face: FaceLandmarks
    n_faces: int
    backend: str
    photo_intr: Intrinsics
    focal_35mm: float
    focal_source: str
    pose: HeadPose
    crop_box: tuple[float, float, float]
    work_intr: Intrinsics
    crop_rgb: np.ndarray
    matte: np.ndarray
    in_photo: np.ndarray | None = None


def crop_square(rgb: np.ndarray, x0: float, y0: float, side: float, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample the square [x0, x0+side) x [y0, y0+side) to ``out`` x ``out``; also returns which output pixels
    came from inside the photo (the rest are edge-replicated)."""
    k = out / side
    m = np.array([[k, 0.0, -x0 * k], [0.0, k, -y0 * k]])
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    img = cv2.warpAffine(rgb, m, (out, out), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    ones = np.ones(rgb.shape[:2], np.uint8)
    valid = cv2.warpAffine(ones, m, (out, out), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT) > 0
    return img, valid


def selfie_matte(rgb_u8: np.ndarray, face_xy: tuple[float, float]) -> np.ndarray:
    """mediapipe selfie segmentation of ``rgb_u8``, reduced to the connected person that holds ``face_xy``."""
    import mediapipe as mp

    with quiet_native_stderr(), mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        res = seg.process(np.ascontiguousarray(rgb_u8))
    m = np.clip(res.segmentation_mask.astype(np.float32), 0.0, 1.0)
    lab, _ = ndi.label(m > 0.5)
    fx, fy = int(np.clip(face_xy[0], 0, m.shape[1] - 1)), int(np.clip(face_xy[1], 0, m.shape[0] - 1))
    keep = lab[fy, fx]
    if keep > 0:
        near = ndi.binary_dilation(lab == keep, iterations=3)
        m = np.where(near, m, 0.0)
    return m.astype(np.float32)


def analysis_warnings(n_faces: int, cfg: BuildConfig) -> list[dict]:
    """What the user should know about the analysis ({code, message}; the manifest's ``warnings``)."""
    if n_faces <= 1:
        return []
    msg = (
        f"the photo shows {n_faces} faces; used face {cfg.face_index} (largest first). Choose another with "
        "--face N (face_index in the server's build options)"
    )
    return [{"code": "several_faces", "message": msg}]


def analyse(photo: Photo, cfg: BuildConfig) -> FaceAnalysis:
    """Detect, choose, lift and crop. The pose is fitted to ``face.pose_points_px`` (the FAN's points where the
    face-alignment backend ran). Raises the input errors of :mod:`engine.face.landmarks`."""
    face, n_faces, backend = choose_face(photo.rgb, cfg.face_index, cfg.landmark_backend)
    for w in analysis_warnings(n_faces, cfg):
        log.warning("%s", w["message"])
    if cfg.focal_35mm > 0:
        focal, source = cfg.focal_35mm, "option"
    elif photo.focal_35mm:
        focal, source = float(photo.focal_35mm), "exif"
    else:
        focal, source = cfg.default_focal_35mm, "default"
    intr = photo_intrinsics(photo.width, photo.height, focal)
    pose = estimate_pose(face.pose_points_px, intr)
    x0b, y0b, x1b, y1b = face.box_px
    fw = max(x1b - x0b, 0.8 * (y1b - y0b))
    side = cfg.crop_scale * fw
    cx, cy = 0.5 * (x0b + x1b), 0.5 * (y0b + y1b) - 0.05 * fw
    x0, y0 = cx - side / 2.0, cy - side / 2.0
    crop, valid = crop_square(photo.rgb, x0, y0, side, cfg.work_res)
    work_intr = intr.cropped(x0, y0, int(round(side)), int(round(side))).scaled(cfg.work_res / side)
    work_intr = Intrinsics(work_intr.fx, work_intr.fy, work_intr.cx, work_intr.cy, cfg.work_res, cfg.work_res)
    k = cfg.work_res / side
    matte = selfie_matte(crop, ((cx - x0) * k, (cy - y0) * k)) * valid
    return FaceAnalysis(
        face=face,
        n_faces=n_faces,
        backend=backend,
        photo_intr=intr,
        focal_35mm=focal,
        focal_source=source,
        pose=pose,
        crop_box=(float(x0), float(y0), float(side)),
        work_intr=work_intr,
        crop_rgb=crop.astype(np.float32) / 255.0,
        matte=matte,
        in_photo=valid,
    )
