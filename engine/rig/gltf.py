"""glTF 2.0 morph targets for the head GLB: the 52 ARKit shapes as sparse POSITION targets, named in
``mesh.extras.targetNames`` (what glTF-Blender-IO and three.js read as shape-key / morph names), with the photo's
expression as the mesh's default ``weights``. The base POSITION becomes the neutral face.

Pure bytes in, bytes out; :func:`read_glb` is the matching reader the tests use to validate a file."""

from __future__ import annotations

import json
import struct

import numpy as np

GLB_MAGIC, JSON_CHUNK, BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942
FLOAT, UNSIGNED_INT = 5126, 5125


def read_glb(data: bytes) -> tuple[dict, bytearray]:
    """(json, binary chunk) of a GLB."""
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2:
        raise ValueError("not a glTF 2.0 binary")
    off, gltf, binary = 12, None, bytearray()
    while off < length:
        clen, ctype = struct.unpack_from("<II", data, off)
        chunk = data[off + 8 : off + 8 + clen]
        if ctype == JSON_CHUNK:
            gltf = json.loads(chunk.decode("utf-8"))
        elif ctype == BIN_CHUNK:
            binary = bytearray(chunk)
        off += 8 + clen
    if gltf is None:
        raise ValueError("GLB without a JSON chunk")
    return gltf, binary


def write_glb(gltf: dict, binary: bytes) -> bytes:
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    binary = bytes(binary) + b"\0" * (-len(binary) % 4)
    gltf_len = 12 + 8 + len(js) + (8 + len(binary) if binary else 0)
    out = struct.pack("<III", GLB_MAGIC, 2, gltf_len) + struct.pack("<II", len(js), JSON_CHUNK) + js
    if binary:
        out += struct.pack("<II", len(binary), BIN_CHUNK) + binary
    return out


def _append(binary: bytearray, gltf: dict, raw: bytes) -> int:
    """Append ``raw`` to the binary chunk as a new buffer view; returns its index."""
    binary.extend(b"\0" * (-len(binary) % 4))
    gltf.setdefault("bufferViews", []).append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(raw)})
    binary.extend(raw)
    return len(gltf["bufferViews"]) - 1


def accessor_array(gltf: dict, binary: bytes, index: int) -> np.ndarray:
    """The float VEC3 / scalar data of an accessor, sparse substitution applied."""
    acc = gltf["accessors"][index]
    ncomp = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc["type"]]
    dtype = {FLOAT: np.float32, UNSIGNED_INT: np.uint32, 5123: np.uint16, 5121: np.uint8}[acc["componentType"]]
    out = np.zeros((acc["count"], ncomp), dtype=dtype)
    if "bufferView" in acc:
        bv = gltf["bufferViews"][acc["bufferView"]]
        start = bv.get("byteOffset", 0) + acc.get("byteOffset", 0)
        stride = bv.get("byteStride", 0) or ncomp * np.dtype(dtype).itemsize
        raw = np.frombuffer(
            binary, dtype=np.uint8, count=stride * (acc["count"] - 1) + ncomp * np.dtype(dtype).itemsize, offset=start
        )
        rows = np.lib.stride_tricks.as_strided(raw, (acc["count"], ncomp * np.dtype(dtype).itemsize), (stride, 1))
        out = np.ascontiguousarray(rows).view(dtype).reshape(acc["count"], ncomp)
    sparse = acc.get("sparse")
    if sparse:
        iv, vv = sparse["indices"], sparse["values"]
        ib = gltf["bufferViews"][iv["bufferView"]]
        idt = {UNSIGNED_INT: np.uint32, 5123: np.uint16, 5121: np.uint8}[iv["componentType"]]
        idx = np.frombuffer(
            binary, dtype=idt, count=sparse["count"], offset=ib.get("byteOffset", 0) + iv.get("byteOffset", 0)
        )
        vb = gltf["bufferViews"][vv["bufferView"]]
        vals = np.frombuffer(
            binary, dtype=dtype, count=sparse["count"] * ncomp, offset=vb.get("byteOffset", 0) + vv.get("byteOffset", 0)
        )
        out = out.copy()
        out[idx.astype(np.int64)] = vals.reshape(-1, ncomp)
    return out if ncomp > 1 else out[:, 0]


def add_morph_targets(glb: bytes, names, basis: np.ndarray, deltas: np.ndarray, default_weights: np.ndarray) -> bytes:
    """The GLB with its (single) mesh's POSITION replaced by ``basis`` (V, 3) and one sparse morph target per
    shape (``deltas`` (K, V, 3)), named ``names``, default weights ``default_weights`` (K,)."""
    gltf, binary = read_glb(glb)
    if len(gltf.get("meshes", [])) != 1:
        raise ValueError("expected exactly one mesh in the head GLB")
    mesh = gltf["meshes"][0]
    basis = np.ascontiguousarray(basis, dtype=np.float32)
    for prim in mesh["primitives"]:
        pos = gltf["accessors"][prim["attributes"]["POSITION"]]
        if pos["count"] != len(basis):
            raise ValueError(f"the GLB has {pos['count']} vertices, the shape keys {len(basis)}")
        bv = gltf["bufferViews"][pos["bufferView"]] if "bufferView" in pos else None
        if (
            bv is not None
            and not bv.get("byteStride")
            and bv["byteLength"] == basis.nbytes
            and not pos.get("byteOffset")
        ):
            start = bv.get("byteOffset", 0)  # a tight view of exactly these positions: overwrite in place
            binary[start : start + basis.nbytes] = basis.tobytes()
        else:
            pos["bufferView"] = _append(binary, gltf, basis.tobytes())
            pos["byteOffset"] = 0
        pos["min"], pos["max"] = basis.min(0).tolist(), basis.max(0).tolist()
        pos.pop("sparse", None)
        targets = []
        for d in np.asarray(deltas, dtype=np.float32):
            idx = np.nonzero(np.any(d != 0, axis=1))[0].astype(np.uint32)
            if len(idx) == 0:
                idx = np.zeros(1, dtype=np.uint32)
            vals = np.ascontiguousarray(d[idx], dtype=np.float32)
            acc = {
                "componentType": FLOAT,
                "count": len(basis),
                "type": "VEC3",
                "min": np.minimum(vals.min(0), 0.0).tolist(),
                "max": np.maximum(vals.max(0), 0.0).tolist(),
                "sparse": {
                    "count": len(idx),
                    "indices": {"bufferView": _append(binary, gltf, idx.tobytes()), "componentType": UNSIGNED_INT},
                    "values": {"bufferView": _append(binary, gltf, vals.tobytes())},
                },
            }
            gltf["accessors"].append(acc)
            targets.append({"POSITION": len(gltf["accessors"]) - 1})
        prim["targets"] = targets
    mesh["weights"] = [float(w) for w in default_weights]
    mesh.setdefault("extras", {})["targetNames"] = list(names)
    gltf["buffers"][0]["byteLength"] = len(binary) + (-len(binary) % 4)
    return write_glb(gltf, binary)
