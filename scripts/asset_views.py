"""Render an asset's head.glb (all parts, neutral or with its default weights) from orbit yaws with the engine's
rasteriser: textured (each part from its own material's baseColor texture: the atlas, the hair's hair.png), lit
from the camera, into one contact sheet PNG; and the UV layout over the atlas (the parts on it).

    python scripts/asset_views.py BUNDLE/asset [-o sheet.png] [--uv uv.png] [--size 384] [--posed]
                                  [--subdiv 0|1|2] [--shading texture|clay|normalmap|compare] [--yaws 0,45]

``--subdiv K`` renders head_subdK.glb; ``--shading clay`` grey with the vertex normals (interpolated) lit from the
upper left, ``normalmap`` the same with the GLB's normal map (its TANGENT frames, glTF's decoding), ``compare`` a
row of each (texture, clay, normal map); a .glb path renders that file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.conventions import Intrinsics, orbit_camera_gl, project_points  # noqa: E402
from engine.extract.raster import rasterize  # noqa: E402
from engine.rig.gltf import accessor_array, read_glb  # noqa: E402

YAWS = (0, 45, -45, 90, -90, 180)


def _image(g: dict, binary, index: int) -> np.ndarray:
    import io

    bv = g["bufferViews"][g["images"][index]["bufferView"]]
    return np.asarray(Image.open(io.BytesIO(bytes(binary[bv["byteOffset"] : bv["byteOffset"] + bv["byteLength"]]))))


def load_parts(glb: Path, posed: bool) -> tuple[list[dict], np.ndarray]:
    """Each mesh's positions (N, 3), uv (N, 2) glTF (v down), tris, normals, tangents (N, 4) or None, its colour
    texture (H, W, 3) uint8 (its material's baseColorTexture, else the atlas) and that image's index, its normal
    map (H, W, 3) uint8 or None; and the atlas (H, W, 3) uint8 (image 0)."""
    g, binary = read_glb(glb.read_bytes())
    images: dict[int, np.ndarray] = {}

    def image(index: int) -> np.ndarray:
        if index not in images:
            images[index] = _image(g, binary, index)[..., :3]
        return images[index]

    parts = []
    for mesh in g["meshes"]:
        prim = mesh["primitives"][0]
        pos = accessor_array(g, binary, prim["attributes"]["POSITION"]).astype(np.float64)
        if posed and "targets" in prim:
            for w, tgt in zip(mesh["weights"], prim["targets"], strict=True):
                pos = pos + w * accessor_array(g, binary, tgt["POSITION"])
        uv = accessor_array(g, binary, prim["attributes"]["TEXCOORD_0"]).astype(np.float64)
        tris = accessor_array(g, binary, prim["indices"]).astype(np.int64).reshape(-1, 3)
        attrs = prim["attributes"]
        nrm = accessor_array(g, binary, attrs["NORMAL"]).astype(np.float64)
        tan = accessor_array(g, binary, attrs["TANGENT"]).astype(np.float64) if "TANGENT" in attrs else None
        mat = g["materials"][prim["material"]] if "material" in prim else {}
        nmap = None
        if "normalTexture" in mat:
            nmap = image(g["textures"][mat["normalTexture"]["index"]]["source"])
        base = mat.get("pbrMetallicRoughness", {}).get("baseColorTexture")
        source = g["textures"][base["index"]]["source"] if base else 0
        parts.append({"name": mesh["name"], "pos": pos, "uv": uv, "tris": tris, "normals": nrm, "tangents": tan,
                      "texture": image(source), "texture_source": source, "normal_map": nmap})  # fmt: skip
    return parts, image(0)


LIGHT = np.array([-0.45, 0.55, 0.7]) / np.linalg.norm([-0.45, 0.55, 0.7])
"""Clay shading's light (world, from the upper left front), fixed to the head, not the camera."""


def _texel(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return img[np.clip((uv[:, 1] * h).astype(int), 0, h - 1), np.clip((uv[:, 0] * w).astype(int), 0, w - 1)]


def shaded_normals(part: dict, t: np.ndarray, b: np.ndarray, tuv: np.ndarray, use_map: bool) -> np.ndarray:
    """(M, 3) unit shading normals at M pixels (triangle vertex ids ``t`` (M, 3), barycentrics ``b`` (M, 3, 1)):
    the interpolated vertex normal, or with the normal map decoded as glTF does (normalize(x T + y B + z N),
    B = w cross(N, T))."""
    n = (b * part["normals"][t]).sum(1)
    n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)
    if not use_map or part["tangents"] is None or part["normal_map"] is None:
        return n
    tan = (b * part["tangents"][t]).sum(1)
    tt = tan[:, :3] - (tan[:, :3] * n).sum(1, keepdims=True) * n
    tt /= np.linalg.norm(tt, axis=1, keepdims=True).clip(1e-12)
    bt = np.where(tan[:, 3:] < 0, -1.0, 1.0) * np.cross(n, tt)
    c = _texel(part["normal_map"], tuv).astype(np.float64) / 255.0 * 2.0 - 1.0
    m = c[:, :1] * tt + c[:, 1:2] * bt + c[:, 2:3] * n
    return m / np.linalg.norm(m, axis=1, keepdims=True).clip(1e-12)


def render_shaded(parts: list[dict], yaw: float, size: int, use_map: bool, dist: float = 0.6) -> np.ndarray:
    """Grey clay with the interpolated normals (``use_map``: and each part's normal map), lit by LIGHT."""
    c2w = orbit_camera_gl(yaw, 0.0, dist)
    f = size * 1.6
    intr = Intrinsics(f, f, size / 2, size / 2, size, size)
    out = np.full((size, size, 3), 60, np.uint8)
    zbest = np.full((size, size), np.inf)
    for p in parts:
        xy, z = project_points(p["pos"], c2w, intr)
        fid, bary = rasterize(xy, z, p["tris"], size, size)
        hit = fid >= 0
        if not hit.any():
            continue
        t = p["tris"][fid[hit]]
        b = bary[hit][:, :, None].astype(np.float64)
        zz = (b[:, :, 0] * z[t]).sum(1)
        front = zz < zbest[hit]
        tuv = (b * p["uv"][t]).sum(1)
        n = shaded_normals(p, t, b, tuv, use_map)
        grey = 40.0 + 200.0 * np.clip(n @ LIGHT, 0.0, 1.0)
        px = np.argwhere(hit)[front]
        zbest[px[:, 0], px[:, 1]] = zz[front]
        out[px[:, 0], px[:, 1]] = np.clip(grey[front], 0, 255).astype(np.uint8)[:, None]
    return out


def render(parts: list[dict], yaw: float, size: int, dist: float = 0.6) -> np.ndarray:
    """(size, size, 3) uint8: the parts from ``yaw`` deg at ``dist`` m, each coloured from its own texture,
    flat-shaded by the facing of the camera."""
    pos = np.concatenate([p["pos"] for p in parts])
    uv = np.concatenate([p["uv"] for p in parts])
    offs = np.cumsum([0] + [len(p["pos"]) for p in parts])
    tris = np.concatenate([p["tris"] + o for p, o in zip(parts, offs[:-1], strict=True)])
    c2w = orbit_camera_gl(yaw, 0.0, dist)
    f = size * 1.6
    intr = Intrinsics(f, f, size / 2, size / 2, size, size)
    xy, z = project_points(pos, c2w, intr)
    fid, bary = rasterize(xy, z, tris, size, size)
    out = np.full((size, size, 3), 60, np.uint8)
    hit = fid >= 0
    t = tris[fid[hit]]
    b = bary[hit][:, :, None]
    tuv = (b * uv[t]).sum(1)
    part = np.searchsorted(np.cumsum([len(p["tris"]) for p in parts]), fid[hit], side="right")
    col = np.zeros((len(tuv), 3))
    for k, p in enumerate(parts):
        on = part == k
        col[on] = _texel(p["texture"], tuv[on])
    n = np.cross(pos[t[:, 1]] - pos[t[:, 0]], pos[t[:, 2]] - pos[t[:, 0]])
    n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)
    view = c2w[:3, 2]
    shade = 0.35 + 0.65 * np.abs(n @ view)
    out[hit] = np.clip(col * shade[:, None], 0, 255).astype(np.uint8)
    return out


