"""The field driven by the asset's keys: the face proxy moved by the template's 52 ARKit morph targets (the ones in
``asset/head.glb``) instead of the proxy's own authored shapes, so the neural render and the asset's mesh move
alike under every key (issue 14: "the field's deformation follows the same template").

The warp itself is unchanged (:mod:`engine.rig.deform`: nearest proxy triangle, residual, jaw volume map, mouth
cavity, lid and lip guards); only where the proxy goes at given weights comes from the asset:

* each of the proxy's 468 mesh vertices is bound once to the closest point of the asset's skin as the photo posed
  it (the GLB's basis + its default weights); its delta under key k is the skin's delta there. Lip vertices bind
  only to skin on their own side of the mouth (lower lip: skin that jawOpen moves with the lower teeth, upper lip:
  skin it does not), so a closed mouth's lips do not swap;
* the eye discs (iris centre and ring, which fill the eye openings) follow their lids, interpolated between the
  upper and lower lid at their place in the opening -- so a blink collapses the disc onto the line where the lids
  meet -- plus the eyeball's own motion under the look keys;
* the chin's interior follows the rigid motion of the asset's lower teeth (a rigid fit of them at the observed
  weights onto them at the photo's).

The photo's expression is the asset's (its GLB's default weights): at those weights the warp is the identity, and
all-zero weights are the template's neutral face, as in the GLB. All positions are world metres."""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import BundleError
from engine.io.bundle import bundle_file, bundle_label
from engine.rig import topology as T
from engine.rig.arkit import ARKIT_NAMES, N_SHAPES
from engine.rig.bundle import rig_for_avatar
from engine.rig.deform import NearestTriangle
from engine.rig.gltf import accessor_array, read_glb
from engine.rig.rig import FaceRig

LIP_SIDE_SPLIT = 0.5
"""A skin vertex belongs to the lower lip's side when jawOpen moves it at least this fraction of the lower teeth's
mean motion."""

MAX_ACCESSOR_COUNT = 1 << 21
"""Elements one accessor of an asset GLB may hold (the skin has ~5k vertices, its subdivided levels ~80k)."""
MAX_TEMPLATE_VERTICES = 1 << 16
"""Largest template vertex id + 1 an asset may name (the template head has 4,706)."""

_RIGS: OrderedDict = OrderedDict()
_RIG_CACHE = 4
_LOCK = threading.Lock()


@dataclass(frozen=True)
class AssetKeys:
    """An asset GLB read back by template vertex id: ``basis`` (V, 3) neutral positions, ``deltas`` (52, V, 3) in
    ARKit order, ``default_weights`` (52,) the photo's expression, and per part ``parts[name] = (template ids,
    triangles in template ids)``; ``off_template`` the meshes that are not on the template (the hair):
    (name, positions, triangles)."""

    basis: np.ndarray
    deltas: np.ndarray
    default_weights: np.ndarray
    parts: dict
    off_template: list


