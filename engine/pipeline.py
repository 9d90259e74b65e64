"""build_avatar(photo, config, out_dir, progress, cancel) -> manifest: the pipeline as a list of named stages
(:data:`STAGES`), each one step of face -> proxy -> field/fit -> extract -> io over one :class:`BuildContext`.
The CLI's progress bars, the server's stage reports and ETA, and scripts/bench.py read the same list.
Orchestration only: every step lives in its own module."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from engine import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, __version__
from engine.avatar import Avatar, torch_device
from engine.config import BuildConfig
from engine.conventions import CONVENTIONS_DOC
from engine.errors import Cancelled
from engine.extract.bake import bake_texture, mesh_maps
from engine.extract.export import (
    over_grey,
    rgba_u8,
    to_u8,
    write_glb,
    write_mp4,
    write_obj,
    write_png,
    write_quad_obj,
)
from engine.extract.from_field import colour_fn, extract_mesh
from engine.extract.mesh import vertex_normals
from engine.extract.uv import spherical_unwrap
from engine.face.analysis import FaceAnalysis, analyse, analysis_warnings
from engine.face.mesh import N_MESH
from engine.face.symmetry import complete_unseen
from engine.field.store import save_field
from engine.fit import FitMethod, make_method
from engine.fit.data import view_cam2world_gl
from engine.fit.setup import enable_photo_term, prepare_fit
from engine.fit.views import ExtraView
from engine.io.bundle import MANIFEST, check_output, staged_bundle, write_json_atomic
from engine.io.exr import write_exr_depth
from engine.io.images import Photo
from engine.io.manifest import ASSET_DIR, BUNDLE_FILES, OPTIONAL_FILES, TURNTABLE_DIR, turntable_frame, view_key
from engine.metrics import composite_over, input_view_scores, iou
from engine.proxy.canonical import Similarity
from engine.render.renderer import RenderOptions, render_image

log = logging.getLogger("likeness")

Progress = Callable[[str, float], None]

NOVEL_VIEWS = ((30.0, 0.0), (-30.0, 0.0), (0.0, 15.0), (0.0, -15.0))


@dataclass
class BuildContext:
    """One build's inputs and everything its stages make, in stage order (each stage fills its part)."""

    photo: Photo
    cfg: BuildConfig
    method: FitMethod
    source_name: str = "photo"
    extra_views: Sequence[ExtraView] = ()
    progress: Progress = lambda stage, frac: None
    cancel: Callable[[], bool] | None = None
    face_frame: Similarity | None = None
    """The cv -> canonical face frame the proxy's side rule uses (default: the analysis' own)."""
    device: torch.device | None = None
    timings: dict = dc_field(default_factory=dict)
    an: FaceAnalysis | None = None
    data: object = None
    field: object = None
    extra: tuple = ()
    views_info: dict | None = None
    state: object = None
    info_init: dict = dc_field(default_factory=dict)
    info_fit: dict = dc_field(default_factory=dict)
    c2w: np.ndarray | None = None
    opts: RenderOptions | None = None
    inp: dict | None = None
    scores: dict | None = None
    verts: np.ndarray | None = None
    faces: np.ndarray | None = None
    uv: np.ndarray | None = None
    tex: np.ndarray | None = None
    stage_dir: Path | None = None
    mesh_iou: float = 0.0
    avatar: Avatar | None = None
    views: dict = dc_field(default_factory=dict)
    frame_files: list = dc_field(default_factory=list)
    landmarks: tuple | None = None
    """(landmarks_world (478, 3), mirrored_weight (478,)): what landmarks.json holds (:func:`_landmarks`)."""
    asset: dict | None = None
    warnings: list = dc_field(default_factory=list)
    manifest: dict | None = None
    t_start: float = dc_field(default_factory=time.perf_counter)

    @property
    def scale(self) -> float:
        return self.an.pose.to_canonical.scale

    def sub_progress(self, stage: str):
        return lambda s, f: self.progress(stage, f)


# -- the stages ------------------------------------------------------------------------------------------------


def _analyse(ctx: BuildContext) -> None:
    ctx.an = analyse(ctx.photo, ctx.cfg)


