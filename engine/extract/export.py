"""Write the head mesh as GLB (glTF 2.0, PBR base colour texture) and OBJ + MTL, and images/videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_glb(path: Path, verts, faces, uv, normals, texture: np.ndarray) -> None:
    import trimesh
    from trimesh.visual.material import PBRMaterial

    mat = PBRMaterial(
        name="likeness_head", baseColorTexture=Image.fromarray(texture), metallicFactor=0.0, roughnessFactor=0.8
    )
    mesh = trimesh.Trimesh(
        verts, faces, vertex_normals=normals, visual=trimesh.visual.TextureVisuals(uv=uv, material=mat), process=False
    )
    scene = trimesh.Scene()
    scene.add_geometry(mesh, node_name="likeness_head", geom_name="likeness_head")
    Path(path).write_bytes(scene.export(file_type="glb"))


def write_obj(path: Path, verts, faces, uv, normals, texture_name: str) -> None:
    """OBJ with one material whose map_Kd is ``texture_name`` (beside it); indices shared by v/vt/vn."""
    path = Path(path)
    mtl = path.with_suffix(".mtl")
    mtl.write_text(f"newmtl likeness_head\nKd 1 1 1\nKa 0 0 0\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {texture_name}\n")
    lines = [f"# Likeness head\nmtllib {mtl.name}\no likeness_head\n"]
    lines.append("".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in verts))
    lines.append("".join(f"vt {u:.6f} {v:.6f}\n" for u, v in uv))
    lines.append("".join(f"vn {x:.5f} {y:.5f} {z:.5f}\n" for x, y, z in normals))
    lines.append("usemtl likeness_head\ns 1\n")
    f1 = faces + 1
    lines.append("".join(f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}\n" for a, b, c in f1))
    path.write_text("".join(lines))


def write_png(path: Path, img: np.ndarray) -> None:
    Image.fromarray(img).save(path, optimize=False, compress_level=4)


def to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def rgba_u8(render: dict) -> np.ndarray:
    """Premultiplied render -> straight-alpha RGBA uint8 (what PNG viewers and Blender expect)."""
    a = render["alpha"][..., None]
    straight = np.where(a > 1e-4, render["rgb"] / np.maximum(a, 1e-4), 0.0)
    return to_u8(np.concatenate([straight, a], -1))


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = 24) -> None:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    gen = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=2,
        output_params=["-crf", "20"],
    )
    gen.send(None)
    for f in frames:
        gen.send(np.ascontiguousarray(f[..., :3]))
    gen.close()


def write_quad_obj(path: Path, verts: np.ndarray, quads: np.ndarray, uv: np.ndarray, quad_uv: np.ndarray) -> None:
    """A quad mesh with per-corner UVs as OBJ (1-based; no material)."""
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in np.asarray(verts, np.float64)]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in np.asarray(uv, np.float64)]
    for q, t in zip(np.asarray(quads) + 1, np.asarray(quad_uv) + 1, strict=True):
        lines.append("f " + " ".join(f"{a}/{b}" for a, b in zip(q, t, strict=True)))
    Path(path).write_text("\n".join(lines) + "\n")


def over_grey(rgba: np.ndarray) -> np.ndarray:
    """RGBA uint8 (H, W, 4) composited over mid grey: RGB uint8 (H, W, 3), e.g. for an MP4."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3] * a + 128.0 * (1.0 - a)).astype(np.uint8)
