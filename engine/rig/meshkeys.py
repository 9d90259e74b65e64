"""The extracted mesh carries the rig: its 52 shape keys, bound to the face proxy.

Each mesh vertex (world metres, at the photo's expression) is bound to the *photo* proxy (nearest triangle,
barycentric coordinates, offset) and carried forward by the same rule the neural render's warp inverts: the
surface map near the face, the jaw's rigid motion inside the chin, the head's rigid frame far away. The basis is
the mesh at all-zero weights (neutral); shape key k is the mesh at weight 1 of shape k alone, as a delta from the
basis -- so Blender's linear mix of shape keys matches the neural render to first order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.io.manifest import BUNDLE_FILES
from engine.rig.arkit import ARKIT_NAMES, N_SHAPES
from engine.rig.deform import OUTSIDE_FAR, WarpSpec, finder_for, warp_with_binding
from engine.rig.rig import FaceRig

SHAPE_KEYS_FILE = BUNDLE_FILES["shape_keys"]
SHAPE_KEYS_FORMAT = "likeness-shape-keys"
MIN_DELTA_M = 1e-6
"""Deltas shorter than this (metres) are stored as zero (sparse morph targets)."""


@dataclass(frozen=True)
class ShapeKeys:
    """``basis`` (V, 3) the neutral mesh and ``deltas`` (52, V, 3) per ARKit shape, world metres, float32;
    ``default_weights`` (52,) the photo's expression (basis + deltas @ defaults reproduces the extracted mesh)."""

    basis: np.ndarray
    deltas: np.ndarray
    default_weights: np.ndarray

    def mesh_at(self, weights: np.ndarray) -> np.ndarray:
        return self.basis + np.tensordot(np.asarray(weights, dtype=np.float32), self.deltas, axes=1)


def forward_spec(rig: FaceRig, weights: np.ndarray) -> WarpSpec:
    """Photo -> expressed: the warp with the two proxies' roles swapped (binds to the photo proxy)."""
    lin, off = rig.jaw_source_from_observed(weights)
    inv = np.linalg.inv(lin)
    return WarpSpec(
        observed=rig.photo,
        source=rig.proxy_at(weights),
        triangles=rig.triangles,
        jaw_weight=rig.jaw_weight,
        jaw_linear=inv,
        jaw_offset=-inv @ off,
    )


def mesh_shape_keys(rig: FaceRig, verts_world: np.ndarray) -> ShapeKeys:
    """Shape keys of a mesh (V, 3) extracted from the field (world metres, photo expression)."""
    v = np.asarray(verts_world, dtype=np.float64)
    lo = np.minimum(rig.photo.min(0), rig.neutral.min(0)) - OUTSIDE_FAR
    hi = np.maximum(rig.photo.max(0), rig.neutral.max(0)) + OUTSIDE_FAR
    near = np.nonzero(((v >= lo) & (v <= hi)).all(1))[0]
    p = v[near]
    zero = forward_spec(rig, np.zeros(N_SHAPES))
    tri, bary = finder_for(zero).query(p, "fast")

    def moved(weights):
        q, _ = warp_with_binding(p, tri, bary, forward_spec(rig, weights), cavity=False, guard=False)
        return q

    basis = v.copy()
    basis[near] = moved(np.zeros(N_SHAPES))
    deltas = np.zeros((N_SHAPES, len(v), 3), dtype=np.float32)
    for k in range(N_SHAPES):
        e = np.zeros(N_SHAPES)
        e[k] = 1.0
        d = moved(e) - basis[near]
        d[np.linalg.norm(d, axis=1) < MIN_DELTA_M] = 0.0
        deltas[k, near] = d
    return ShapeKeys(basis.astype(np.float32), deltas, rig.photo_weights.astype(np.float32))


def write_shape_keys(path: Path, keys: ShapeKeys) -> None:
    """``shape_keys.npz`` for the Blender add-on (numpy only, no pickle): ``names`` (52,) ARKit names, ``basis``
    (V, 3), and per shape its non-zero vertices ``idx_<name>`` (int32) and ``delta_<name>`` (float32, metres),
    plus ``default_weights``; world frame (+Y up; Blender takes (x, -z, y))."""
    arrays = {
        "format": np.array(SHAPE_KEYS_FORMAT),
        "frame": np.array("world metres, +Y up, face toward +Z, +X = subject's left"),
        "names": np.array(ARKIT_NAMES),
        "basis": keys.basis.astype(np.float32),
        "default_weights": keys.default_weights.astype(np.float32),
    }
    for name, d in zip(ARKIT_NAMES, keys.deltas, strict=True):
        idx = np.nonzero(np.any(d != 0, axis=1))[0].astype(np.int32)
        arrays[f"idx_{name}"] = idx
        arrays[f"delta_{name}"] = d[idx].astype(np.float32)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def read_shape_keys(path: Path) -> ShapeKeys:
    with np.load(path, allow_pickle=False) as z:
        basis = z["basis"]
        deltas = np.zeros((N_SHAPES, len(basis), 3), dtype=np.float32)
        for k, name in enumerate(ARKIT_NAMES):
            deltas[k, z[f"idx_{name}"]] = z[f"delta_{name}"]
        return ShapeKeys(basis, deltas, z["default_weights"])