def _proxy(ctx: BuildContext) -> None:
    ctx.data, ctx.field, ctx.extra, ctx.views_info = prepare_fit(
        ctx.an, ctx.cfg, ctx.device, ctx.extra_views, face_frame=ctx.face_frame
    )
    ctx.method.check(ctx.field, ctx.data)
    ctx.warnings.extend(getattr(ctx.method, "warnings", ()))  # e.g. head-prior without a prepared prior


def _init(ctx: BuildContext) -> None:
    ctx.state = ctx.method.init(ctx.field, ctx.data, ctx.sub_progress("init"), ctx.cancel)
    ctx.info_init = ctx.state.info


def _fit(ctx: BuildContext) -> None:
    ctx.info_fit = ctx.method.fit(ctx.state, ctx.sub_progress("fit"), ctx.cancel).info


def _input_view(ctx: BuildContext) -> None:
    an, cfg = ctx.an, ctx.cfg
    ctx.c2w = an.pose.cam2world_gl()
    ctx.opts = RenderOptions(n_coarse=cfg.n_coarse, n_fine=cfg.n_fine)
    enable_photo_term(ctx.field, an, ctx.extra, cfg)
    ctx.inp = render_image(ctx.field, ctx.c2w, an.work_intr, ctx.opts, ctx.scale)
    ctx.scores = input_view_scores(ctx.inp, an.crop_rgb, an.matte, an.in_photo)


def _mesh(ctx: BuildContext) -> None:
    ctx.verts, ctx.faces = extract_mesh(ctx.field, ctx.cfg, ctx.scale)


def _texture(ctx: BuildContext) -> None:
    chin_y = float(ctx.an.pose.landmarks_world()[152, 1])  # below it the body's own chart (engine/extract/uv.py)
    ctx.verts, ctx.faces, ctx.uv, _ = spherical_unwrap(ctx.verts, ctx.faces, body_below=chin_y)
    ctx.tex = bake_texture(ctx.verts, ctx.faces, ctx.uv, colour_fn(ctx.field, ctx.scale), ctx.cfg.texture_size)


def _maps(ctx: BuildContext) -> None:
    d, an, inp = ctx.stage_dir, ctx.an, ctx.inp
    mm = mesh_maps(ctx.verts, ctx.faces, ctx.c2w, an.work_intr)
    ctx.mesh_iou = iou(mm["mask"], an.matte > 0.5)
    f = BUNDLE_FILES
    write_exr_depth(str(d / f["depth_exr"]), inp["depth_m"])
    write_png(d / f["depth_png"], _depth_preview(inp["depth_m"]))
    write_png(d / f["normal"], to_u8(np.where(mm["mask"][..., None], mm["normal_world"] * 0.5 + 0.5, 0.0)))
    write_png(d / f["alpha"], to_u8(an.matte))
    write_png(d / f["photo_crop"], to_u8(an.crop_rgb))
    write_png(d / f["photo"], ctx.photo.rgb)  # the whole photo, upright: camera.photo's image
    write_png(d / f["input_render"], rgba_u8(inp))


def _views(ctx: BuildContext) -> None:
    cfg = ctx.cfg
    ctx.avatar = Avatar(
        Path(ctx.stage_dir),
        {
            "canonical": {"scale": ctx.scale},
            "camera": {"cam2world": ctx.c2w.tolist(), "work": {"intrinsics": ctx.an.work_intr.to_dict()}},
            "settings": cfg.to_dict(),
        },
        ctx.field,
    )
    for yaw, pitch in NOVEL_VIEWS:
        cam, intr = ctx.avatar.orbit(yaw, pitch, cfg.work_res)
        key = view_key(yaw, pitch)
        write_png(ctx.stage_dir / f"{key}.png", rgba_u8(ctx.avatar.render(cam, intr, ctx.opts)))
        ctx.views[key] = {
            "file": f"{key}.png",
            "yaw_deg": yaw,
            "pitch_deg": pitch,
            "cam2world": cam.tolist(),
            "intrinsics": intr.to_dict(),
        }


