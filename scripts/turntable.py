"""Headless turntable: a photo or an avatar bundle in -> a .blend, rendered turntable frames and an MP4 out.

    blender -b --factory-startup -P scripts/turntable.py -- --bundle out/demo -o out/turntable
    python scripts/turntable.py --bundle out/demo -o out/turntable --renderer cycles     # the bpy module
    python scripts/turntable.py --photo me.jpg --engine-python .venv/bin/python -o out/me_tt --quality draft
    python scripts/turntable.py --bundle out/demo -o out/demo_fbx --fbx out/demo_fbx/head.fbx --no-turntable

Everything goes through the add-on's operators (``bpy.ops.likeness.*``), exactly as an artist's clicks would:
a photo is built by the engine (``likeness.build``, a local engine started from ``--engine-python`` or a running
one at ``--engine-url``), the bundle is imported (``likeness.import_avatar``), the turntable rig added
(``likeness.turntable``) and rendered with Workbench or Cycles (CPU), or by the engine's radiance field
(``--renderer neural``, ``likeness.neural_render``). Writes ``OUT/turntable.blend``, ``OUT/frames/*.png`` and
``OUT/turntable.mp4`` (Blender's own FFmpeg); ``--fbx PATH`` also exports the head (mesh, shape keys, embedded
texture) as FBX, and ``--no-turntable`` does only that. Exit code 0 on success, 1 with one line on stderr otherwise.

Under Blender (4.2 through 5.0) the script's own arguments are those after ``--``
(``sys.argv[sys.argv.index("--") + 1:]``); it needs nothing but Blender's Python and the add-on (installed, or the
``blender_addon`` folder beside this script), never the engine's virtual environment. ``likeness batch --turntable
blender`` runs this same script, as a subprocess, for every head (docs/BATCH.md).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from importlib import import_module
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blender_script import run  # noqa: E402  (beside this script; stdlib only)

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="turntable.py", description="Photo or avatar bundle -> turntable .blend + MP4")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--photo", help="portrait photo: built into an avatar by the engine first")
    src.add_argument("--bundle", help="an avatar bundle folder (holds manifest.json)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--frames", type=int, default=48, help="frames for one orbit")
    p.add_argument("--size", type=int, default=512, help="square frame size in pixels")
    p.add_argument("--pitch", type=float, default=5.0, help="degrees above the head centre")
    p.add_argument("--focal", type=float, default=0.0, help="lens in mm on a 36 mm sensor (0 = the photo's)")
    p.add_argument("--fill", type=float, default=0.85, help="fraction of the frame the head's bounds fill")
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--renderer", choices=("workbench", "cycles", "neural"), default="workbench")
    p.add_argument("--samples", type=int, default=32, help="Cycles samples per pixel")
    p.add_argument("--quality", choices=("draft", "standard", "high"), default="standard", help="for --photo")
    p.add_argument("--engine-python", help="start a local engine from this Python (venv folder or executable)")
    p.add_argument("--engine-url", help="use a running engine instead, e.g. http://127.0.0.1:8765")
    p.add_argument("--token", default="", help="bearer token of the engine at --engine-url")
    p.add_argument("--no-mp4", action="store_true", help="frames and .blend only")
    p.add_argument("--no-pack", action="store_true", help="reference the bundle's images instead of packing them")
    p.add_argument("--fbx", help="also export the head (mesh, shape keys, embedded texture) to this .fbx file")
    p.add_argument("--no-turntable", action="store_true", help="import (and --fbx) only: no rig, frames or .blend")
    return p.parse_args(argv)


def enable_addon():
    """The add-on's package name: the installed extension if Blender has one enabled, else this checkout's."""
    import addon_utils
    import bpy

    for name in bpy.context.preferences.addons.keys():
        if name.split(".")[-1] == "likeness":
            return name
    if not (REPO / "blender_addon" / "__init__.py").is_file():
        raise RuntimeError("the Likeness add-on is not enabled in Blender and not next to this script")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))

    def fail(exc):
        raise exc

    addon_utils.enable("blender_addon", default_set=True, handle_error=fail)
    return "blender_addon"


def configure_engine(addon: str, args: argparse.Namespace, out: Path) -> None:
    import bpy

    prefs = bpy.context.preferences.addons[addon].preferences
    if args.engine_url:
        prefs.mode, prefs.url, prefs.token = "REMOTE", args.engine_url, args.token
    elif args.engine_python:
        prefs.mode, prefs.python_path = "LOCAL", str(Path(args.engine_python).expanduser().absolute())
        prefs.workspace = str(out / "engine_workspace")
    prefs.cache_dir = str(out / "bundles")


def run_op(op, **kwargs) -> None:
    """Call an operator; a CANCELLED result becomes an error with the operator's report."""
    result = op("EXEC_DEFAULT", True, **kwargs)
    if "FINISHED" not in result:
        raise RuntimeError(f"{op.idname_py()} did not finish: {result}")


