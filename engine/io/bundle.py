"""The avatar bundle: one folder, every artifact written first, ``manifest.json`` written last and atomically,
the folder swapped into place in one rename -- a reader never sees a half-written bundle, and a failed build
leaves the previous bundle at that path untouched."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from engine import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION
from engine.errors import BundleError

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


@contextmanager
def staged_bundle(out_dir: str | os.PathLike):
    """Yield a fresh staging folder beside ``out_dir``; on success swap it into place, on failure delete it."""
    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        yield stage
        if not (stage / MANIFEST).exists():
            raise BundleError("internal: bundle staged without a manifest")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
        os.replace(stage, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
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