def _turntable(ctx: BuildContext) -> None:
    cfg = ctx.cfg
    frames = render_turntable(
        ctx.avatar,
        cfg.turntable_frames,
        cfg.turntable_size,
        cfg.turntable_pitch_deg,
        ctx.opts,
        lambda f: ctx.progress("turntable", f),
        ctx.cancel,
    )
    (ctx.stage_dir / TURNTABLE_DIR).mkdir()
    for i, fr in enumerate(frames):
        name = turntable_frame(i)
        write_png(ctx.stage_dir / name, fr)
        ctx.frame_files.append(name)
    write_mp4(ctx.stage_dir / BUNDLE_FILES["turntable_mp4"], [over_grey(f) for f in frames])


def _landmarks(ctx: BuildContext) -> tuple[np.ndarray, np.ndarray]:
    """The world landmarks (478, 3) the bundle keeps and their mirrored weights (478,), made once. One photo
    sees one side of the face: landmarks it cannot see take their mirrored partners, as the field's far side does
    (engine.face.symmetry); with more photos the far side may be seen, so keep them."""
    if ctx.landmarks is None:
        lm_world, mirror_w = ctx.an.pose.landmarks_world(), np.zeros(N_MESH)
        if not ctx.extra:
            lm_world, mirror_w = complete_unseen(lm_world, ctx.c2w[:3, 3])
        ctx.landmarks = (lm_world, mirror_w)
    return ctx.landmarks


def _asset(ctx: BuildContext) -> None:
    """The artist asset (engine/asset, docs/ASSET.md) in the bundle's asset/ folder, when the head prior is
    prepared; otherwise one warning and nothing written."""
    from engine.asset.build import write_asset
    from engine.asset.stats import asset_summary
    from engine.prior import PRIOR_NAME, PRIOR_VERSION, PriorMissing

    an = ctx.an
    camera = {"cam2world": ctx.c2w.tolist(), "photo": {"intrinsics": an.photo_intr.to_dict()}}
    camera["work"] = {"intrinsics": an.work_intr.to_dict()}
    manifest = {"canonical": {"scale": ctx.scale}, "camera": camera, "settings": ctx.cfg.to_dict()}
    if "prior" in ctx.info_init:  # the hair and skin colours (and the bald verdict) the asset's hair reads
        manifest["prior"] = dict(ctx.info_init["prior"])
    folder = ctx.stage_dir / ASSET_DIR
    try:
        info = write_asset(Avatar(Path(ctx.stage_dir), manifest, ctx.field), folder, ctx.cfg.texture_size,
                           _landmarks(ctx)[0], source=ctx.source_name, uv_layout=ctx.cfg.uv_layout)  # fmt: skip
    except PriorMissing as exc:
        msg = f"no artist asset (asset/): {exc.message} ({exc.hint})"
        log.warning(msg)
        ctx.warnings.append({"code": "asset_skipped", "message": msg})
        return
    ctx.asset = {
        "prior": {"name": PRIOR_NAME, "version": PRIOR_VERSION, "anny_version": info["template"]["anny_version"]},
        "format": info["format"],
        "format_version": info["format_version"],
        "texture_size": info["texture_size"],
        "parts": info["parts"],
        "fit_rms_landmarks_mm": info["fit"]["rms_landmarks_mm"],
        "stats": asset_summary(folder),
    }


