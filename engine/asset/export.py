"""The asset's FBX and static OBJ (docs/ASSET.md, "Exports"): ``scripts/asset_export.py`` run in a Blender Python
process (``$LIKENESS_BLENDER``, else the bpy module's Python, else ``blender`` on PATH) writes them into a staging
folder inside the asset folder; each file is then renamed into place (a reader sees the old file or the new one,
a failed export leaves the folder as it was) and ``asset.json`` records them under ``exports``. This process never
imports bpy.

The exports are not manifest files: ``likeness asset`` never rewrites the bundle's manifest (written once, by the
build), and ``engine.io.manifest.OPTIONAL_FILES`` is also the list of files an asset build writes (the ``hair_*``
ones only for a head with hair)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from engine.errors import BackendUnavailable, BundleError, LikenessError
from engine.io import swap
from engine.io.bundle import write_json_atomic

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "asset_export.py"
BLENDER_ENV = "LIKENESS_BLENDER"
EXPORTS = ("fbx", "obj")
EXPORT_FILES = {"fbx": ("head.fbx",), "obj": ("head_static.mtl", "head_static.obj")}
"""What each export writes into the asset folder, in the order they are moved in (the .mtl before its OBJ)."""
INSTALL_HINT = f"pip install 'likeness[blender]', or put Blender 4.2-5.0 on PATH (or its path in {BLENDER_ENV})"
TIMEOUT_S = 600.0
log = logging.getLogger("likeness")


class ExportFailed(LikenessError):
    """Blender ran but did not write the exports (exit code 1; the folder is as it was)."""

    code = "export_failed"


def blender_launcher(env: dict, has_bpy: bool | None = None, python: str = sys.executable) -> list[str] | None:
    """How to run a Blender Python script (append the script, ``--`` and its arguments): ``$LIKENESS_BLENDER`` (a
    Blender binary, run headless), else ``python`` when this Python has the bpy module, else ``blender`` on
    ``env``'s PATH; None when there is none. (``likeness asset --exports`` and ``likeness batch`` both.)"""
    exe = env.get(BLENDER_ENV) or None
    if exe is None:
        if has_bpy is None:
            has_bpy = importlib.util.find_spec("bpy") is not None
        if has_bpy:
            return [python]
        exe = shutil.which("blender", path=env.get("PATH"))
        if exe is None:
            return None
    return [exe, "-b", "--factory-startup", "--python-exit-code", "1", "-P"]


def blender_command(env: dict | None = None, has_bpy: bool | None = None) -> list[str]:
    """:func:`blender_launcher` for the exports: BackendUnavailable (exit code 2) when there is no Blender, or
    when ``$LIKENESS_BLENDER`` names no executable file."""
    env = os.environ if env is None else env
    exe = env.get(BLENDER_ENV) or None
    if exe is not None and not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise BackendUnavailable(f"{BLENDER_ENV}={exe} is not an executable file", INSTALL_HINT)
    cmd = blender_launcher(env, has_bpy)
    if cmd is None:
        raise BackendUnavailable(
            "the FBX and OBJ exports need Blender: neither the bpy module nor a blender binary is here", INSTALL_HINT
        )
    return cmd


