"""One subject's expression rig: the face proxy at the photo's expression and at neutral, the 52 shapes, and the
photo's own weights. ``proxy_at(w) = neutral + sum_k w_k * deltas_k`` (world metres), so all-zero weights are the
neutral face and ``proxy_at(photo_weights)`` is the photo. Stored in a bundle as ``expression.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import BundleError
from engine.io.bundle import bundle_label, read_json, short
from engine.io.manifest import BUNDLE_FILES
from engine.rig import topology as T
from engine.rig.arkit import ARKIT_NAMES, N_SHAPES, to_dict, to_vector
from engine.rig.blendshapes import JAW_OPEN_DEG, Measures, author_shapes, jaw_transform, jaw_weights
from engine.rig.neutral import estimate_photo_weights

EXPRESSION_FILE = BUNDLE_FILES["expression"]
EXPRESSION_FORMAT = "likeness-expression"
EXPRESSION_VERSION = 1
NEUTRAL_ITERATIONS = 3


@dataclass(frozen=True)
class FaceRig:
    """``photo`` and ``neutral`` (N_PROXY, 3) proxy vertices in the world frame (metres); ``deltas`` (52, N_PROXY,
    3) the shapes at weight 1; ``photo_weights`` (52,) the photo's estimated expression; ``triangles`` (F, 3)
    oriented proxy triangles; ``hinge`` the jaw hinge point (world metres)."""

    photo: np.ndarray
    neutral: np.ndarray
    deltas: np.ndarray
    photo_weights: np.ndarray
    triangles: np.ndarray
    hinge: np.ndarray
    jaw_weight: np.ndarray
    estimate: str = "prior"

    def proxy_at(self, weights: np.ndarray) -> np.ndarray:
        """(N_PROXY, 3) proxy at ARKit weights (52,)."""
        return self.neutral + np.tensordot(np.asarray(weights, dtype=np.float64), self.deltas, axes=1)

    @property
    def measures(self) -> Measures:
        return Measures.of(self.neutral)

    def jaw_source_from_observed(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The jaw's rigid map from the proxy at ``weights`` to the proxy at the photo: x -> L @ x + o (world)."""
        m = self.measures
        lw, ow = jaw_transform(m, weights)
        lp, op = jaw_transform(m, self.photo_weights)
        lin = lp @ np.linalg.inv(lw)
        return lin, op - lin @ ow

    def to_json(self) -> dict:
        return {
            "format": EXPRESSION_FORMAT,
            "format_version": EXPRESSION_VERSION,
            "frame": "world (metres, +Y up, face toward +Z, +X = subject's left)",
            "photo_weights": to_dict(self.photo_weights),
            "estimate": self.estimate,
            "note": (
                "All-zero ARKit weights are the neutral face; the photo is reproduced at photo_weights. The "
                "estimate compares landmark ratios with authored neutral priors (engine/rig/neutral.py); edit "
                "photo_weights and set estimate to 'user' to override it."
            ),
            "jaw_open_deg": JAW_OPEN_DEG,
            "hinge_world_m": np.round(self.hinge, 6).tolist(),
            "neutral_proxy_world_m": np.round(self.neutral, 7).tolist(),
            "proxy": {
                "vertices": T.N_PROXY,
                "layout": "mediapipe 468 + 2 iris centres + 2 x 16 eye-disc ring (engine/rig/topology.py)",
            },
        }


