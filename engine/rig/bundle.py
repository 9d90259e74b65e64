"""The rig in an avatar bundle: building it for the pipeline, writing its files, loading it for rendering.

Files: ``expression.json`` (the photo's estimated ARKit weights and how they were found), ``shape_keys.npz`` (the
mesh's 52 shape keys for the Blender add-on) and the morph targets inside ``head.glb``. A bundle without them
(built before the rig existed) still animates: the rig is rebuilt from ``landmarks.json``."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import BundleError
from engine.io.bundle import bundle_file, bundle_label, read_landmarks_world
from engine.rig.arkit import ARKIT_NAMES, to_dict
from engine.rig.gltf import add_morph_targets
from engine.rig.meshkeys import SHAPE_KEYS_FILE, ShapeKeys, mesh_shape_keys, write_shape_keys
from engine.rig.rig import EXPRESSION_FILE, FaceRig, build_rig, read_expression, write_expression

_RIGS: OrderedDict = OrderedDict()
_RIG_CACHE = 4
_LOCK = threading.Lock()


@dataclass(frozen=True)
class RiggedMesh:
    """The rig of a build and its mesh: ``keys.basis`` is the neutral mesh the bundle's GLB/OBJ hold."""

    rig: FaceRig
    keys: ShapeKeys


def rig_mesh(landmarks_world: np.ndarray, verts_world: np.ndarray) -> RiggedMesh:
    """Build the rig from the photo's landmarks and bind the extracted mesh (photo expression) to it."""
    rig = build_rig(landmarks_world)
    return RiggedMesh(rig, mesh_shape_keys(rig, verts_world))


def write_rig_files(folder: Path, rigged: RiggedMesh) -> dict:
    """Write ``expression.json`` and ``shape_keys.npz``, add the morph targets to ``folder/head.glb`` (written
    beforehand with ``rigged.keys.basis`` as positions), and return the manifest entries."""
    folder = Path(folder)
    write_expression(folder / EXPRESSION_FILE, rigged.rig)
    write_shape_keys(folder / SHAPE_KEYS_FILE, rigged.keys)
    glb = folder / "head.glb"
    k = rigged.keys
    glb.write_bytes(add_morph_targets(glb.read_bytes(), ARKIT_NAMES, k.basis, k.deltas, k.default_weights))
    return {
        "files": {"expression": EXPRESSION_FILE, "shape_keys": SHAPE_KEYS_FILE},
        "rig": {
            "shapes": "ARKit-52",
            "mesh": "head.glb/head.obj hold the neutral face; glTF morph targets carry the 52 shapes, default "
            "weights the photo's expression",
            "photo_weights": to_dict(rigged.rig.photo_weights, skip_zero=True),
            "estimate": rigged.rig.estimate,
        },
    }


def rig_for_avatar(avatar) -> FaceRig:
    """The rig of a loaded avatar (``avatar.path``, ``avatar.manifest``), cached per bundle. Its files --
    ``files.landmarks`` (required) and ``files.expression`` (optional: a bundle built before the rig has none) --
    are resolved inside the bundle by :func:`engine.io.bundle.bundle_file`; a bad one is a one-line BundleError."""
    path = Path(avatar.path)
    lm_file = bundle_file(path, avatar.manifest, "landmarks")
    expr = bundle_file(path, avatar.manifest, "expression", required=False)
    key = (str(path.resolve()), str(lm_file), _mtime(lm_file), str(expr), _mtime(expr))
    with _LOCK:
        if key in _RIGS:
            _RIGS.move_to_end(key)
            return _RIGS[key]
    landmarks, expression = read_landmarks_world(path, avatar.manifest), read_expression(expr)
    try:
        with np.errstate(all="ignore"):
            rig = build_rig(landmarks, **expression)
        ok = all(np.isfinite(a).all() for a in (rig.neutral, rig.deltas, rig.hinge, rig.jaw_weight))
    except (ValueError, IndexError, ArithmeticError, np.linalg.LinAlgError):
        ok = False
    if not ok:
        raise BundleError(
            f"{bundle_label(path)}: files.landmarks does not hold a face the expression rig can be built on",
            "rebuild the avatar",
        )
    with _LOCK:
        _RIGS[key] = rig
        while len(_RIGS) > _RIG_CACHE:
            _RIGS.popitem(last=False)
    return rig


def _mtime(p: Path | None) -> float:
    if p is None:
        return 0.0
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0