def configure_render(scene, renderer: str, size: int, samples: int) -> None:
    r = scene.render
    r.resolution_x = r.resolution_y = size
    r.resolution_percentage, r.pixel_aspect_x, r.pixel_aspect_y = 100, 1.0, 1.0
    r.film_transparent = False
    r.image_settings.file_format, r.image_settings.color_mode = "PNG", "RGB"
    world = scene.world
    if world is None:
        import bpy

        world = scene.world = bpy.data.worlds.new("Likeness world")
    world.color = (0.18, 0.18, 0.18)
    if renderer == "workbench":
        r.engine = "BLENDER_WORKBENCH"
        shading = scene.display.shading
        shading.light, shading.color_type = "STUDIO", "TEXTURE"
        scene.display.render_aa = "8"
    elif renderer == "cycles":
        r.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = samples
        scene.cycles.use_denoising = False


def encode_mp4(frames: list[Path], out: Path, fps: int, size: int) -> Path:
    """Frames -> H.264 MP4 with Blender's own FFmpeg, through a throw-away sequencer scene."""
    import bpy

    enc = bpy.data.scenes.new("Likeness encode")
    try:
        enc.render.resolution_x = enc.render.resolution_y = size
        enc.render.resolution_percentage, enc.render.fps = 100, fps
        strip = enc.sequence_editor_create().strips.new_image("frames", str(frames[0]), 1, 1)
        for f in frames[1:]:
            strip.elements.append(f.name)
        enc.frame_start, enc.frame_end = 1, len(frames)
        ims = enc.render.image_settings
        if hasattr(ims, "media_type"):  # Blender 5.0+
            ims.media_type = "VIDEO"
        ims.file_format = "FFMPEG"
        enc.render.ffmpeg.format, enc.render.ffmpeg.codec = "MPEG4", "H264"
        enc.render.ffmpeg.constant_rate_factor = "HIGH"
        enc.render.filepath = str(out)
        bpy.ops.render.render(animation=True, scene=enc.name)
    finally:
        bpy.data.scenes.remove(enc)
    return out


def main(argv: list[str]) -> int:
    import bpy

    args = parse_args(argv)
    if (args.photo or args.renderer == "neural") and not (args.engine_python or args.engine_url):
        raise RuntimeError("--photo and --renderer neural need an engine: --engine-python PATH or --engine-url URL")
    out = Path(args.output).expanduser().absolute()
    (out if args.no_turntable else out / "frames").mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    bpy.ops.wm.read_homefile(use_empty=True)  # keeps the preferences, so an installed extension stays enabled
    addon = enable_addon()
    configure_engine(addon, args, out)
    try:
        if args.no_turntable:
            if not args.fbx:
                raise ValueError("--no-turntable leaves nothing to do without --fbx")
            import_avatar(args, addon)
            frames, blend = [], None
        else:
            frames, blend = make_turntable(args, addon, out)
        fbx = export_fbx(addon, Path(args.fbx)) if args.fbx else None
    finally:
        import_module(f"{addon}.engine_link").stop_local_engine()
    mp4 = None if args.no_mp4 or not frames else encode_mp4(frames, out / "turntable.mp4", args.fps, args.size)
    wrote = [str(p) for p in (blend, mp4, fbx) if p is not None]
    print(
        f"turntable.py: {len(frames)} frames ({args.renderer}) in {time.monotonic() - t0:.1f} s -> {', '.join(wrote)}"
    )
    return 0


