"""Render textured head parts with bpy (the Blender module): Cycles on the CPU, or Workbench for speed.

Everything given here is in the GT frame (engine world axes: +Y up, face toward +Z); it is converted to
Blender's frame (Z up) with :func:`engine.conventions.engine_to_blender_matrix`. Camera matrices are gl
cam2world, which are Blender camera axes too. Only this module imports bpy."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.conventions import Intrinsics, engine_to_blender_matrix
from harness.heads import Part


@dataclass(frozen=True)
class RenderSettings:
    """How the ground truth is lit and rendered."""

    engine: str = "cycles"
    """cycles | workbench."""
    samples: int = 64
    """Cycles samples per pixel."""
    lighting: str = "studio"
    """studio (key + fill + rim area lights over a dim sky) | flat (uniform sky only: albedo-like)."""
    threads: int = 0
    """CPU threads for Cycles; 0 = all."""


def _to_blender(p: np.ndarray) -> np.ndarray:
    m = engine_to_blender_matrix()
    return p @ m[:3, :3].T


def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _reset():
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def _image(bpy, part: Part, tmp: Path):
    if isinstance(part.texture, str):
        return bpy.data.images.load(part.texture, check_existing=True)
    path = tmp / f"{part.name}_texture.png"
    from PIL import Image

    Image.fromarray(part.texture).save(path)
    return bpy.data.images.load(str(path))


def _add_part(bpy, part: Part, tmp: Path):
    mesh = bpy.data.meshes.new(part.name)
    mesh.from_pydata(_to_blender(part.verts).tolist(), [], part.faces.tolist())
    mesh.polygons.foreach_set("use_smooth", np.ones(len(part.faces), dtype=bool))
    mat = bpy.data.materials.new(part.name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes.get("Principled BSDF")
    bsdf.inputs["Roughness"].default_value = 0.6
    if part.texture is not None and part.uv is not None:
        uv_layer = mesh.uv_layers.new(name="UVMap")
        corners = part.faces if part.face_uv is None else part.face_uv
        uv_layer.data.foreach_set("uv", part.uv[corners].reshape(-1).astype(np.float32))
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = _image(bpy, part, tmp)
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
        nodes.active = tex
    else:
        lin = tuple(_srgb_to_linear(c) for c in part.colour)
        bsdf.inputs["Base Color"].default_value = (*lin, 1.0)
        mat.diffuse_color = (*lin, 1.0)
    mesh.materials.append(mat)
    mesh.validate()
    obj = bpy.data.objects.new(part.name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _add_light(bpy, name, pos_gt, size, energy):
    from mathutils import Vector

    light = bpy.data.lights.new(name, "AREA")
    light.size = size
    light.energy = energy
    obj = bpy.data.objects.new(name, light)
    bpy.context.scene.collection.objects.link(obj)
    pos = Vector(_to_blender(np.asarray(pos_gt, np.float64)[None])[0].tolist())
    obj.location = pos
    obj.rotation_euler = (-pos).to_track_quat("-Z", "Y").to_euler()


def _lights(bpy, scene, settings: RenderSettings) -> None:
    world = bpy.data.worlds.new("world")
    scene.world = world
    world.use_nodes = True
    bg = world.node_tree.nodes.get("Background")
    if settings.lighting == "flat":
        bg.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
        bg.inputs["Strength"].default_value = 1.0
        return
    bg.inputs["Color"].default_value = (0.30, 0.31, 0.33, 1.0)
    bg.inputs["Strength"].default_value = 1.0
    # Lights fixed in the GT frame (metres): key up-left-front, fill right, rim behind.
    _add_light(bpy, "key", (0.6, 0.5, 1.0), 0.8, 18.0)
    _add_light(bpy, "fill", (-0.9, 0.1, 0.6), 1.0, 7.0)
    _add_light(bpy, "rim", (0.0, 0.6, -1.0), 0.8, 10.0)


def _camera(bpy, scene):
    cam = bpy.data.cameras.new("camera")
    cam.sensor_fit = "VERTICAL"
    cam.clip_start, cam.clip_end = 0.01, 100.0
    obj = bpy.data.objects.new("camera", cam)
    scene.collection.objects.link(obj)
    scene.camera = obj
    return obj


def _set_camera(obj, cam2world_gl: np.ndarray, intr: Intrinsics) -> None:
    from mathutils import Matrix

    if abs(intr.fx - intr.fy) > 1e-6 * intr.fx:
        raise ValueError("Blender cameras have square pixels: fx must equal fy")
    cam = obj.data
    cam.angle = 2.0 * np.arctan(intr.height / (2.0 * intr.fy))
    # Principal point offset as Blender's shift, in units of the larger image side.
    side = max(intr.width, intr.height)
    cam.shift_x = (intr.width / 2.0 - intr.cx) / side
    cam.shift_y = (intr.cy - intr.height / 2.0) / side
    obj.matrix_world = Matrix((engine_to_blender_matrix() @ cam2world_gl).tolist())


def _configure(scene, settings: RenderSettings, width: int, height: int) -> None:
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = width, height, 100
    r.film_transparent = True
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGBA"
    r.image_settings.color_depth = "8"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    if settings.engine == "workbench":
        r.engine = "BLENDER_WORKBENCH"
        sh = scene.display.shading
        sh.light = "FLAT" if settings.lighting == "flat" else "STUDIO"
        sh.color_type = "TEXTURE"
        # Studio lights fixed in the world, not to the camera, so every view sees the same shading.
        sh.use_world_space_lighting = True
        scene.display.render_aa = "8"
    elif settings.engine == "cycles":
        r.engine = "CYCLES"
        c = scene.cycles
        c.device = "CPU"
        c.samples = settings.samples
        c.use_denoising = False
        c.use_adaptive_sampling = False
        c.max_bounces = 4
        if settings.threads:
            r.threads_mode, r.threads = "FIXED", settings.threads
    else:
        raise ValueError(f"engine must be cycles or workbench, not {settings.engine!r}")


def render_views(parts: list[Part], views: list[tuple[str, np.ndarray, Intrinsics]], settings: RenderSettings):
    """Render each (name, cam2world_gl, intrinsics) view; yields (name, rgba uint8 (H, W, 4)) with straight
    alpha. All views must share one resolution."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="likeness_gt_") as tmpd:
        tmp = Path(tmpd)
        scene = _reset()
        import bpy

        for part in parts:
            _add_part(bpy, part, tmp)
        _lights(bpy, scene, settings)
        cam = _camera(bpy, scene)
        w, h = views[0][2].width, views[0][2].height
        _configure(scene, settings, w, h)
        for name, c2w, intr in views:
            if (intr.width, intr.height) != (w, h):
                raise ValueError("all views of one render_views call must share a resolution")
            _set_camera(cam, c2w, intr)
            out = tmp / "frame.png"
            scene.render.filepath = str(out)
            with _quiet():
                bpy.ops.render.render(write_still=True)
            yield name, np.asarray(Image.open(out).convert("RGBA")).copy()


class _quiet:
    """Silence Blender's per-tile progress lines on stdout (file descriptor 1)."""

    def __enter__(self):
        self._saved = os.dup(1)
        self._null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(self._null, 1)

    def __exit__(self, *exc):
        os.dup2(self._saved, 1)
        os.close(self._saved)
        os.close(self._null)
