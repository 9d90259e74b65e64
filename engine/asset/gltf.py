"""Write the asset as one GLB: a node and mesh per part, one texture atlas, the photo's camera, sparse ARKit
morph targets (names in ``mesh.extras.targetNames``, default weights the photo's expression), a custom
``_TEMPLATE_VERTEX`` attribute (template vertex id per seam-split vertex, as float; -1 on a vertex a subdivision
added), and a small armature (neck -> head -> eye_L, eye_R) every part is skinned to; optionally a normal map
(with the meshes' TANGENT attributes) and a metallicRoughness map beside the colour atlas, and parts with a colour
texture of their own (the hair).

Axes are the engine's world axes, which are glTF's (+Y up, the face toward +Z); metres. Pure: arrays in,
bytes out (engine.rig.gltf.read_glb reads it back)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.rig.gltf import FLOAT, UNSIGNED_INT, write_glb

ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
UNSIGNED_BYTE = 5121


@dataclass(frozen=True)
class MeshOut:
    """One part as glTF wants it. ``positions``/``normals`` (N, 3), ``uv`` (N, 2) with v up (flipped on
    write), ``tris`` (F, 3), ``template_vertex`` (N,), ``deltas`` (K, N, 3) morph targets or None, ``joint``
    the index (into the armature's joints) every vertex is bound to, or ``joint_weights`` (N, J) each vertex's
    weight on every joint (rows summing to 1, J <= 4; it replaces ``joint``), ``tangents`` (N, 4) glTF TANGENT
    (xyz unit, w the bitangent's sign, for v up UVs) or None, ``extras`` added to the mesh's extras."""

    name: str
    positions: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    tris: np.ndarray
    template_vertex: np.ndarray
    material: int
    joint: int
    deltas: np.ndarray | None = None
    tangents: np.ndarray | None = None
    extras: dict | None = None
    joint_weights: np.ndarray | None = None


@dataclass(frozen=True)
class Joint:
    """An armature joint at ``head_m`` (3,) world metres (no rotation), child of ``parent`` (-1: the root)."""

    name: str
    parent: int
    head_m: tuple[float, float, float]


@dataclass(frozen=True)
class CameraOut:
    """A perspective camera: ``cam2world`` (4, 4) gl axes (looks down -Z), ``yfov_rad``, ``aspect`` w / h."""

    name: str
    cam2world: np.ndarray
    yfov_rad: float
    aspect: float


class _Builder:
    def __init__(self) -> None:
        self.gltf: dict = {"asset": {"version": "2.0", "generator": "likeness asset"}, "buffers": [{}]}
        self.binary = bytearray()

    def view(self, raw: bytes, target: int | None = None) -> int:
        self.binary.extend(b"\0" * (-len(self.binary) % 4))
        bv = {"buffer": 0, "byteOffset": len(self.binary), "byteLength": len(raw)}
        if target is not None:
            bv["target"] = target
        self.gltf.setdefault("bufferViews", []).append(bv)
        self.binary.extend(raw)
        return len(self.gltf["bufferViews"]) - 1

    def accessor(self, acc: dict) -> int:
        self.gltf.setdefault("accessors", []).append(acc)
        return len(self.gltf["accessors"]) - 1

    def floats(self, a: np.ndarray, minmax: bool = False) -> int:
        a = np.ascontiguousarray(a, np.float32)
        kind = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}[1 if a.ndim == 1 else a.shape[1]]
        acc = {"bufferView": self.view(a.tobytes(), ARRAY_BUFFER), "componentType": FLOAT, "count": len(a)}
        acc["type"] = kind
        if minmax:
            acc["min"], acc["max"] = a.reshape(len(a), -1).min(0).tolist(), a.reshape(len(a), -1).max(0).tolist()
        return self.accessor(acc)

    def sparse_target(self, delta: np.ndarray) -> int:
        """A VEC3 accessor of ``len(delta)`` zeros with the non-zero rows of ``delta`` substituted sparsely."""
        d = np.asarray(delta, np.float32)
        idx = np.nonzero(np.any(d != 0, axis=1))[0].astype(np.uint32)
        if len(idx) == 0:
            idx = np.zeros(1, np.uint32)
        vals = np.ascontiguousarray(d[idx])
        lo, hi = vals.min(0), vals.max(0)
        if len(idx) < len(d):  # rows left out are zeros and count in the bounds
            lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        return self.accessor(
            {
                "componentType": FLOAT,
                "count": len(d),
                "type": "VEC3",
                "min": lo.tolist(),
                "max": hi.tolist(),
                "sparse": {
                    "count": len(idx),
                    "indices": {"bufferView": self.view(idx.tobytes()), "componentType": UNSIGNED_INT},
                    "values": {"bufferView": self.view(vals.tobytes())},
                },
            }
        )


def _matrix(m: np.ndarray) -> list[float]:
    return [float(x) for x in np.asarray(m, np.float64).T.reshape(-1)]  # glTF matrices are column-major


def build_glb(
    meshes: list[MeshOut],
    texture_png: bytes,
    materials: list[dict],
    camera: CameraOut | None,
    joints: list[Joint],
    target_names: list[str],
    default_weights: np.ndarray,
    normal_png: bytes | None = None,
    metallic_roughness_png: bytes | None = None,
    extra_pngs: dict[str, bytes] | None = None,
    skin_extras: dict | None = None,
) -> bytes:
    """The GLB bytes. ``materials``: each {"name", "roughness"} (all share the atlas; "normal": True to use the
    normal map), ``roughness`` the factor when there is no ``metallic_roughness_png`` (then 1, the map's G
    channel is the roughness); a material with "texture": NAME takes its colour from ``extra_pngs[NAME]`` instead
    (its own UVs, e.g. the hair's), with the constant roughness and no maps. Nodes are the meshes, then the camera,
    then the armature's root joint, all at the scene's root; ``skin_extras`` goes in the skin's extras."""
    b = _Builder()
    g = b.gltf
    g["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
    images = {"atlas": texture_png, "normal": normal_png, "metallic_roughness": metallic_roughness_png}
    images |= extra_pngs or {}
    tex_index = {}
    for name, png in images.items():
        if png is not None:
            g.setdefault("images", []).append({"bufferView": b.view(png), "mimeType": "image/png",
                                               "name": f"likeness_{name}"})  # fmt: skip
            g.setdefault("textures", []).append({"sampler": 0, "source": len(g["images"]) - 1})
            tex_index[name] = len(g["textures"]) - 1
    g["materials"] = []
    for m in materials:
        if "texture" in m:  # its own texture: no atlas maps
            pbr = {"baseColorTexture": {"index": tex_index[m["texture"]]}, "metallicFactor": 0.0,
                   "roughnessFactor": float(m["roughness"])}  # fmt: skip
            g["materials"].append({"name": m["name"], "pbrMetallicRoughness": pbr})
            continue
        pbr = {"baseColorTexture": {"index": tex_index["atlas"]}, "metallicFactor": 0.0}
        pbr["roughnessFactor"] = float(m["roughness"]) if "metallic_roughness" not in tex_index else 1.0
        if "metallic_roughness" in tex_index:
            pbr["metallicRoughnessTexture"] = {"index": tex_index["metallic_roughness"]}
        mat = {"name": m["name"], "pbrMetallicRoughness": pbr}
        if m.get("normal") and "normal" in tex_index:
            mat["normalTexture"] = {"index": tex_index["normal"], "scale": 1.0}
        g["materials"].append(mat)
    nodes: list[dict] = []
    g["meshes"] = []
    skinned = bool(joints)
    for mo in meshes:
        attrs = {
            "POSITION": b.floats(mo.positions, minmax=True),
            "NORMAL": b.floats(mo.normals / np.linalg.norm(mo.normals, axis=1, keepdims=True).clip(1e-12)),
            "TEXCOORD_0": b.floats(np.stack([mo.uv[:, 0], 1.0 - mo.uv[:, 1]], 1)),
            "_TEMPLATE_VERTEX": b.floats(mo.template_vertex.astype(np.float32)),
        }
        if mo.tangents is not None:
            tan = np.asarray(mo.tangents, np.float64)
            tan = np.c_[
                tan[:, :3] / np.linalg.norm(tan[:, :3], axis=1, keepdims=True).clip(1e-12),
                np.where(tan[:, 3] < 0, -1.0, 1.0),
            ]
            attrs["TANGENT"] = b.floats(tan)
        if skinned:
            n = len(mo.positions)
            j = np.zeros((n, 4), np.uint8)
            w = np.zeros((n, 4), np.float32)
            if mo.joint_weights is None:
                j[:, 0], w[:, 0] = mo.joint, 1.0
            else:  # each vertex's weights on joints 0..J-1, as glTF wants them (normalised, zero-weight slots 0)
                jw = np.asarray(mo.joint_weights, np.float64)
                jw = np.where(jw > 1e-4, jw, 0.0)
                jw = jw / jw.sum(1, keepdims=True)
                j[:, : jw.shape[1]] = np.where(jw > 0, np.arange(jw.shape[1]), 0)
                w[:, : jw.shape[1]] = jw
            attrs["JOINTS_0"] = b.accessor(
                {
                    "bufferView": b.view(j.tobytes(), ARRAY_BUFFER),
                    "componentType": UNSIGNED_BYTE,
                    "count": n,
                    "type": "VEC4",
                }
            )
            attrs["WEIGHTS_0"] = b.floats(w)
        idx = np.ascontiguousarray(mo.tris, np.uint32).reshape(-1)
        prim = {
            "attributes": attrs,
            "indices": b.accessor(
                {
                    "bufferView": b.view(idx.tobytes(), ELEMENT_ARRAY_BUFFER),
                    "componentType": UNSIGNED_INT,
                    "count": len(idx),
                    "type": "SCALAR",
                }
            ),
            "material": mo.material,
            "mode": 4,
        }
        mesh = {"name": mo.name, "primitives": [prim]}
        if mo.deltas is not None:
            prim["targets"] = [{"POSITION": b.sparse_target(d)} for d in mo.deltas]
            mesh["weights"] = [float(x) for x in default_weights]
            mesh["extras"] = {"targetNames": list(target_names)}
        if mo.extras:
            mesh.setdefault("extras", {}).update(mo.extras)
        g["meshes"].append(mesh)
        node = {"name": mo.name, "mesh": len(g["meshes"]) - 1}
        if skinned:
            node["skin"] = 0
        nodes.append(node)
    if camera is not None:
        g["cameras"] = [
            {
                "name": camera.name,
                "type": "perspective",
                "perspective": {
                    "yfov": float(camera.yfov_rad),
                    "aspectRatio": float(camera.aspect),
                    "znear": 0.01,
                    "zfar": 100.0,
                },
            }
        ]
        nodes.append({"name": camera.name, "camera": 0, "matrix": _matrix(camera.cam2world)})
    roots = list(range(len(nodes)))
    if skinned:
        first = len(nodes)
        for jt in joints:
            parent = np.zeros(3) if jt.parent < 0 else np.asarray(joints[jt.parent].head_m)
            nodes.append({"name": jt.name, "translation": (np.asarray(jt.head_m) - parent).tolist()})
        for k, jt in enumerate(joints):
            if jt.parent >= 0:
                nodes[first + jt.parent].setdefault("children", []).append(first + k)
            else:
                roots.append(first + k)
        inv = np.stack([np.eye(4) for _ in joints])
        inv[:, :3, 3] = -np.asarray([jt.head_m for jt in joints])
        inv_f = np.ascontiguousarray(inv.transpose(0, 2, 1), np.float32)  # column-major
        ibm = b.accessor(
            {"bufferView": b.view(inv_f.tobytes()), "componentType": FLOAT, "count": len(joints), "type": "MAT4"}
        )
        g["skins"] = [
            {
                "name": "likeness_armature",
                "inverseBindMatrices": ibm,
                "joints": list(range(first, first + len(joints))),
                "skeleton": first + [k for k, jt in enumerate(joints) if jt.parent < 0][0],
            }
        ]
        if skin_extras:
            g["skins"][0]["extras"] = skin_extras
    g["nodes"] = nodes
    g["scenes"] = [{"name": "likeness_asset", "nodes": roots}]
    g["scene"] = 0
    g["buffers"][0]["byteLength"] = len(b.binary) + (-len(b.binary) % 4)
    return write_glb(g, b.binary)
