"""build_avatar(photo, config, out_dir, progress, cancel) -> manifest. Orchestration only: every step lives in
its own module (face -> proxy -> field/build -> extract -> io)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from engine import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, __version__
from engine.avatar import Avatar, torch_device
from engine.build.fit import ProxyInitFit, view_cam2world_gl
from engine.build.setup import enable_photo_term, prepare_fit
from engine.build.views import ExtraView
from engine.config import BuildConfig
from engine.conventions import CONVENTIONS_DOC
from engine.extract.bake import bake_texture, mesh_maps
from engine.extract.export import rgba_u8, to_u8, write_glb, write_mp4, write_obj, write_png
from engine.extract.mesh import clean_mesh, marching_cubes, sample_grid, vertex_normals
from engine.extract.uv import spherical_unwrap
from engine.face.analysis import FaceAnalysis, analyse, analysis_warnings
from engine.face.mesh import N_MESH
from engine.face.symmetry import complete_unseen
from engine.io.bundle import MANIFEST, check_output, staged_bundle, write_json_atomic
from engine.io.exr import write_exr_depth
from engine.io.images import Photo
from engine.metrics import composite_over, input_view_scores, iou
from engine.render.renderer import RenderOptions, render_image

log = logging.getLogger("likeness")

Progress = Callable[[str, float], None]

STAGES = ("analyse", "proxy", "init", "fit", "input_view", "mesh", "texture", "maps", "views", "turntable", "write")
NOVEL_VIEWS = ((30.0, 0.0), (-30.0, 0.0), (0.0, 15.0), (0.0, -15.0))


def _noop(stage: str, frac: float) -> None:
    return None


def build_avatar(
    photo: Photo,
    cfg: BuildConfig,
    out_dir: str | Path,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    source_name: str = "photo",
    extra_views: Sequence[ExtraView] = (),
) -> dict:
    """Build the avatar bundle for ``photo`` at ``out_dir`` and return its manifest. ``extra_views``: more
    photos of the same person with cameras known relative to ``photo`` (engine.build.views); the field is fitted
    to all of them and the photo term blends them. ``photo`` still defines the world frame and scale."""
    check_output(out_dir)  # refuse an output we would not replace before any compute
    progress = progress or _noop
    device = torch_device(cfg.device)
    torch.manual_seed(cfg.seed)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    def stage(name):
        timings[name] = time.perf_counter()
        progress(name, 0.0)

    def done(name):
        timings[name] = round(time.perf_counter() - timings[name], 3)
        progress(name, 1.0)
        if cancel is not None and cancel():
            from engine.errors import Cancelled

            raise Cancelled("the build was cancelled")

    stage("analyse")
    an = analyse(photo, cfg)
    done("analyse")

    stage("proxy")
    sim = an.pose.to_canonical
    data, field, extra, views_info = prepare_fit(an, cfg, device, extra_views)
    done("proxy")

    method = ProxyInitFit(cfg)
    stage("init")
    info_init = method.init(field, data, lambda s, f: progress("init", f), cancel)
    done("init")
    stage("fit")
    info_fit = method.fit(field, data, lambda s, f: progress("fit", f), cancel)
    done("fit")

    stage("input_view")
    c2w = an.pose.cam2world_gl()
    opts = RenderOptions(n_coarse=cfg.n_coarse, n_fine=cfg.n_fine)
    enable_photo_term(field, an, extra, cfg)
    inp = render_image(field, c2w, an.work_intr, opts, sim.scale)
    scores = input_view_scores(inp, an.crop_rgb, an.matte, an.in_photo)
    done("input_view")

    stage("mesh")
    verts, faces = _extract(field, cfg, sim.scale)
    done("mesh")

    stage("texture")
    verts, faces, uv, _ = spherical_unwrap(verts, faces)
    tex = bake_texture(verts, faces, uv, _colour_fn(field, sim.scale), cfg.texture_size)
    done("texture")

    with staged_bundle(out_dir) as stage_dir:
        stage("maps")
        mm = mesh_maps(verts, faces, c2w, an.work_intr)
        mesh_iou = iou(mm["mask"], an.matte > 0.5)
        write_exr_depth(str(stage_dir / "depth.exr"), inp["depth_m"])
        write_png(stage_dir / "depth.png", _depth_preview(inp["depth_m"]))
        write_png(stage_dir / "normal.png", to_u8(np.where(mm["mask"][..., None], mm["normal_world"] * 0.5 + 0.5, 0.0)))
        write_png(stage_dir / "alpha.png", to_u8(an.matte))
        write_png(stage_dir / "photo_crop.png", to_u8(an.crop_rgb))
        write_png(stage_dir / "photo.png", photo.rgb)  # the whole photo, upright: camera.photo's image
        write_png(stage_dir / "input_render.png", rgba_u8(inp))
        done("maps")

        stage("views")
        avatar = Avatar(
            Path(stage_dir),
            {
                "canonical": {"scale": sim.scale},
                "camera": {"cam2world": c2w.tolist(), "work": {"intrinsics": an.work_intr.to_dict()}},
                "settings": cfg.to_dict(),
            },
            field,
        )
        views = {}
        for yaw, pitch in NOVEL_VIEWS:
            cam, intr = avatar.orbit(yaw, pitch, cfg.work_res)
            name = f"view_yaw{yaw:+.0f}_pitch{pitch:+.0f}.png"
            write_png(stage_dir / name, rgba_u8(avatar.render(cam, intr, opts)))
            views[name[:-4]] = {
                "file": name,
                "yaw_deg": yaw,
                "pitch_deg": pitch,
                "cam2world": cam.tolist(),
                "intrinsics": intr.to_dict(),
            }
        done("views")

        stage("turntable")
        frames = render_turntable(
            avatar,
            cfg.turntable_frames,
            cfg.turntable_size,
            cfg.turntable_pitch_deg,
            opts,
            lambda f: progress("turntable", f),
            cancel,
        )
        (stage_dir / "turntable").mkdir()
        frame_files = []
        for i, fr in enumerate(frames):
            name = f"turntable/frame_{i:03d}.png"
            write_png(stage_dir / name, fr)
            frame_files.append(name)
        write_mp4(stage_dir / "turntable.mp4", [_over_grey(f) for f in frames])
        done("turntable")

        stage("write")
        write_png(stage_dir / "texture.png", tex)
        # The expression rig (engine/rig, docs/RIG.md): the mesh files hold the neutral face (all ARKit weights 0);
        # head.glb carries the 52 shapes as morph targets with the photo's expression as default weights.
        from engine.rig.bundle import rig_mesh, write_rig_files

        # One photo sees one side of the face: landmarks it cannot see take their mirrored partners, as the
        # field's far side does (engine.face.symmetry); with more photos the far side may be seen, so keep them.
        lm_world, mirror_w = an.pose.landmarks_world(), np.zeros(N_MESH)
        if not extra:
            lm_world, mirror_w = complete_unseen(lm_world, c2w[:3, 3])
        rigged = rig_mesh(lm_world, verts)
        mesh_verts = rigged.keys.basis.astype(np.float64)
        normals = vertex_normals(mesh_verts, faces)
        write_glb(stage_dir / "head.glb", mesh_verts, faces, uv, normals, tex)
        write_obj(stage_dir / "head.obj", mesh_verts, faces, uv, normals, "texture.png")
        rig_info = write_rig_files(stage_dir, rigged)
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in field.state_dict().items()}
        save_file(state, str(stage_dir / "field.safetensors"), metadata={"format": "likeness-field", "version": "1"})
        (stage_dir / "landmarks.json").write_text(
            json.dumps(
                {
                    "topology": "mediapipe-478",
                    "frame": "world",
                    "landmarks_world": lm_world.round(6).tolist(),
                    "mirrored_weight": mirror_w.round(3).tolist(),
                }
            )
        )
        timings["write"] = round(time.perf_counter() - timings["write"], 3)
        timings["total"] = round(time.perf_counter() - t_all, 3)
        manifest = _manifest(
            photo,
            source_name,
            cfg,
            an,
            c2w,
            field,
            timings,
            scores,
            mesh_iou,
            verts,
            faces,
            views,
            frame_files,
            info_init,
            info_fit,
            str(device),
        )
        if views_info is not None:
            manifest["extra_views"] = _extra_views_manifest(views_info, extra, extra_views)
        manifest["face"]["landmarks_mirrored"] = int((mirror_w > 0.5).sum())
        manifest["warnings"] = analysis_warnings(an.n_faces, cfg)
        manifest["files"].update(rig_info["files"])
        manifest["rig"] = rig_info["rig"]
        write_json_atomic(stage_dir / MANIFEST, manifest)
        progress("write", 1.0)
    return manifest


def _extra_views_manifest(info: dict, views, given) -> dict:
    """What the manifest records of the extra views: the metre scale k and each view's carried camera."""
    rows = []
    for v, g, crop in zip(views, given, info["views"], strict=True):
        rows.append(
            {
                "cam2world": view_cam2world_gl(v).tolist(),
                "ref_from_cam_gl": np.asarray(g.ref_from_cam_gl).tolist(),
                "sha256": g.photo.sha256,
                **crop,
            }
        )
    note = "relative translations multiplied by k = engine metres per true metre (triangulated landmarks)"
    return {
        "count": len(rows),
        "metre_scale": {k: info[k] for k in ("k", "landmarks", "iqr")},
        "note": note,
        "views": rows,
    }