def _write(ctx: BuildContext) -> None:
    d, f, an, field_ = ctx.stage_dir, BUNDLE_FILES, ctx.an, ctx.field
    write_png(d / f["texture"], ctx.tex)
    # The expression rig (engine/rig, docs/RIG.md): the mesh files hold the neutral face (all ARKit weights 0);
    # head.glb carries the 52 shapes as morph targets with the photo's expression as default weights.
    from engine.rig.bundle import rig_mesh, write_rig_files

    lm_world, mirror_w = _landmarks(ctx)
    rigged = rig_mesh(lm_world, ctx.verts)
    mesh_verts = rigged.keys.basis.astype(np.float64)
    normals = vertex_normals(mesh_verts, ctx.faces)
    write_glb(d / f["glb"], mesh_verts, ctx.faces, ctx.uv, normals, ctx.tex)
    write_obj(d / f["obj"], mesh_verts, ctx.faces, ctx.uv, normals, f["texture"])
    rig_info = write_rig_files(d, rigged)
    prior_files = _write_prior(ctx)
    save_field(field_, d / f["field"])
    (d / f["landmarks"]).write_text(
        json.dumps(
            {
                "topology": "mediapipe-478",
                "frame": "world",
                "landmarks_world": lm_world.round(6).tolist(),
                "mirrored_weight": mirror_w.round(3).tolist(),
            }
        )
    )
    ctx.timings["write"] = round(time.perf_counter() - ctx.timings["write"], 3)
    ctx.timings["total"] = round(time.perf_counter() - ctx.t_start, 3)
    manifest = _manifest(ctx)
    if ctx.views_info is not None:
        manifest["extra_views"] = _extra_views_manifest(ctx.views_info, ctx.extra, ctx.extra_views)
    manifest["face"]["landmarks_mirrored"] = int((mirror_w > 0.5).sum())
    manifest["warnings"] = analysis_warnings(an.n_faces, ctx.cfg) + ctx.warnings
    manifest["files"].update(rig_info["files"])
    manifest["files"].update(prior_files)
    if ctx.asset is not None:
        written = {k: v for k, v in OPTIONAL_FILES.items() if k.startswith("asset_") and (d / v).is_file()}
        manifest["files"].update(written)  # the subdivided levels only as the stage wrote them
        manifest["asset"] = ctx.asset
    if "prior" in ctx.info_init:
        from engine.prior import PRIOR_NAME, PRIOR_VERSION

        manifest["prior"] = {"name": PRIOR_NAME, "version": PRIOR_VERSION, **ctx.info_init["prior"]}
    manifest["rig"] = rig_info["rig"]
    write_json_atomic(d / MANIFEST, manifest)
    ctx.manifest = manifest


def _write_prior(ctx: BuildContext) -> dict:
    """The fitted head prior as a quad OBJ in the world frame, when the method fitted one; its manifest files."""
    fitted, prior = getattr(ctx.method, "fitted", None), getattr(ctx.method, "prior", None)
    if fitted is None or prior is None:
        return {}
    w = ctx.an.pose.world_from_cv()
    name = OPTIONAL_FILES["prior_obj"]
    write_quad_obj(ctx.stage_dir / name, fitted.vertices @ w[:3, :3].T + w[:3, 3], prior.quads, prior.uv, prior.quad_uv)
    return {"prior_obj": name}


@dataclass(frozen=True)
class Stage:
    """One named step of the build. ``weight``: its share of a draft build's time on CPU (measured), which turns
    stage fractions into one overall fraction; ``in_bundle``: runs inside the staging folder."""

    name: str
    weight: float
    run: Callable[[BuildContext], None]
    in_bundle: bool = False