def parse_exports(text: str) -> tuple[str, ...]:
    """``"fbx,obj"`` -> ("fbx", "obj"); ValueError naming the choices otherwise."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in EXPORTS]
    if bad or not names:
        raise ValueError(f"{text!r}: choose from {', '.join(EXPORTS)} (comma-separated)")
    return names


def export_asset(
    folder: Path,
    exports: tuple[str, ...],
    resolution: tuple[int, int] | None = None,
    command: list[str] | None = None,
    timeout_s: float = TIMEOUT_S,
) -> dict:
    """Write ``exports`` (of EXPORTS) of the asset in ``folder`` (its head.glb; texture.png, normal.png,
    roughness.png and hair.png for the FBX's and the .mtl's maps) into that folder; ``resolution`` is the photo's
    (width, height) px, for the FBX camera's aspect. Returns asset.json's ``exports`` record. BackendUnavailable
    without Blender, ExportFailed when Blender fails, BundleError when the folder holds no asset; in every failure
    nothing in the folder is changed."""
    folder = Path(folder)
    glb = folder / "head.glb"
    if not glb.is_file():
        raise BundleError(f"{folder} holds no asset (no head.glb)", "run likeness asset BUNDLE first")
    unknown = [e for e in exports if e not in EXPORTS]
    if unknown or not exports:
        raise ValueError(f"exports are of {EXPORTS}, not {exports!r}")
    cmd = list(command) if command is not None else blender_command()
    dest = folder / "exports"  # staging folders are named for it: .exports.staging-PID-HEX
    swap.sweep(dest)
    stage = swap.leftover_path(dest, "staging")
    stage.mkdir()
    try:
        wrote = _run_blender(cmd, glb, stage, exports, resolution, timeout_s)
        names = [n for e in exports for n in EXPORT_FILES[e]]
        missing = [n for n in names if not (stage / n).is_file() or (stage / n).stat().st_size == 0]
        if missing:
            raise ExportFailed(f"Blender wrote no {', '.join(missing)}", "see the messages above")
        for n in names:
            with open(stage / n, "rb") as fh:
                os.fsync(fh.fileno())
        record = _record(folder, exports, wrote, {n: (stage / n).stat().st_size for n in names})
        for n in names:
            os.replace(stage / n, folder / n)
        _write_info(folder, record)
        return record
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _run_blender(cmd, glb: Path, stage: Path, exports, resolution, timeout_s: float) -> dict:
    args = ["--glb", str(glb.absolute()), "-o", str(stage.absolute()), "--textures", str(glb.parent.absolute())]
    if "fbx" in exports:
        args += ["--fbx", EXPORT_FILES["fbx"][0]]
    if "obj" in exports:
        args += ["--obj", EXPORT_FILES["obj"][1]]
    if resolution:
        args += ["--resolution", str(int(resolution[0])), str(int(resolution[1]))]
    try:
        r = subprocess.run(
            [*cmd, str(SCRIPT), "--", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise ExportFailed(f"Blender did not finish the exports in {timeout_s:.0f} s") from None
    except OSError as exc:
        raise BackendUnavailable(f"cannot run Blender ({cmd[0]}): {exc.strerror or exc}", INSTALL_HINT) from None
    log.debug("Blender (%s):\n%s%s", " ".join(cmd), r.stdout[-4000:], r.stderr[-4000:])
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
        raise ExportFailed(f"the Blender export failed: {last[:300]}", "rerun with -v to see Blender's output")
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise ExportFailed("the Blender export printed no result", "rerun with -v to see Blender's output")


def _read_info(folder: Path) -> dict:
    try:
        info = json.loads((folder / "asset.json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _record(folder: Path, exports, wrote: dict, sizes: dict) -> dict:
    """asset.json's ``exports``: the earlier record of exports not redone (if their files are there) + these."""
    old = _read_info(folder).get("exports")
    record = {k: v for k, v in (old if isinstance(old, dict) else {}).items() if k in EXPORTS}
    record = {k: v for k, v in record.items() if all((folder / n).is_file() for n in EXPORT_FILES[k])}
    for e in exports:
        record[e] = {
            "files": list(EXPORT_FILES[e]),
            "bytes": {n: sizes[n] for n in EXPORT_FILES[e]},
            "blender": wrote.get("blender", ""),
            "seconds": wrote.get("seconds"),
        }
    return record


def _write_info(folder: Path, record: dict) -> None:
    info = _read_info(folder)
    if info:
        write_json_atomic(folder / "asset.json", {**info, "exports": record})


def remove_stale_exports(folder: Path, keep: tuple[str, ...] = ()) -> list[str]:
    """Delete the exports (but ``keep``) a rebuilt asset no longer matches; returns the file names removed."""
    gone = []
    for e, names in EXPORT_FILES.items():
        if e in keep:
            continue
        for n in names:
            p = Path(folder) / n
            if p.is_file():
                p.unlink()
                gone.append(n)
    return gone