def build_rig(
    landmarks_world: np.ndarray,
    photo_weights: dict | None = None,
    estimate: str | None = None,
    neutral_hint: np.ndarray | None = None,
) -> FaceRig:
    """The rig of a face from its 478 mediapipe landmarks in the world frame. Without ``photo_weights`` the
    photo's expression is estimated (:mod:`engine.rig.neutral`); the shapes are authored on the neutral face, found
    as the fixed point neutral = photo - sum(w * shapes(neutral)). ``estimate`` labels where given weights came
    from and ``neutral_hint`` (N_PROXY, 3) starts the fixed point (an ``expression.json`` records both)."""
    lm = np.asarray(landmarks_world, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < 478 or lm.shape[1] != 3:
        raise BundleError(f"expected 478 landmarks of 3 coordinates, got {lm.shape}")
    photo = T.proxy_positions(lm)
    given = photo_weights is not None
    w = to_vector(photo_weights) if given else np.zeros(N_SHAPES)
    neutral = photo
    if neutral_hint is not None and np.shape(neutral_hint) == photo.shape:
        neutral = np.asarray(neutral_hint, dtype=np.float64)
    if not given:
        for _ in range(NEUTRAL_ITERATIONS):
            deltas = author_shapes(neutral, photo)
            w = estimate_photo_weights(photo, deltas)
            neutral = photo - np.tensordot(w, deltas, axes=1)
    neutral, deltas = _fixed_point(photo, w, neutral)
    return FaceRig(
        photo=photo,
        neutral=neutral,
        deltas=deltas,
        photo_weights=w,
        triangles=T.oriented_triangles(neutral),
        hinge=Measures.of(neutral).hinge,
        jaw_weight=jaw_weights(neutral, photo),
        estimate=estimate or ("user" if given else "prior"),
    )


def _fixed_point(photo: np.ndarray, w: np.ndarray, start: np.ndarray, tol_m: float = 1e-6, max_iter: int = 24):
    """neutral = photo - sum(w * shapes(neutral)), iterated from ``start`` to ``tol_m``; returns it and its shapes
    (region memberships taken on the photo's face, so the map is smooth and the iteration contracts)."""
    neutral = start
    for _ in range(max_iter):
        deltas = author_shapes(neutral, photo)
        nxt = photo - np.tensordot(w, deltas, axes=1)
        done = np.abs(nxt - neutral).max() < tol_m
        neutral = nxt
        if done:
            break
    deltas = author_shapes(neutral, photo)
    # exact at the photo: proxy_at(w) == photo (the shapes were authored on a neutral within tol_m of this one)
    return photo - np.tensordot(w, deltas, axes=1), deltas


def write_expression(path: Path, rig: FaceRig) -> None:
    Path(path).write_text(json.dumps(rig.to_json(), indent=2))


def read_expression(path: Path | None) -> dict:
    """``build_rig`` keyword arguments from an ``expression.json`` (photo weights, how they were found, the
    neutral proxy to start from); empty when there is none (``path`` None or absent). Anything else that is not a
    well-formed expression file of a version this engine reads is a one-line BundleError."""
    if path is None or not Path(path).is_file():
        return {}
    path = Path(path)
    name = f"{bundle_label(path.parent)}: {short(path.name, 40)}"
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != EXPRESSION_FORMAT:
        raise BundleError(f"{name} is not a Likeness expression file", "rebuild the avatar")
    version = data.get("format_version", EXPRESSION_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= EXPRESSION_VERSION:
        raise BundleError(
            f"{name} is expression format version {short(version)}; this engine reads {EXPRESSION_VERSION}",
            "rebuild the avatar",
        )
    weights = data.get("photo_weights")
    if not isinstance(weights, dict) or not all(_is_weight(v) for k, v in weights.items() if k in ARKIT_NAMES):
        raise BundleError(f"{name}: photo_weights must map ARKit names to weights 0..1", "rebuild the avatar")
    out = {
        "photo_weights": {k: float(v) for k, v in weights.items() if k in ARKIT_NAMES},
        "estimate": str(data.get("estimate", "user")),
    }
    if "neutral_proxy_world_m" in data:
        try:
            hint = np.asarray(data["neutral_proxy_world_m"], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            hint = np.full(1, np.nan)
        if not np.isfinite(hint).all():
            raise BundleError(f"{name}: neutral_proxy_world_m is not finite numbers", "rebuild the avatar")
        if hint.shape == (T.N_PROXY, 3):  # another layout (an older rig) is ignored, as build_rig would
            out["neutral_hint"] = hint
    return out


def _is_weight(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and 0.0 <= v <= 1.0