ASSET_WEIGHT = 15.0
"""The asset stage: 5-6.5 s beside ~33 s for the rest of a draft build of the demo (2 shared CPU cores, texture
1024, the UV layout cached on disk, the albedo 1 s more; scripts/bench_asset.py), in the units of the other weights
(a draft build without the asset sums to 100)."""
STAGES: tuple[Stage, ...] = (
    Stage("analyse", 0.5, _analyse),
    Stage("proxy", 0.1, _proxy),
    Stage("init", 19.0, _init),
    Stage("fit", 47.0, _fit),
    Stage("input_view", 2.2, _input_view),
    Stage("mesh", 1.1, _mesh),
    Stage("texture", 2.5, _texture),
    Stage("maps", 0.2, _maps, in_bundle=True),
    Stage("views", 4.1, _views, in_bundle=True),
    Stage("turntable", 22.4, _turntable, in_bundle=True),
    Stage("asset", ASSET_WEIGHT, _asset, in_bundle=True),
    Stage("write", 0.9, _write, in_bundle=True),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
FIT_STAGES = STAGE_NAMES[: STAGE_NAMES.index("input_view") + 1]
"""What fit_field runs: up to the input view, nothing written."""


def run_stages(ctx: BuildContext, names: Sequence[str]) -> None:
    """Run the named stages in order: each reports 0 and 1 to ``ctx.progress`` and its seconds to
    ``ctx.timings``; a cancel asked for is honoured before each stage after the first."""
    for i, s in enumerate(st for st in STAGES if st.name in names):
        if i and ctx.cancel is not None and ctx.cancel():
            raise Cancelled("the build was cancelled")
        ctx.timings[s.name] = time.perf_counter()
        ctx.progress(s.name, 0.0)
        s.run(ctx)
        if s.name != "write":  # the write stage timed itself before writing the manifest
            ctx.timings[s.name] = round(time.perf_counter() - ctx.timings[s.name], 3)
        ctx.progress(s.name, 1.0)
    if ctx.cancel is not None and names and names[-1] != "write" and ctx.cancel():
        raise Cancelled("the build was cancelled")


def _context(photo, cfg, progress, cancel, **kw) -> BuildContext:
    ctx = BuildContext(photo, cfg, make_method(cfg), progress=progress or (lambda s, f: None), cancel=cancel, **kw)
    ctx.device = torch_device(cfg.device)
    torch.manual_seed(cfg.seed)
    return ctx


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
    photos of the same person with cameras known relative to ``photo`` (engine.fit.views); the field is fitted
    to all of them and the photo term blends them. ``photo`` still defines the world frame and scale. Refuses an
    output it would not replace, or an unknown fitting method, before any compute."""
    check_output(out_dir)
    ctx = _context(photo, cfg, progress, cancel, source_name=source_name, extra_views=extra_views)
    run_stages(ctx, [s.name for s in STAGES if not s.in_bundle])
    with staged_bundle(out_dir) as stage_dir:
        ctx.stage_dir = stage_dir
        run_stages(ctx, [s.name for s in STAGES if s.in_bundle])
    return ctx.manifest


def fit_field(
    photo: Photo,
    cfg: BuildConfig,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    analysis: FaceAnalysis | None = None,
    face_frame: Similarity | None = None,
    extra_views: Sequence[ExtraView] = (),
) -> BuildContext:
    """The build's own stages up to the input view (:data:`FIT_STAGES`), nothing written: the fitted field,
    its analysis, timings and input-view scores in the returned context. ``analysis``: use this one instead of
    analysing ``photo`` (an experiment's changed frame); ``face_frame`` as in :class:`BuildContext`."""
    ctx = _context(photo, cfg, progress, cancel, extra_views=extra_views, face_frame=face_frame)
    names = list(FIT_STAGES)
    if analysis is not None:
        ctx.an = analysis
        names.remove("analyse")
    run_stages(ctx, names)
    return ctx


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
            raise Cancelled("the build was cancelled")
    return frames


def _depth_preview(depth: np.ndarray) -> np.ndarray:
    """16-bit PNG: near = bright, empty = 0."""
    valid = depth > 0
    out = np.zeros(depth.shape, np.uint16)
    if valid.any():
        lo, hi = depth[valid].min(), depth[valid].max()
        out[valid] = (65535.0 * (1.0 - (depth[valid] - lo) / max(hi - lo, 1e-6)) * 0.9 + 6553.5).astype(np.uint16)
    return out


def _manifest(ctx: BuildContext) -> dict:
    photo, source_name, cfg, an, c2w, field = ctx.photo, ctx.source_name, ctx.cfg, ctx.an, ctx.c2w, ctx.field
    scores, info_init, info_fit, views = ctx.scores, ctx.info_init, ctx.info_fit, ctx.views
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
            "method": ctx.method.name,
            "grid_res": cfg.grid_res,
            "plane_res": cfg.plane_res,
            "plane_channels": cfg.plane_channels,
            "device": str(ctx.device),
        },
        "timings_s": ctx.timings,
        "metrics": {
            "input_psnr_db": round(scores["psnr_db"], 3),
            "input_ssim": round(scores["ssim"], 4),
            "mesh_matte_iou": round(ctx.mesh_iou, 4),
            "faces": int(len(ctx.faces)),
            "vertices": int(len(ctx.verts)),
            "init_colour_mse": info_init.get("init_colour_mse"),
            "fit_history": info_fit.get("history", [])[-3:],
        },
        "views": views,
        "files": {
            **{k: v for k, v in BUNDLE_FILES.items() if k not in ("expression", "shape_keys")},
            **{k: v["file"] for k, v in views.items()},
        },
        "turntable_frames": ctx.frame_files,
        "maps_camera": "work (the photo camera cropped to crop_box_px and resized to work intrinsics)",
    }


def composite_preview(render: dict) -> np.ndarray:
    return to_u8(composite_over(render["rgb"], render["alpha"]))
