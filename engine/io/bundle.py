"""The avatar bundle: one folder, every artifact written first, ``manifest.json`` written last and atomically,
the folder swapped into place in one step (engine.io.swap) -- a reader never sees a half-written bundle or an
empty path, a failed build leaves the previous bundle at that path untouched, and nothing but a bundle is ever
replaced."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path, PureWindowsPath

from engine import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION
from engine.errors import BundleError, OutputRefused
from engine.io import swap

MANIFEST = "manifest.json"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temp file in the same folder, fsync, then rename over ``path`` (a reader sees the old
    file or the new one). The file gets the permissions a plain ``open`` would (mkstemp's are owner-only)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, data: dict) -> None:
    """``data`` as indented JSON at ``path``, atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False))


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
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # folders still to be made: the nearest one that exists must take them
    try:
        if not parent.is_dir():
            raise NotADirectoryError(20, "a file stands where a folder should be")
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
    out.parent.mkdir(parents=True, exist_ok=True)
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


MAX_JSON_BYTES = 32 << 20
"""No bundle JSON file comes near this (landmarks.json and expression.json are tens of kB, a manifest ~10 kB)."""
MAX_JSON_DEPTH = 64
MAX_NAME_CHARS = 1024


def short(value, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a manifest's value, safe inside a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(path: str | os.PathLike) -> str:
    """A path for a one-line message: control characters escaped, at most the last 120 characters."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))
    return text if len(text) <= 120 else "..." + text[-117:]


def _finite(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _constant(name: str):
    raise ValueError(f"{name} is not a number")


def _depth(value) -> int:
    """How deeply ``value`` nests lists and objects (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if deepest > MAX_JSON_DEPTH:
                break
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def read_json(path: Path):
    """A bundle's JSON file (any JSON value; callers check its type); a one-line BundleError (never a raw
    OSError/ValueError/RecursionError) when it cannot be read, is over ``MAX_JSON_BYTES``, is not JSON, nests
    deeper than ``MAX_JSON_DEPTH`` or holds NaN/Infinity (which no bundle writes and no JSON client accepts)."""
    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{shown(path)} is not a regular file")
        if st.st_size > MAX_JSON_BYTES:
            raise BundleError(f"{shown(path)} is larger than a bundle's JSON file can be ({MAX_JSON_BYTES >> 20} MiB)")
        data = json.loads(path.read_bytes().decode("utf-8"), parse_float=_finite, parse_constant=_constant)
    except RecursionError as exc:
        raise BundleError(f"{shown(path)} nests too deeply to be a bundle's JSON file") from exc
    except OSError as exc:
        raise BundleError(f"{shown(path)} could not be read ({exc.strerror or type(exc).__name__})") from exc
    except ValueError as exc:
        reason = " ".join(str(exc).split())[:80]
        raise BundleError(f"{shown(path)} could not be read as JSON ({reason})") from exc
    if _depth(data) > MAX_JSON_DEPTH:
        raise BundleError(f"{shown(path)} nests more than {MAX_JSON_DEPTH} levels deep; not a bundle's JSON file")
    return data


_JSON_TYPES = {list: "a JSON array", str: "a JSON string", int: "a number", float: "a number", bool: "a boolean"}


def read_manifest(bundle_dir: str | os.PathLike) -> dict:
    """The manifest of a complete bundle, checked for structure only: ``manifest.json`` a regular file inside the
    folder, a JSON object of this format, a ``format_version`` this engine reads and a ``files`` object. A one-line
    BundleError otherwise. What loading and rendering read from it is checked by ``engine.avatar.check_manifest``
    and each file by :func:`bundle_file`."""
    folder = Path(bundle_dir)
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleError(f"{shown(folder)} is not a Likeness avatar bundle (no {MANIFEST})")
    bundle_path(folder, MANIFEST, MANIFEST)  # manifest.json itself must not lead out of the bundle
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        what = _JSON_TYPES.get(type(manifest), "null")
        raise BundleError(f"{shown(folder)}: {MANIFEST} holds {what}, not a JSON object")
    fmt = manifest.get("format")
    if fmt != BUNDLE_FORMAT:
        raise BundleError(f"{shown(folder)} is not a Likeness avatar bundle (format {short(fmt)})")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(
            f"{shown(folder)}: manifest format_version {short(version)} is not a bundle format version "
            f"(a whole number from 1)",
            "rebuild the avatar",
        )
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{shown(folder)} was written by a newer Likeness (bundle format {version})", "upgrade the engine"
        )
    if "files" not in manifest:
        raise BundleError(f"{shown(folder)}: the manifest has no files object", "rebuild the avatar")
    if not isinstance(manifest["files"], dict):
        raise BundleError(f"{shown(folder)}: manifest files is {short(manifest['files'])}, not an object")
    return manifest


def bundle_label(bundle_dir: str | os.PathLike) -> str:
    """``bundle 'NAME'`` (the folder's own name, quoted and cut short) to begin a one-line message with."""
    return f"bundle {short(Path(bundle_dir).absolute().name, 40)}"


def bundle_path(bundle_dir: str | os.PathLike, rel, where: str, required: bool = True) -> Path | None:
    """THE resolution of a name a bundle gives for one of its files (``where`` says which entry, for the message).

    ``rel`` must be a non-empty relative ``str`` of at most ``MAX_NAME_CHARS`` characters, without NUL or ``\\``,
    with no drive; joined to the resolved bundle folder and resolved (symlinks included) it must lie strictly
    inside that folder and be a regular file. Otherwise a one-line :class:`BundleError` naming ``where``, raised
    before anything is opened. A name that is well-formed and stays inside but names no file is a BundleError when
    ``required``, else None."""
    folder = Path(bundle_dir)
    try:
        root = folder.resolve(strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise BundleError(f"{shown(folder)} is not a bundle folder") from exc
    label = f"{bundle_label(root)}: {where}"
    if not isinstance(rel, str) or not rel or len(rel) > MAX_NAME_CHARS or "\x00" in rel or "\\" in rel:
        raise BundleError(f"{label} is {short(rel)}, not the name of a file in the bundle", "rebuild the avatar")
    if os.path.isabs(rel) or PureWindowsPath(rel).drive:
        raise BundleError(f"{label} ({short(rel)}) is an absolute path; a bundle names its files relative to itself")
    try:
        target = (root / rel).resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise BundleError(f"{label} ({short(rel)}) cannot be resolved") from exc
    if target == root:
        raise BundleError(f"{label} ({short(rel)}) names the bundle folder itself, not a file in it")
    if not target.is_relative_to(root):
        raise BundleError(f"{label} ({short(rel)}) leads outside the bundle; refusing to read it")
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        if required:
            raise BundleError(f"{label} ({short(rel)}) is missing", "rebuild the avatar") from None
        return None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{label} ({short(rel)}) cannot be resolved") from exc
    if not stat.S_ISREG(mode):
        raise BundleError(f"{label} ({short(rel)}) is not a regular file")
    return target


def bundle_file(bundle_dir: str | os.PathLike, manifest: dict, key: str, required: bool = True) -> Path | None:
    """The file a bundle's manifest lists as ``files[key]``, resolved by :func:`bundle_path` (every read of a
    bundle file goes through here). A key the manifest does not list is a BundleError when ``required``, else
    None; a listed name that is malformed or leads out is always a BundleError."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise BundleError(f"{bundle_label(bundle_dir)}: the manifest has no files object")
    rel = files.get(key)
    if rel is None:
        if required:
            raise BundleError(f"{bundle_label(bundle_dir)}: the manifest lists no files.{key}", "rebuild the avatar")
        return None
    return bundle_path(bundle_dir, rel, f"files.{key}", required)


N_LANDMARKS = 478


def read_landmarks_world(bundle_dir: str | os.PathLike, manifest: dict):
    """The (478, 3) float64 face landmarks of the bundle's ``files.landmarks`` (world metres): finite, within
    100 m of the head centre; a one-line BundleError otherwise."""
    import numpy as np

    path = bundle_file(bundle_dir, manifest, "landmarks")
    data = read_json(path)
    pts = data.get("landmarks_world") if isinstance(data, dict) else None
    try:
        arr = np.asarray(pts, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.shape != (N_LANDMARKS, 3) or not np.isfinite(arr).all() or np.abs(arr).max() > 100.0:
        raise BundleError(
            f"{bundle_label(bundle_dir)}: files.landmarks holds no {N_LANDMARKS} x 3 landmarks_world in metres",
            "rebuild the avatar",
        )
    return arr