def read_asset_keys(glb: Path | bytes) -> AssetKeys:
    """Read an asset GLB (engine/asset/glb_scene.py) back into template-indexed arrays (:class:`AssetKeys`);
    ValueError when it is not one."""
    data = glb if isinstance(glb, bytes | bytearray) else Path(glb).read_bytes()
    g, binary = read_glb(data)
    for acc in g.get("accessors", []):  # bounds before any array is allocated (an uploaded GLB is untrusted)
        count = acc.get("count", 0)
        if type(count) is not int or not 0 <= count <= MAX_ACCESSOR_COUNT:
            raise ValueError(f"an accessor holds {str(count)[:20]} elements (at most {MAX_ACCESSOR_COUNT})")
    meshes = []
    for mesh in g.get("meshes", []):
        prim = mesh["primitives"][0]
        if "_TEMPLATE_VERTEX" not in prim["attributes"]:
            raise ValueError(f"mesh {mesh.get('name')!r} has no _TEMPLATE_VERTEX attribute: not a Likeness asset")
        tv = np.rint(accessor_array(g, binary, prim["attributes"]["_TEMPLATE_VERTEX"])).astype(np.int64)
        tris = accessor_array(g, binary, prim["indices"]).astype(np.int64).reshape(-1, 3)
        meshes.append((mesh, prim, tv, tris))
    on = [m for m in meshes if (m[2] >= 0).all()]
    if not on:
        raise ValueError("the GLB holds no template mesh")
    n = int(max(m[2].max() for m in on)) + 1
    if n > MAX_TEMPLATE_VERTICES:
        raise ValueError(f"_TEMPLATE_VERTEX reaches {n}; the template has far fewer vertices")
    basis, deltas = np.zeros((n, 3)), np.zeros((N_SHAPES, n, 3))
    weights = np.zeros(N_SHAPES)
    parts, off = {}, []
    for mesh, prim, tv, tris in meshes:
        pos = accessor_array(g, binary, prim["attributes"]["POSITION"]).astype(np.float64)
        if (tv < 0).all():
            off.append((mesh["name"], pos, tris))
            continue
        basis[tv] = pos
        names = mesh.get("extras", {}).get("targetNames", [])
        for k, (name, tgt) in enumerate(zip(names, prim.get("targets", []), strict=True)):
            if name in ARKIT_NAMES:
                i = ARKIT_NAMES.index(name)
                deltas[i, tv] = accessor_array(g, binary, tgt["POSITION"])
                if k < len(mesh.get("weights", [])):
                    weights[i] = float(mesh["weights"][k])
        parts[mesh["name"]] = (np.unique(tv), tv[tris])
    return AssetKeys(basis, deltas, weights, parts, off)


def _part(keys: AssetKeys, prefix: str):
    for name, value in keys.parts.items():
        if name.startswith(prefix):
            return value
    raise ValueError(f"the asset has no {prefix} part")


