"""Driving: fit the 52 ARKit weights to mediapipe landmarks of a photo or of every frame of a video.

One frame: the landmarks are lifted to metric 3-D (:mod:`engine.face.camera`), aligned to the rig's neutral proxy
by a similarity on landmarks expressions do not move (forehead, nose bridge, eye corners, face edge), and the
weights solve a bounded least-squares problem ``min |W (D w - r)|^2 + lambda |w|^2 + mu |w - w_prev|^2`` with
``0 <= w <= 1`` (``scipy.optimize.lsq_linear``). A sequence is then smoothed in time (Gaussian, zero phase).

Which rig: the avatar's own when the driver is the avatar's subject (the round trip), else the driver's own rig
built from its first frame (so another face's shape is not read as expression); the weights transfer by name."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import lsq_linear

from engine.conventions import Intrinsics
from engine.errors import InputError, NoFaceFound
from engine.proxy.canonical import umeyama
from engine.rig import topology as T
from engine.rig.arkit import N_SHAPES
from engine.rig.rig import FaceRig

log = logging.getLogger("likeness")

STABLE = (10, 109, 338, 67, 297, 151, 9, 8, 168, 6, 197, 195, 5, 4, 33, 133, 263, 362, 127, 356, 234, 454, 21, 251,
          54, 284, 103, 332, 162, 389)  # fmt: skip
"""Landmarks expressions do not move (much): the alignment uses only these."""
REGULARISATION = 1e-4
"""Ridge weight on the weights; residuals are in face heights."""
SPARSITY = 3e-3
"""L1 weight on the (non-negative) weights: a face rarely uses opposing shapes at once."""
Z_WEIGHT = 0.05
COMMON = (
    "eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp", "browDownLeft",
    "browDownRight", "browOuterUpLeft", "browOuterUpRight", "eyeWideLeft", "eyeWideRight", "eyeSquintLeft",
    "eyeSquintRight", "mouthFunnel", "mouthPucker", "mouthFrownLeft", "mouthFrownRight",
)  # fmt: skip
"""Shapes faces use most; the rest pay ``RARE_FACTOR`` times the L1 price (an expression prior: the landmarks
cannot tell e.g. a smile from an upper-lip raise plus a cheek puff, so the common reading wins a tie)."""
RARE_FACTOR = 3.0


INTERIOR_WEIGHT = 0.1
"""Row weight of mesh landmarks off the face's contours: where skin has no edge to see (cheeks, forehead) the
detector fills in landmarks from its own face prior, so they under-read any expression."""


def landmark_weights() -> np.ndarray:
    """(N_MESH,) fit weight per mediapipe mesh landmark: 1 on the lips, eyes, brows, nose and outline."""
    conn = T.connections()
    w = np.full(T.N_MESH, INTERIOR_WEIGHT)
    for key in ("FACEMESH_LIPS", "FACEMESH_LEFT_EYE", "FACEMESH_RIGHT_EYE", "FACEMESH_LEFT_EYEBROW",
                "FACEMESH_RIGHT_EYEBROW", "FACEMESH_FACE_OVAL", "FACEMESH_NOSE"):  # fmt: skip
        for a, b in conn.get(key, ()):
            w[[a, b]] = 1.0
    return w


def sparsity_vector(sparsity: float) -> np.ndarray:
    from engine.rig.arkit import INDEX

    out = np.full(N_SHAPES, sparsity * RARE_FACTOR)
    out[[INDEX[n] for n in COMMON]] = sparsity
    return out


"""mediapipe's depth is less reliable than its image coordinates."""
IRIS_WEIGHT = 3.0


@dataclass(frozen=True)
class Keyframes:
    """``times_s`` (T,) seconds from the first frame, ``weights`` (T, 52) in ARKit order, and which frames had a
    face (``found`` (T,) bool; frames without one hold the previous weights)."""

    times_s: np.ndarray
    weights: np.ndarray
    found: np.ndarray


