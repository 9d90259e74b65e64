"""An avatar bundle folder as the add-on sees it: the manifest, its cameras and its files. Pure Python, no bpy.

The bundle format is the engine's (README.md, "The avatar bundle"); this module reads it without the engine.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from .conventions import Intrinsics

FORMAT = "likeness-avatar"
FORMAT_VERSIONS = (1,)
#: Files the add-on uses; a download from the engine fetches only these (not the radiance field).
IMPORT_KEYS = (
    "glb",
    "obj",
    "mtl",
    "texture",
    "depth_exr",
    "normal",
    "alpha",
    "photo_crop",
    "input_render",
    "landmarks",
    "photo",
    "shape_keys",
    "asset_glb",
    "asset_subd1_glb",
    "asset_subd2_glb",
)


MAX_NAME_CHARS = 1024
MAX_JSON_BYTES = 32 << 20


class BundleInvalid(ValueError):
    """The folder is not a complete avatar bundle this add-on understands."""


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bundle_path(bundle_dir, rel, where: str, required: bool = True) -> Path | None:
    """The add-on's copy of the engine's ``engine.io.bundle.bundle_path`` (the add-on never imports the engine;
    tests/test_bundle_reads.py checks the two agree on good and evil names): ``rel`` must be a non-empty relative
    str (no NUL, no backslash, no drive, at most MAX_NAME_CHARS) that, resolved with symlinks, is a regular file
    strictly inside the resolved bundle folder; else :class:`BundleInvalid`. A well-formed name of a file that is
    not there: BundleInvalid when ``required``, else None."""
    try:
        root = Path(bundle_dir).resolve(strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise BundleInvalid(f"{bundle_dir} is not a bundle folder") from exc
    label = f"bundle {_short(root.name, 40)}: {where}"
    if not isinstance(rel, str) or not rel or len(rel) > MAX_NAME_CHARS or "\x00" in rel or "\\" in rel:
        raise BundleInvalid(f"{label} is {_short(rel)}, not the name of a file in the bundle")
    if os.path.isabs(rel) or PureWindowsPath(rel).drive:
        raise BundleInvalid(f"{label} ({_short(rel)}) is an absolute path; a bundle names its files relative to itself")
    try:
        target = (root / rel).resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise BundleInvalid(f"{label} ({_short(rel)}) cannot be resolved") from exc
    if target == root:
        raise BundleInvalid(f"{label} ({_short(rel)}) names the bundle folder itself, not a file in it")
    if not target.is_relative_to(root):
        raise BundleInvalid(f"{label} ({_short(rel)}) leads outside the bundle; refusing to read it")
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        if required:
            raise BundleInvalid(f"{label} ({_short(rel)}) is missing") from None
        return None
    except (OSError, ValueError) as exc:
        raise BundleInvalid(f"{label} ({_short(rel)}) cannot be resolved") from exc
    if not stat.S_ISREG(mode):
        raise BundleInvalid(f"{label} ({_short(rel)}) is not a regular file")
    return target


def bundle_file(bundle_dir, manifest: dict, key: str, required: bool = True) -> Path | None:
    """The add-on's copy of ``engine.io.bundle.bundle_file``: ``manifest["files"][key]`` through
    :func:`bundle_path`; a key not listed is BundleInvalid when ``required``, else None."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise BundleInvalid(f"bundle {_short(Path(bundle_dir).name, 40)}: the manifest has no files object")
    rel = files.get(key)
    if rel is None:
        if required:
            raise BundleInvalid(f"bundle {_short(Path(bundle_dir).name, 40)}: the manifest lists no files.{key}")
        return None
    return bundle_path(bundle_dir, rel, f"files.{key}", required)