def export_fbx(addon: str, path: Path) -> Path:
    """The imported avatar's head (mesh, shape keys, texture embedded) as an FBX file."""
    import bpy

    avatar = import_module(f"{addon}.scene_io").find_avatar(bpy.context)
    if avatar is None or avatar.head is None:
        raise RuntimeError("the import produced no head to export")
    path = path.expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj == avatar.head)
    bpy.context.view_layer.objects.active = avatar.head
    result = bpy.ops.export_scene.fbx(
        filepath=str(path), use_selection=True, object_types={"MESH"}, path_mode="COPY", embed_textures=True
    )
    if "FINISHED" not in result or not path.is_file():
        raise RuntimeError(f"the FBX export did not finish: {result}")
    return path


def import_avatar(args: argparse.Namespace, addon: str):
    """Build (``--photo``) or import (``--bundle``) the avatar; returns its scene_io.AvatarScene."""
    import bpy

    if args.photo:
        run_op(
            bpy.ops.likeness.build,
            filepath=str(Path(args.photo).absolute()),
            quality=args.quality,
            import_after=True,
            wait=True,
        )
    else:
        run_op(bpy.ops.likeness.import_avatar, directory=str(Path(args.bundle).absolute()))
    avatar = import_module(f"{addon}.scene_io").find_avatar(bpy.context)
    if avatar is None:
        raise RuntimeError("the import produced no avatar")
    return avatar


def make_turntable(args: argparse.Namespace, addon: str, out: Path) -> tuple[list[Path], Path]:
    """Import (or build + import), rig, save the .blend and render the frames; returns (frames, .blend path)."""
    import bpy

    avatar = import_avatar(args, addon)
    scene_io = import_module(f"{addon}.scene_io")
    scene = bpy.context.scene
    photo = avatar.camera
    lens = args.focal or (photo.data.lens if photo is not None else 50.0)
    radius = 0.5 * max(avatar.head.dimensions) if avatar.head is not None else 0.2
    distance = radius / math.sin(math.atan(0.5 * 36.0 / lens)) / max(args.fill, 0.05)
    run_op(
        bpy.ops.likeness.turntable,
        avatar=avatar.name,
        frame_start=1,
        frame_end=args.frames,
        focal_length=lens,
        distance=distance,
        pitch=args.pitch,
    )
    configure_render(scene, args.renderer, args.size, args.samples)
    if args.renderer == "cycles":
        scene_io.add_studio_lights(scene, avatar)
    if args.renderer == "neural":
        run_op(
            bpy.ops.likeness.neural_render,
            avatar=avatar.name,
            mode="RANGE",
            as_background=True,
            output_dir=str(out / "frames"),
            wait=True,
        )
        frames = sorted((out / "frames").glob("neural_*.png"))
    else:
        scene.render.filepath = str(out / "frames" / "frame_####")
        bpy.ops.render.render(animation=True, scene=scene.name)
        frames = [out / "frames" / f"frame_{f:04d}.png" for f in range(1, args.frames + 1)]
    if not args.no_pack:
        bpy.ops.file.pack_all()
    blend = out / "turntable.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), check_existing=False)
    missing = [f for f in frames if not f.is_file()]
    if missing or not frames:
        raise RuntimeError(f"{len(missing) or 'all'} frames were not rendered")
    return frames, blend


if __name__ == "__main__":
    run(main, "turntable.py")
