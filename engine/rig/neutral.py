"""The photo's own expression, estimated without a neutral reference.

A single photo does not show its subject's neutral face, so the estimate compares a few scale-free landmark
ratios with *neutral priors* authored by the project from anthropometric averages (lips closed, mouth corners
level with the lip line, mouth about as wide as 0.8 x the pupil distance, eyes open about 0.3 of their width), each
with a tolerance band inside which the face counts as neutral. The weights that explain the excess are found by
bounded least squares with the rig's own feature response. The choice and its limits are in docs/RIG.md."""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from engine.rig import topology as T
from engine.rig.arkit import INDEX, N_SHAPES

# name: (prior value, tolerance, scale). Residuals are (|f - prior| - tolerance)+ / scale.
PRIORS: dict[str, tuple[float, float, float]] = {
    "lip_gap": (0.0, 0.002, 0.02),
    "eye_open_left": (0.30, 0.08, 0.05),
    "eye_open_right": (0.30, 0.08, 0.05),
    "corner_lift_left": (0.0, 0.012, 0.02),
    "corner_lift_right": (0.0, 0.012, 0.02),
    "mouth_width": (0.80, 0.08, 0.1),
    "brow_height_left": (0.12, 0.035, 0.03),
    "brow_height_right": (0.12, 0.035, 0.03),
}
FEATURES = tuple(PRIORS)

ESTIMATED = (
    "jawOpen", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPucker", "eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight", "browInnerUp", "browDownLeft",
    "browDownRight", "browOuterUpLeft", "browOuterUpRight",
)  # fmt: skip
"""Shapes whose photo weight is estimated; the rest are taken as 0 in the photo."""
REGULARISATION = 0.05


def features(v: np.ndarray) -> np.ndarray:
    """Scale-free expression features of proxy vertices (N_PROXY, 3), in the order of :data:`FEATURES`."""
    c = T.contours()
    fh = np.linalg.norm(v[T.FOREHEAD] - v[T.CHIN])
    lip_mid = 0.5 * (v[T.UPPER_LIP_INNER] + v[T.LOWER_LIP_INNER])
    out = {"lip_gap": (v[T.UPPER_LIP_INNER, 1] - v[T.LOWER_LIP_INNER, 1]) / fh}
    for side in ("left", "right"):
        up, lo = c[f"eye_{side}_upper"][2:-2], c[f"eye_{side}_lower"][2:-2]
        ew = np.linalg.norm(v[T.EYE_OUTER[side]] - v[T.EYE_INNER[side]])
        out[f"eye_open_{side}"] = (v[up, 1].mean() - v[lo, 1].mean()) / ew
        out[f"corner_lift_{side}"] = (v[T.MOUTH_CORNER[side], 1] - lip_mid[1]) / fh
        brow = c[f"brow_{side}_upper"]
        out[f"brow_height_{side}"] = (v[brow, 1].mean() - v[T.IRIS_CENTRE[side], 1]) / fh
    iod = np.linalg.norm(v[T.IRIS_CENTRE["left"]] - v[T.IRIS_CENTRE["right"]])
    out["mouth_width"] = np.linalg.norm(v[T.MOUTH_CORNER["left"]] - v[T.MOUTH_CORNER["right"]]) / iod
    return np.array([out[k] for k in FEATURES])


def estimate_photo_weights(photo: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """(52,) weights in [0, 1] such that ``photo - sum(w * deltas)`` has neutral features (within tolerance).

    ``photo`` (N_PROXY, 3) is the proxy at the photo's expression, ``deltas`` (52, N_PROXY, 3) the shapes."""
    idx = [INDEX[n] for n in ESTIMATED]
    prior = np.array([PRIORS[k][0] for k in FEATURES])
    tol = np.array([PRIORS[k][1] for k in FEATURES])
    scale = np.array([PRIORS[k][2] for k in FEATURES])

    def residual(x):
        v = photo - np.tensordot(x, deltas[idx], axes=1)
        r = features(v) - prior
        excess = np.sign(r) * np.maximum(np.abs(r) - tol, 0.0) / scale
        return np.concatenate([excess, np.sqrt(REGULARISATION) * x])

    res = least_squares(residual, np.zeros(len(idx)), bounds=(0.0, 1.0), diff_step=1e-3, xtol=1e-6)
    w = np.zeros(N_SHAPES)
    w[idx] = np.round(res.x, 4)
    return w