def uv_sheet(parts: list[dict], atlas: np.ndarray, size: int = 1024) -> np.ndarray:
    """The atlas with the UV triangles of the parts textured from it (not the hair: its disc is hair.png's)."""
    img = Image.fromarray(atlas).resize((size, size)).convert("RGB")
    d = ImageDraw.Draw(img)
    for p in parts:
        if p["texture_source"] != 0:
            continue
        q = p["uv"] * size
        for a, b, c in p["tris"]:
            d.line([tuple(q[a]), tuple(q[b]), tuple(q[c]), tuple(q[a])], fill=(0, 255, 0), width=1)
    return np.asarray(img)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("asset", type=Path)
    ap.add_argument("-o", "--output", type=Path)
    ap.add_argument("--uv", type=Path)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--posed", action="store_true", help="apply the mesh's default morph weights")
    ap.add_argument("--subdiv", type=int, choices=(0, 1, 2), default=0, help="render head_subdK.glb")
    ap.add_argument("--shading", choices=("texture", "clay", "normalmap", "compare"), default="texture")
    ap.add_argument("--yaws", help="comma-separated yaws in degrees (default 0,45,-45,90,-90,180)")
    a = ap.parse_args()
    name = "head.glb" if a.subdiv == 0 else f"head_subd{a.subdiv}.glb"
    glb = a.asset if a.asset.suffix == ".glb" else a.asset / name
    parts, atlas = load_parts(glb, a.posed)
    yaws = [float(y) for y in a.yaws.split(",")] if a.yaws else YAWS
    rows = []
    if a.shading in ("texture", "compare"):
        rows.append(np.concatenate([render(parts, y, a.size) for y in yaws], 1))
    for mode, use_map in (("clay", False), ("normalmap", True)):
        if a.shading in (mode, "compare"):
            rows.append(np.concatenate([render_shaded(parts, y, a.size, use_map) for y in yaws], 1))
    sheet = np.concatenate(rows, 0)
    out = a.output or glb.with_name("views.png")
    Image.fromarray(sheet).save(out)
    print(out)
    if a.uv:
        Image.fromarray(uv_sheet(parts, atlas)).save(a.uv)
        print(a.uv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
