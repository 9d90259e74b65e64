"""An avatar bundle folder as the add-on sees it: the manifest, its cameras and its files. Pure Python, no bpy.

The bundle format is the engine's (README.md, "The avatar bundle"); this module reads it without the engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
)


class BundleInvalid(ValueError):
    """The folder is not a complete avatar bundle this add-on understands."""


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

    def file(self, key: str) -> Path | None:
        """Absolute path of the file the manifest lists under ``key``, or None when absent."""
        rel = self.manifest.get("files", {}).get(key)
        if not rel:
            return None
        p = (self.path / rel).resolve()
        if self.path.resolve() not in p.parents or not p.is_file():
            return None
        return p

    def landmarks_world(self) -> list[tuple[float, float, float]]:
        """The 478 face landmarks in the engine world frame (metres), or [] when the bundle has none."""
        p = self.file("landmarks")
        if p is None:
            return []
        data = json.loads(p.read_text())
        return [tuple(float(v) for v in pt) for pt in data.get("landmarks_world", [])]


def read_bundle(path: str | Path) -> Bundle:
    """Open a bundle folder; :class:`BundleInvalid` with a plain-words reason when it cannot be used."""
    path = Path(path).expanduser()
    if path.is_file() and path.name == "manifest.json":
        path = path.parent
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise BundleInvalid(f"{path} is not an avatar bundle (no manifest.json)")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise BundleInvalid(f"cannot read {mpath}: {exc}") from exc
    return bundle_from_manifest(path, manifest)


def bundle_from_manifest(path: Path, manifest: dict) -> Bundle:
    if manifest.get("format") != FORMAT:
        raise BundleInvalid(f"{path} holds a manifest of format {manifest.get('format')!r}, not {FORMAT!r}")
    if manifest.get("format_version") not in FORMAT_VERSIONS:
        raise BundleInvalid(
            f"bundle format version {manifest.get('format_version')} is not supported by this add-on "
            f"(it reads {', '.join(map(str, FORMAT_VERSIONS))}); update the add-on"
        )
    for key in ("camera", "files"):
        if key not in manifest:
            raise BundleInvalid(f"the manifest in {path} has no {key!r} section")
    bundle = Bundle(Path(path), manifest)
    if bundle.file("glb") is None and bundle.file("obj") is None:
        raise BundleInvalid(f"{path} has no head mesh (head.glb or head.obj)")
    return bundle