def _design(rig: FaceRig) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the least-squares system: (3 N, 52) shape matrix and (3 N,) row weights, in face-height units."""
    fh = rig.measures.face_height
    w_vert = np.zeros(T.N_PROXY)
    w_vert[: T.N_MESH] = landmark_weights()
    w_vert[[T.IRIS_CENTRE["left"], T.IRIS_CENTRE["right"]]] = IRIS_WEIGHT
    row_w = (w_vert[:, None] * np.array([1.0, 1.0, Z_WEIGHT])[None]).reshape(-1)
    a = rig.deltas.transpose(1, 2, 0).reshape(-1, N_SHAPES) / fh
    return a, row_w


def align_to_rig(rig: FaceRig, landmarks: np.ndarray) -> np.ndarray:
    """Proxy vertices (N_PROXY, 3) of ``landmarks`` (478, 3), moved onto the rig's neutral proxy by the
    similarity that best maps their stable landmarks."""
    p = T.proxy_positions(landmarks)
    idx = list(STABLE)
    sim = umeyama(p[idx], rig.neutral[idx])
    return sim.apply(p)


def fit_weights(
    rig: FaceRig,
    landmarks: np.ndarray,
    reference: np.ndarray | None = None,
    previous: np.ndarray | None = None,
    temporal: float = 0.0,
    regularisation: float = REGULARISATION,
    sparsity: float = SPARSITY,
) -> np.ndarray:
    """(52,) weights in [0, 1] for one face's 478 landmarks (any metric 3-D frame: aligned here).

    ``reference`` (N_PROXY, 3) is where the landmarks sit at all-zero weights, in the rig's frame: by default the
    rig's neutral proxy; a driver's own neutral frame (``align_to_rig`` of its landmarks) removes what a camera
    or the landmark detector adds to every frame alike."""
    a, row_w = _design(rig)
    ref = rig.neutral if reference is None else reference
    r = ((align_to_rig(rig, landmarks) - ref) / rig.measures.face_height).reshape(-1)
    sw = np.sqrt(row_w)
    rows_a, rows_b = [a * sw[:, None]], [r * sw]
    # ridge + L1 on w >= 0 as one least-squares block: |sqrt(l2) w + l1 / (2 sqrt(l2))|^2 = l2 |w|^2 + l1 sum(w) + c
    rows_a.append(np.sqrt(regularisation) * np.eye(N_SHAPES))
    rows_b.append(-sparsity_vector(sparsity) / (2.0 * np.sqrt(regularisation)))
    if previous is not None and temporal > 0:
        rows_a.append(np.sqrt(temporal) * np.eye(N_SHAPES))
        rows_b.append(np.asarray(previous, dtype=np.float64))
    res = lsq_linear(np.concatenate(rows_a), np.concatenate(rows_b), bounds=(0.0, 1.0), method="bvls")
    return np.clip(res.x, 0.0, 1.0)


def fit_weights_image(
    rig: FaceRig,
    points_px: np.ndarray,
    cam2world: np.ndarray,
    intr: Intrinsics,
    reference_px: np.ndarray | None = None,
    regularisation: float = REGULARISATION,
    sparsity: float = SPARSITY,
) -> np.ndarray:
    """(52,) weights from image landmarks (478, 2+) of the rig's own face seen by a *known* camera (the avatar's
    renders): the residual is taken in pixels against the projected rig, so no depth has to be guessed.
    ``reference_px`` are the landmarks of the same camera's all-zero render (removes the detector's own bias);
    by default the projected neutral proxy."""
    from engine.conventions import project_points

    def image(v):  # the detector's landmarks (not the proxy's widened eyes) of proxy v, in pixels
        return project_points(T.landmarks_from_proxy(v)[: T.N_MESH], cam2world, intr)[0]

    v0 = rig.neutral
    base = image(v0)
    eps = 1e-3
    a = np.stack([((image(v0 + eps * rig.deltas[k]) - base) / eps).reshape(-1) for k in range(N_SHAPES)], 1)
    ref = base if reference_px is None else np.asarray(reference_px)[: T.N_MESH, :2]
    r = (np.asarray(points_px)[: T.N_MESH, :2] - ref).reshape(-1)
    fh = float(np.linalg.norm(base[T.FOREHEAD] - base[T.CHIN]))  # pixels per face height
    sw = np.sqrt(np.repeat(landmark_weights(), 2))
    a, r = a * sw[:, None] / fh, r * sw / fh
    rows_a = [a, np.sqrt(regularisation) * np.eye(N_SHAPES)]
    rows_b = [r, -sparsity_vector(sparsity) / (2.0 * np.sqrt(regularisation))]
    res = lsq_linear(np.concatenate(rows_a), np.concatenate(rows_b), bounds=(0.0, 1.0), method="bvls")
    return np.clip(res.x, 0.0, 1.0)


def smooth_weights(weights: np.ndarray, fps: float, sigma_s: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing of (T, 52) weights over time; ``sigma_s`` seconds (0: none)."""
    w = np.asarray(weights, dtype=np.float64)
    if sigma_s <= 0 or len(w) < 3:
        return w
    return np.clip(gaussian_filter1d(w, sigma=sigma_s * fps, axis=0, mode="nearest"), 0.0, 1.0)