def _extract(field, cfg: BuildConfig, scale: float):
    c = field.box_center.cpu().numpy().astype(np.float64)
    h = float(field.box_half)
    lo, hi = c - h, c + h
    vals = sample_grid(lambda p: field.sdf_at(p.to(field.box_center.device)), lo, hi, cfg.mc_res)
    verts, faces = marching_cubes(vals, field.surface_level, lo, hi)
    verts, faces = clean_mesh(verts / scale, faces, cfg.max_faces)
    return verts, faces


def _colour_fn(field, scale: float):
    dev = field.box_center.device

    def fn(pts_world: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(pts_world), 262144):
                p = torch.as_tensor(pts_world[i : i + 262144] * scale, dtype=torch.float32, device=dev)
                out.append(field.colour(p).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 3), np.float32)

    return fn


def render_turntable(
    avatar: Avatar, n_frames: int, size: int, pitch_deg: float, opts=None, progress=None, cancel=None
) -> list[np.ndarray]:
    """RGBA uint8 frames orbiting the head centre once, starting in front of the face."""
    frames = []
    for i in range(n_frames):
        cam, intr = avatar.orbit(360.0 * i / n_frames, pitch_deg, size)
        frames.append(rgba_u8(avatar.render(cam, intr, opts)))
        if progress:
            progress((i + 1) / n_frames)
        if cancel is not None and cancel():
            from engine.errors import Cancelled

            raise Cancelled("the build was cancelled")
    return frames