def _rigid(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation taking points p onto q (N, 3) in the least-squares sense (Kabsch)."""
    cp, cq = p.mean(0), q.mean(0)
    u, _, vt = np.linalg.svd((p - cp).T @ (q - cq))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rot, cq - rot @ cp


@dataclass(frozen=True)
class AssetFaceRig(FaceRig):
    """A :class:`FaceRig` whose shapes are the asset's keys carried onto the proxy (module docstring): ``deltas``
    (52, N_PROXY, 3) world metres, ``photo_weights`` the asset's fitted expression; ``jaw_points`` (J, 3) the lower
    teeth at weights 0 and ``jaw_deltas`` (52, J, 3) their keys, for the chin interior's rigid map."""

    jaw_points: np.ndarray | None = None
    jaw_deltas: np.ndarray | None = None
    eyes: dict | None = None
    """Per proxy side ("right", "left"): (the eyeball's centre (3,), its front point where the iris is (3,), at
    weights 0, and that front point's deltas (52, 3)), for :meth:`gaze_offsets`."""

    def gaze_offsets(self, weights: np.ndarray, gaze: dict) -> np.ndarray:
        """(N_PROXY, 3) world offsets of the proxy at ``weights`` when the eyeballs look by ``gaze`` ({"eye_L" |
        "eye_R": (3, 3) rotation about the eyeball's centre, relative to the head}): each gazing eye's disc
        drops the look keys' eyeball motion (the front point's deltas) and takes the rotation's motion of the
        front point instead (the lids keep the keys'). The asset's eye bones, turned: docs/RIG.md "Eye bones"."""
        out = np.zeros((T.N_PROXY, 3))
        w = np.asarray(weights, dtype=np.float64)
        for side, bone in (("right", "eye_R"), ("left", "eye_L")):
            rot = gaze.get(bone)
            if rot is None:
                continue
            centre, front, deltas = self.eyes[side]
            move = np.asarray(rot, np.float64) @ (front - centre) + centre - front - w @ deltas
            n_ring = len(T.eye_loops()[side])
            out[[T.IRIS_CENTRE[side], *range(T.RING_START[side], T.RING_START[side] + n_ring)]] = move
        return out

    def jaw_source_from_observed(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.asarray(weights, dtype=np.float64)
        obs = self.jaw_points + np.tensordot(w, self.jaw_deltas, axes=1)
        src = self.jaw_points + np.tensordot(self.photo_weights, self.jaw_deltas, axes=1)
        return _rigid(obs, src)


def _interp_along(x: float, photo: np.ndarray, idx: list[int], values: np.ndarray) -> tuple[float, np.ndarray]:
    """The height of polyline ``idx`` (photo positions) at ``x`` and ``values`` (52, N_PROXY, 3) interpolated
    there (52, 3)."""
    idx = np.asarray(idx)[np.argsort(photo[idx, 0])]
    xs = photo[idx, 0]
    vals = np.stack([[np.interp(x, xs, values[k, idx, a]) for a in range(3)] for k in range(len(values))])
    return float(np.interp(x, xs, photo[idx, 1])), vals


def _disc_deltas(photo: np.ndarray, mesh_deltas: np.ndarray, eye_deltas: dict) -> np.ndarray:
    """(52, N_PROXY - N_MESH, 3) deltas of the eye discs' vertices: each interpolated between the upper and lower
    lid's deltas at its x, by its height between them in the photo, plus ``eye_deltas[side]`` (52, 3)."""
    c = T.contours()
    out = np.zeros((N_SHAPES, T.N_PROXY - T.N_MESH, 3))
    for side in ("right", "left"):
        n_ring = len(T.eye_loops()[side])
        for v in [T.IRIS_CENTRE[side], *range(T.RING_START[side], T.RING_START[side] + n_ring)]:
            x, y = photo[v, 0], photo[v, 1]
            y_up, d_up = _interp_along(x, photo, c[f"eye_{side}_upper"], mesh_deltas)
            y_dn, d_dn = _interp_along(x, photo, c[f"eye_{side}_lower"], mesh_deltas)
            f = float(np.clip((y - y_dn) / max(y_up - y_dn, 1e-9), 0.0, 1.0))
            out[:, v - T.N_MESH] = f * d_up + (1.0 - f) * d_dn + eye_deltas[side]
    return out


def _skin_binding(keys: AssetKeys, photo_expr: np.ndarray, proxy: np.ndarray):
    """Template ids (N_MESH, 3) and barycentric weights (N_MESH, 3) of the closest point of the posed skin to each
    proxy mesh vertex; lip vertices only on their own side of the mouth (:data:`LIP_SIDE_SPLIT`)."""
    ids, tris = _part(keys, "skin")
    posed = keys.basis + np.tensordot(photo_expr, keys.deltas, axes=1)
    jaw_i = ARKIT_NAMES.index("jawOpen")
    teeth_ids, _ = _part(keys, "teeth_lower")
    teeth_move = float(np.linalg.norm(keys.deltas[jaw_i, teeth_ids], axis=1).mean())
    jawness = np.linalg.norm(keys.deltas[jaw_i], axis=1) / max(teeth_move, 1e-9)
    lower_side = jawness[tris].mean(1) >= LIP_SIDE_SPLIT
    c = T.contours()
    lower = set(c["lip_inner_lower"] + c["lip_outer_lower"]) - set(c["lip_inner_upper"] + c["lip_outer_upper"])
    upper = set(c["lip_inner_upper"] + c["lip_outer_upper"]) - lower
    groups = {
        "lower": (np.array(sorted(lower)), lower_side),
        "upper": (np.array(sorted(upper)), ~lower_side),
        "rest": (np.array(sorted(set(range(T.N_MESH)) - lower - upper)), np.ones(len(tris), bool)),
    }
    out_t, out_b = np.zeros((T.N_MESH, 3), np.int64), np.zeros((T.N_MESH, 3))
    for verts, keep in groups.values():
        finder = NearestTriangle(posed, tris, keep)
        tri, bary = finder.query(proxy[verts], mode="exact")
        out_t[verts], out_b[verts] = tris[tri], bary
    return out_t, out_b


def build_asset_rig(keys: AssetKeys, proxy_rig: FaceRig) -> AssetFaceRig:
    """The proxy of ``proxy_rig`` (its photo positions, triangles and jaw mask) moved by the asset's ``keys``."""
    w = keys.default_weights
    photo = proxy_rig.photo
    tv, bary = _skin_binding(keys, w, photo[: T.N_MESH])
    mesh_deltas = np.einsum("nk,snkd->snd", bary, keys.deltas[:, tv])  # (52, N_MESH, 3)
    eye, eyes = {}, {}
    for side, part in (("right", "eye_R"), ("left", "eye_L")):
        e_ids, _ = _part(keys, part)
        pts = keys.basis[e_ids] + np.tensordot(w, keys.deltas[:, e_ids], axes=1)
        # the eyeball's motion at its front-most point, where the iris is
        front = e_ids[np.argsort(pts[:, 2])[-max(1, len(e_ids) // 50) :]]
        eye[side] = keys.deltas[:, front].mean(1)
        # the centre as the GLB's eye joint has it (engine.asset.glb_scene: the eyeball's vertex mean)
        eyes[side] = (keys.basis[e_ids].mean(0), keys.basis[front].mean(0), eye[side])
    full = np.concatenate([mesh_deltas, np.zeros((N_SHAPES, T.N_PROXY - T.N_MESH, 3))], axis=1)
    full[:, T.N_MESH :] = _disc_deltas(photo, full, eye)
    teeth_ids, _ = _part(keys, "teeth_lower")
    return AssetFaceRig(
        photo=photo,
        neutral=photo - np.tensordot(w, full, axes=1),
        deltas=full,
        photo_weights=w,
        triangles=proxy_rig.triangles,
        hinge=proxy_rig.hinge,
        jaw_weight=proxy_rig.jaw_weight,
        estimate="asset",
        jaw_points=keys.basis[teeth_ids],
        jaw_deltas=keys.deltas[:, teeth_ids],
        eyes=eyes,
    )


def has_asset(avatar) -> bool:
    """Whether a loaded avatar's bundle lists an asset GLB that is a file (not whether it can be read)."""
    path = Path(avatar.path)
    glb = bundle_file(path, avatar.manifest, "asset_glb", required=False)
    return glb is not None and glb.is_file()


def asset_rig_for_avatar(avatar) -> AssetFaceRig:
    """The asset-driven rig of a loaded avatar, cached per bundle; a one-line BundleError when the bundle has no
    asset (built without the prior, or before the asset existed) or its GLB cannot be read."""
    path = Path(avatar.path)
    glb = bundle_file(path, avatar.manifest, "asset_glb", required=False)
    if glb is None or not glb.is_file():
        raise BundleError(
            f"{bundle_label(path)} has no asset (asset/head.glb) whose keys could drive the field",
            "use the proxy rig, or make the asset first: likeness asset BUNDLE",
        )
    proxy_rig = rig_for_avatar(avatar)
    key = (str(glb.resolve()), glb.stat().st_mtime, id(proxy_rig))
    with _LOCK:
        if key in _RIGS:
            _RIGS.move_to_end(key)
            return _RIGS[key]
    try:
        rig = build_asset_rig(read_asset_keys(glb), proxy_rig)
    except (
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        RecursionError,
        OverflowError,
        struct.error,
    ) as e:
        raise BundleError(
            f"{bundle_label(path)}: asset/head.glb cannot drive the field ({e})", "rebuild the asset"
        ) from e
    with _LOCK:
        _RIGS[key] = rig
        while len(_RIGS) > _RIG_CACHE:
            _RIGS.popitem(last=False)
    return rig