def lift(points_px: np.ndarray, width: int, height: int, focal_35mm: float = 50.0) -> np.ndarray:
    """Image landmarks (478, 3) (u, v, z in pixels) -> metric 3-D in the template-aligned head frame."""
    from engine.face.camera import estimate_pose, photo_intrinsics

    intr = photo_intrinsics(width, height, focal_35mm)
    return estimate_pose(points_px, intr).landmarks_world()


def lift_with(points_px: np.ndarray, intr: Intrinsics) -> np.ndarray:
    from engine.face.camera import estimate_pose

    return estimate_pose(points_px, intr).landmarks_world()


def image_landmarks(rgb: np.ndarray) -> np.ndarray:
    """The largest face's 478 landmarks (u, v, z) in pixels; :class:`NoFaceFound` without one."""
    from engine.face.landmarks import detect_faces

    faces, _ = detect_faces(np.ascontiguousarray(rgb), backend="mediapipe")
    if not faces:
        raise NoFaceFound("no face found in the driving image", "use a frame with one clearly visible face")
    if faces[0].points_px.shape[0] < 478:
        raise NoFaceFound("the landmarks lack the iris points (refine_landmarks)")
    return faces[0].points_px


def video_landmarks(path: str, max_frames: int | None = None):
    """Per frame of a video: 478 landmarks in pixels or None, plus (fps, width, height). mediapipe runs in
    tracking mode, which is steadier and faster than detecting every frame afresh."""
    import imageio_ffmpeg
    import mediapipe as mp

    from engine.face.quiet import quiet_native_stderr

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = reader.__next__()
    except (OSError, RuntimeError, StopIteration) as exc:
        raise InputError(f"could not read the video {path}", "use an MP4/MOV/WebM file ffmpeg can decode") from exc
    w, h = meta["size"]
    fps = float(meta.get("fps") or 30.0)
    out = []
    with (
        quiet_native_stderr(),
        mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True) as fm,
    ):
        for raw in reader:
            frame = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
            res = fm.process(frame)
            if res.multi_face_landmarks:
                lm = res.multi_face_landmarks[0].landmark
                p = np.array([[q.x * w, q.y * h, q.z * w] for q in lm], dtype=np.float64)
                out.append(p)
            else:
                out.append(None)
            if max_frames and len(out) >= max_frames:
                break
    reader.close()
    return out, fps, w, h


def fit_landmark_sequence(
    rig: FaceRig, frames: list, fps: float, smooth_s: float = 0.04, temporal: float = 1e-3
) -> Keyframes:
    """Fit lifted landmark frames (each (478, 3) or None) with ``rig``; missing frames hold the last weights."""
    weights, found, prev = [], [], None
    for lm in frames:
        if lm is None:
            weights.append(prev if prev is not None else np.zeros(N_SHAPES))
            found.append(False)
            continue
        prev = fit_weights(rig, lm, previous=prev, temporal=temporal)
        weights.append(prev)
        found.append(True)
    if not any(found):
        raise NoFaceFound("no face found in any frame of the driving video")
    w = smooth_weights(np.array(weights), fps, smooth_s)
    return Keyframes(np.arange(len(frames)) / fps, w, np.array(found))


def drive_from_photo(rgb: np.ndarray, rig: FaceRig | None = None, focal_35mm: float = 50.0) -> np.ndarray:
    """(52,) weights of a driving photo. With ``rig`` (the avatar's, when the photo shows the same person) the
    photo is fitted against it; otherwise against the photo's own rig, i.e. its expression relative to the neutral
    priors of :mod:`engine.rig.neutral`."""
    from engine.rig.rig import build_rig

    pts = image_landmarks(rgb)
    lm = lift(pts, rgb.shape[1], rgb.shape[0], focal_35mm)
    return fit_weights(rig or build_rig(lm), lm)


def drive_from_video(
    path: str, rig: FaceRig | None = None, smooth_s: float = 0.04, max_frames: int | None = None
) -> Keyframes:
    """Keyframes for every frame of a video. Without ``rig`` the driver's own rig is built from its first frame
    with a face (its expression there estimated against the neutral priors)."""
    from engine.rig.rig import build_rig

    frames_px, fps, w, h = video_landmarks(path, max_frames)
    lifted = [None if p is None else lift(p, w, h) for p in frames_px]
    if rig is None:
        first = next((lm for lm in lifted if lm is not None), None)
        if first is None:
            raise NoFaceFound("no face found in any frame of the driving video")
        rig = build_rig(first)
    return fit_landmark_sequence(rig, lifted, fps, smooth_s)