def _over_grey(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3] * a + 128.0 * (1.0 - a)).astype(np.uint8)


def _depth_preview(depth: np.ndarray) -> np.ndarray:
    """16-bit PNG: near = bright, empty = 0."""
    valid = depth > 0
    out = np.zeros(depth.shape, np.uint16)
    if valid.any():
        lo, hi = depth[valid].min(), depth[valid].max()
        out[valid] = (65535.0 * (1.0 - (depth[valid] - lo) / max(hi - lo, 1e-6)) * 0.9 + 6553.5).astype(np.uint16)
    return out


def _manifest(
    photo,
    source_name,
    cfg,
    an: FaceAnalysis,
    c2w,
    field,
    timings,
    scores,
    mesh_iou,
    verts,
    faces,
    views,
    frame_files,
    info_init,
    info_fit,
    device,
) -> dict:
    sim = an.pose.to_canonical
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "engine_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": {
            "name": source_name,
            "sha256": photo.sha256,
            "bytes": photo.n_bytes,
            "format": photo.format,
            "width": photo.width,
            "height": photo.height,
        },
        "face": {
            "count": an.n_faces,
            "index": cfg.face_index,
            "backend": an.backend,
            "focal_35mm": an.focal_35mm,
            "focal_source": an.focal_source,
        },
        "camera": {
            "cam2world": c2w.tolist(),
            "photo": {"intrinsics": an.photo_intr.to_dict()},
            "work": {"intrinsics": an.work_intr.to_dict(), "crop_box_px": list(an.crop_box)},
        },
        "canonical": {
            **sim.to_dict(),
            "box_center": field.box_center.cpu().tolist(),
            "box_half": float(field.box_half),
            "note": "x_canon = scale * rotation @ x_cv + translation",
        },
        "conventions": CONVENTIONS_DOC,
        "settings": cfg.to_dict(),
        "field": {
            "method": ProxyInitFit.name,
            "grid_res": cfg.grid_res,
            "plane_res": cfg.plane_res,
            "plane_channels": cfg.plane_channels,
            "device": device,
        },
        "timings_s": timings,
        "metrics": {
            "input_psnr_db": round(scores["psnr_db"], 3),
            "input_ssim": round(scores["ssim"], 4),
            "mesh_matte_iou": round(mesh_iou, 4),
            "faces": int(len(faces)),
            "vertices": int(len(verts)),
            "init_colour_mse": info_init.get("init_colour_mse"),
            "fit_history": info_fit.get("history", [])[-3:],
        },
        "views": views,
        "files": {
            "glb": "head.glb",
            "obj": "head.obj",
            "mtl": "head.mtl",
            "texture": "texture.png",
            "depth_exr": "depth.exr",
            "depth_png": "depth.png",
            "normal": "normal.png",
            "alpha": "alpha.png",
            "photo": "photo.png",
            "photo_crop": "photo_crop.png",
            "input_render": "input_render.png",
            "field": "field.safetensors",
            "landmarks": "landmarks.json",
            "turntable_mp4": "turntable.mp4",
            **{k: v["file"] for k, v in views.items()},
        },
        "turntable_frames": frame_files,
        "maps_camera": "work (the photo camera cropped to crop_box_px and resized to work intrinsics)",
    }


def composite_preview(render: dict) -> np.ndarray:
    return to_u8(composite_over(render["rgb"], render["alpha"]))
