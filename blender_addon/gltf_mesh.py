"""Read the avatar's head mesh from a binary glTF (GLB): positions, normals, UVs, triangles, morph targets.

Pure Python + numpy (Blender ships numpy), no bpy, so it is unit-tested with plain pytest. It reads what glTF
allows for one triangle mesh -- any number of primitives, sparse or dense accessors, node transforms -- and
returns it in the *engine* world frame; ``scene_io`` converts to Blender axes. Anything else (Draco, meshopt,
non-triangle modes) raises :class:`GltfUnsupported`; the importer then falls back to Blender's glTF importer.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_NORMALISED_MAX = {np.int8: 127.0, np.uint8: 255.0, np.int16: 32767.0, np.uint16: 65535.0}


class GltfUnsupported(ValueError):
    """The file is valid glTF but uses a feature this reader does not implement."""


@dataclass
class MeshData:
    """A triangle mesh in the engine world frame (metres, +Y up, face toward +Z).

    ``uv`` has Blender's orientation (v up from the bottom: ``v = 1 - v_gltf``). ``morphs`` maps each morph
    target's name to per-vertex position offsets (N, 3), same frame; ``weights`` maps it to its default weight
    (the node's ``weights``, else the mesh's, else 0): for a Likeness head, the photo's own expression.
    """

    positions: np.ndarray  # (N, 3) float64
    triangles: np.ndarray  # (F, 3) int64
    normals: np.ndarray | None = None  # (N, 3)
    uv: np.ndarray | None = None  # (N, 2)
    morphs: dict[str, np.ndarray] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    name: str = "head"


def _chunks(data: bytes) -> tuple[dict, bytes]:
    if len(data) < 20 or data[:4] != b"glTF":
        raise ValueError("not a binary glTF (GLB) file")
    _, version, _ = struct.unpack_from("<III", data, 0)
    if version != 2:
        raise GltfUnsupported(f"glTF version {version}; only 2 is supported")
    offset, doc, binary = 12, None, b""
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from("<II", data, offset)
        body = data[offset + 8 : offset + 8 + length]
        if kind == 0x4E4F534A:  # JSON
            doc = json.loads(body.decode("utf-8"))
        elif kind == 0x004E4942:  # BIN
            binary = body
        offset += 8 + length
    if doc is None:
        raise ValueError("GLB without a JSON chunk")
    return doc, binary


class _Reader:
    def __init__(self, doc: dict, binary: bytes) -> None:
        self.doc, self.binary = doc, binary
        for ext in doc.get("extensionsRequired", []):
            raise GltfUnsupported(f"required extension {ext}")

    def _view(self, index: int) -> tuple[bytes, int, int]:
        view = self.doc["bufferViews"][index]
        buffer = self.doc["buffers"][view.get("buffer", 0)]
        if "uri" in buffer:
            raise GltfUnsupported("external buffers")
        start = view.get("byteOffset", 0)
        return self.binary, start, view.get("byteStride", 0)

    def _typed(self, view_index: int, byte_offset: int, dtype, width: int, count: int) -> np.ndarray:
        data, start, stride = self._view(view_index)
        item = np.dtype(dtype).itemsize * width
        start += byte_offset
        if stride and stride != item:
            rows = np.frombuffer(data, np.uint8, count=stride * (count - 1) + item, offset=start)
            rows = np.lib.stride_tricks.as_strided(rows, (count, item), (stride, 1))
            return np.ascontiguousarray(rows).view(dtype).reshape(count, width)
        return np.frombuffer(data, dtype, count=count * width, offset=start).reshape(count, width)

    def accessor(self, index: int) -> np.ndarray:
        acc = self.doc["accessors"][index]
        dtype = _COMPONENTS[acc["componentType"]]
        width, count = _WIDTH[acc["type"]], acc["count"]
        if "bufferView" in acc:
            out = self._typed(acc["bufferView"], acc.get("byteOffset", 0), dtype, width, count).astype(np.float64)
        else:
            out = np.zeros((count, width), np.float64)
        sparse = acc.get("sparse")
        if sparse:
            idx = sparse["indices"]
            rows = self._typed(
                idx["bufferView"], idx.get("byteOffset", 0), _COMPONENTS[idx["componentType"]], 1, sparse["count"]
            )[:, 0].astype(np.int64)
            val = sparse["values"]
            out[rows] = self._typed(val["bufferView"], val.get("byteOffset", 0), dtype, width, sparse["count"])
        if acc.get("normalized") and dtype in _NORMALISED_MAX:
            out = np.maximum(out / _NORMALISED_MAX[dtype], -1.0)
        return out


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], np.float64).reshape(4, 4).T  # glTF stores column-major
    t = np.array(node.get("translation", [0.0, 0.0, 0.0]))
    x, y, z, w = node.get("rotation", [0.0, 0.0, 0.0, 1.0])
    r = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    m = np.eye(4)
    m[:3, :3] = r * np.array(node.get("scale", [1.0, 1.0, 1.0]))
    m[:3, 3] = t
    return m


def _mesh_node(doc: dict) -> tuple[int, np.ndarray]:
    """The first node carrying a mesh, with its world matrix (walks the default scene)."""
    nodes = doc.get("nodes", [])
    scenes = doc.get("scenes") or [{"nodes": list(range(len(nodes)))}]
    stack = [(i, np.eye(4)) for i in scenes[doc.get("scene", 0)].get("nodes", [])]
    while stack:
        i, parent = stack.pop(0)
        world = parent @ _node_matrix(nodes[i])
        if "mesh" in nodes[i]:
            return i, world
        stack.extend((c, world) for c in nodes[i].get("children", []))
    if doc.get("meshes"):
        return -1, np.eye(4)
    raise ValueError("the GLB holds no mesh")


def read_glb(path: str | Path) -> MeshData:
    """The first mesh of a GLB (all its triangle primitives merged), in the engine world frame."""
    doc, binary = _chunks(Path(path).read_bytes())
    reader = _Reader(doc, binary)
    node_index, world = _mesh_node(doc)
    mesh = doc["meshes"][doc["nodes"][node_index]["mesh"] if node_index >= 0 else 0]
    names = list((mesh.get("extras") or {}).get("targetNames", []))
    positions, normals, uvs, tris, prim_morphs = [], [], [], [], []
    base = 0
    for prim in mesh["primitives"]:
        if prim.get("mode", 4) != 4:
            raise GltfUnsupported("only triangle primitives are supported")
        if prim.get("extensions"):
            raise GltfUnsupported(f"primitive extensions {sorted(prim['extensions'])}")
        attrs = prim["attributes"]
        pos = reader.accessor(attrs["POSITION"])
        n = len(pos)
        positions.append(pos)
        normals.append(reader.accessor(attrs["NORMAL"]) if "NORMAL" in attrs else None)
        uvs.append(reader.accessor(attrs["TEXCOORD_0"]) if "TEXCOORD_0" in attrs else None)
        idx = reader.accessor(prim["indices"])[:, 0] if "indices" in prim else np.arange(n, dtype=np.float64)
        tris.append(idx.astype(np.int64).reshape(-1, 3) + base)
        prim_morphs.append(
            {
                names[t] if t < len(names) else f"target_{t}": reader.accessor(target["POSITION"])
                for t, target in enumerate(prim.get("targets", []))
                if "POSITION" in target
            }
        )
        base += n
    morphs = {}  # a primitive without a target gets zero offsets for it
    for name in dict.fromkeys(k for pm in prim_morphs for k in pm):
        parts = [pm.get(name, np.zeros_like(p)) for pm, p in zip(prim_morphs, positions, strict=True)]
        morphs[name] = np.concatenate(parts)
    n_targets = max((len(p.get("targets", [])) for p in mesh["primitives"]), default=0)
    node = doc["nodes"][node_index] if node_index >= 0 else {}
    defaults = list(node.get("weights") or mesh.get("weights") or [])
    weights = {
        names[t] if t < len(names) else f"target_{t}": float(defaults[t]) if t < len(defaults) else 0.0
        for t in range(n_targets)
    }
    rot, trans = world[:3, :3], world[:3, 3]
    pos = np.concatenate(positions) @ rot.T + trans
    nrm = None
    if all(x is not None for x in normals):
        nrm = np.concatenate(normals) @ np.linalg.inv(rot).T
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    uv = None
    if all(x is not None for x in uvs):
        uv = np.concatenate(uvs)
        uv[:, 1] = 1.0 - uv[:, 1]
    return MeshData(
        positions=pos,
        triangles=np.concatenate(tris),
        normals=nrm,
        uv=uv,
        morphs={k: v @ rot.T for k, v in morphs.items()},
        weights={k: w for k, w in weights.items() if k in morphs},
        name=mesh.get("name") or "head",
    )