def read_json(path: Path):
    """A bundle's JSON file, or BundleInvalid (never a raw OSError/ValueError/RecursionError)."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_JSON_BYTES:
            raise BundleInvalid(f"{path} is not a bundle's JSON file")
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        if isinstance(exc, BundleInvalid):
            raise
        raise BundleInvalid(f"cannot read {path}: {' '.join(str(exc).split())[:120]}") from exc


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        stem = Path(str(self.manifest.get("input", {}).get("name") or self.path.name)).stem
        return stem or "avatar"

    @property
    def photo_intrinsics(self) -> Intrinsics:
        return Intrinsics.from_dict(self.manifest["camera"]["photo"]["intrinsics"])

    @property
    def work_intrinsics(self) -> Intrinsics:
        return Intrinsics.from_dict(self.manifest["camera"]["work"]["intrinsics"])

    @property
    def crop_box_px(self) -> tuple[float, float, float]:
        x0, y0, side = self.manifest["camera"]["work"]["crop_box_px"]
        return float(x0), float(y0), float(side)

    @property
    def cam2world(self) -> list[list[float]]:
        return [[float(v) for v in row] for row in self.manifest["camera"]["cam2world"]]

    @property
    def quality(self) -> str:
        return str(self.manifest.get("settings", {}).get("quality", ""))

    @property
    def warnings(self) -> list[str]:
        """What the build recorded for the user (manifest ``warnings``: e.g. several faces in the photo)."""
        items = self.manifest.get("warnings")
        return [str(w.get("message", "")) for w in items if isinstance(w, dict)] if isinstance(items, list) else []

    def file(self, key: str) -> Path | None:
        """Absolute path of the file the manifest lists under ``key`` (:func:`bundle_file`), or None when it is
        not listed or not there; BundleInvalid when the name is malformed or leads out of the bundle."""
        return bundle_file(self.path, self.manifest, key, required=False)

    def landmarks_world(self) -> list[tuple[float, float, float]]:
        """The 478 face landmarks in the engine world frame (metres), or [] when the bundle has none;
        BundleInvalid when the file is not a list of finite (x, y, z)."""
        p = self.file("landmarks")
        if p is None:
            return []
        data = read_json(p)
        pts = data.get("landmarks_world", []) if isinstance(data, dict) else None
        try:
            out = [(float(x), float(y), float(z)) for x, y, z in pts]
        except (TypeError, ValueError) as exc:
            raise BundleInvalid(f"{p.name} holds no list of (x, y, z) landmarks") from exc
        if not all(math.isfinite(v) for pt in out for v in pt):
            raise BundleInvalid(f"{p.name} holds landmarks that are not finite numbers")
        return out


def read_bundle(path: str | Path) -> Bundle:
    """Open a bundle folder; :class:`BundleInvalid` with a plain-words reason when it cannot be used."""
    path = Path(path).expanduser()
    if path.is_file() and path.name == "manifest.json":
        path = path.parent
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise BundleInvalid(f"{path} is not an avatar bundle (no manifest.json)")
    bundle_path(path, "manifest.json", "manifest.json")  # not a link out of the folder
    return bundle_from_manifest(path, read_json(mpath))


def bundle_from_manifest(path: Path, manifest: dict) -> Bundle:
    """Check what the importer reads -- format, version, the cameras, every file it may open -- up front, so an
    import never fails half-way on a bad bundle: BundleInvalid with one line instead."""
    if not isinstance(manifest, dict):
        raise BundleInvalid(f"the manifest in {path} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise BundleInvalid(f"{path} holds a manifest of format {_short(manifest.get('format'))}, not {FORMAT!r}")
    version = manifest.get("format_version")
    if isinstance(version, bool) or version not in FORMAT_VERSIONS:
        raise BundleInvalid(
            f"bundle format version {_short(version)} is not supported by this add-on "
            f"(it reads {', '.join(map(str, FORMAT_VERSIONS))}); update the add-on"
        )
    for key in ("camera", "files"):
        if not isinstance(manifest.get(key), dict):
            raise BundleInvalid(f"the manifest in {path} has no {key!r} section")
    bundle = Bundle(Path(path), manifest)
    try:
        bundle.photo_intrinsics, bundle.work_intrinsics, bundle.crop_box_px  # noqa: B018 - they must parse
        c2w = bundle.cam2world
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleInvalid(f"the manifest in {path} has an unreadable camera section") from exc
    if len(c2w) != 4 or any(len(row) != 4 for row in c2w) or not all(math.isfinite(v) for r in c2w for v in r):
        raise BundleInvalid(f"the manifest in {path} has no 4x4 camera.cam2world")
    for key in IMPORT_KEYS:
        bundle.file(key)  # a malformed name or one leading out of the bundle is refused here, not mid-import
    if bundle.file("glb") is None and bundle.file("obj") is None:
        raise BundleInvalid(f"{path} has no head mesh (head.glb or head.obj)")
    bundle.landmarks_world()
    return bundle
