"""The avatar bundle: one folder, every artifact written first, ``manifest.json`` written last and atomically,
the folder swapped into place in one step (engine.io.swap) -- a reader never sees a half-written bundle or an
empty path, a failed build leaves the previous bundle at that path untouched, and nothing but a bundle is ever
replaced."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from engine import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION
from engine.errors import BundleError, OutputRefused
from engine.io import swap

MANIFEST = "manifest.json"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _is_bundle(path: Path) -> bool:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == BUNDLE_FORMAT


def check_output(out_dir: str | os.PathLike) -> Path:
    """The resolved output path if a bundle may be written there, else :class:`OutputRefused` (nothing touched).

    A bundle may replace nothing, an empty folder, or a Likeness bundle (recognised by its manifest); never a
    file or a folder holding anything else. The parent must be a folder we can create entries in (tried, not
    guessed from permission bits). Leftovers of a killed earlier write are swept first (engine.io.swap)."""
    out = Path(out_dir).expanduser().resolve()
    hint = "choose another output folder (-o), or move what is there yourself"
    if out.exists():
        if not out.is_dir():
            raise OutputRefused(f"{out} is a file, not a bundle folder; refusing to replace it", hint)
        if any(out.iterdir()) and not _is_bundle(out):
            raise OutputRefused(f"{out} exists and is not a Likeness avatar bundle; refusing to replace it", hint)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryDirectory(prefix=f".{out.name}.probe-", dir=parent).cleanup()
    except OSError as exc:
        raise OutputRefused(
            f"cannot write a bundle in {parent}: {exc.strerror or exc}", "choose an output folder you can write to"
        ) from exc
    swap.sweep(out)
    return out


@contextmanager
def staged_bundle(out_dir: str | os.PathLike):
    """Yield a fresh staging folder beside ``out_dir``; on success swap it into place (engine.io.swap: readers
    see the old bundle or the new one, never neither), on failure delete it. Refuses, before anything is
    written, an output that :func:`check_output` refuses."""
    out = check_output(out_dir)
    stage = swap.leftover_path(out, "staging")
    stage.mkdir()
    try:
        yield stage
        if not (stage / MANIFEST).exists():
            raise BundleError("internal: bundle staged without a manifest")
        check_output(out)  # again: something may have appeared there while we built
        swap.swap_into_place(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def read_json(path: Path) -> dict:
    """A bundle's JSON file; a BundleError (not a raw OSError/ValueError) when it cannot be read or parsed."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path} could not be read as JSON") from exc


def read_manifest(bundle_dir: str | os.PathLike) -> dict:
    """The manifest of a complete bundle; a clear BundleError otherwise."""
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a Likeness avatar bundle (no {MANIFEST})")
    manifest = read_json(path)
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{bundle_dir} is not a Likeness avatar bundle (format {manifest.get('format')!r})")
    if int(manifest.get("format_version", 0)) > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{bundle_dir} was written by a newer Likeness (bundle format {manifest['format_version']})",
            "upgrade the engine",
        )
    return manifest
