"""The items of a batch: a folder of photos (optionally recursive), a glob, or a CSV / JSON list with a photo path,
an item id and per-item options. Each item gets a stable id, which names its bundle folder in the output."""

from __future__ import annotations

import csv
import glob
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InputError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")
"""What a folder or glob picks up (case-insensitive); a list may name any file."""
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RESERVED_IDS = ("report.json", "report.html")
EXTRAS_SUFFIX = ".blender"
"""``OUT/<id>.blender/`` holds an item's Blender turntable and FBX, so no id may end with it."""

OPTION_COLUMNS = {
    "face_index": ("face_index", int),
    "face": ("face_index", int),
    "focal_35mm": ("focal_35mm", float),
    "focal": ("focal_35mm", float),
    "quality": ("quality", str),
    "landmark_backend": ("landmark_backend", str),
    "landmarks": ("landmark_backend", str),
    "method": ("method", str),
    "uv_layout": ("uv_layout", str),
}
"""List columns (or JSON keys) that set one item's build options, by name -> (BuildConfig field, type)."""
PHOTO_COLUMNS = ("photo", "path", "file")


class BatchError(InputError):
    """A bad batch invocation: the source, the output or an option cannot be used (exit code 2, nothing built)."""

    code = "bad_batch"


@dataclass(frozen=True)
class Item:
    """One photo to build. ``photo``: absolute path; ``options``: BuildConfig overrides for this item only;
    ``origin``: where it was listed (for messages), e.g. ``list.csv row 3``."""

    id: str
    photo: str
    options: dict = field(default_factory=dict)
    origin: str = ""


def read_items(source: str, recursive: bool = False, exclude: Path | None = None) -> list[Item]:
    """The items of ``source`` (folder, ``.csv`` / ``.json`` list, or glob), in a stable order; BatchError when
    it names nothing usable. ``exclude``: a folder never scanned (the batch's output, when inside the source)."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = _scan(path, recursive, exclude)
        items = _derive_ids(files, path)
        what = f"folder {source}" + (" (and its sub-folders)" if recursive else "")
    elif path.is_file() and path.suffix.lower() == ".csv":
        items, what = _check_ids(_read_csv(path)), f"list {source}"
    elif path.is_file() and path.suffix.lower() == ".json":
        items, what = _check_ids(_read_json(path)), f"list {source}"
    elif path.is_file():
        raise BatchError(
            f"{source} is a file but not a .csv or .json list", "give a folder, a glob, or a list of photos"
        )
    elif glob.has_magic(source):
        base = Path(source.split("*")[0].split("?")[0].split("[")[0] or ".")
        base = base if base.is_dir() else base.parent
        files = [
            Path(p).absolute()
            for p in sorted(glob.glob(os.path.expanduser(source), recursive=True))
            if Path(p).suffix.lower() in PHOTO_SUFFIXES and Path(p).is_file() and not _excluded(Path(p), exclude)
        ]
        items, what = _derive_ids(files, base.absolute()), f"glob {source}"
    else:
        raise BatchError(f"{source}: no such folder, list or glob", "give a folder, a glob, or a .csv/.json list")
    if not items:
        raise BatchError(f"the {what} holds no photos ({', '.join(PHOTO_SUFFIXES)})", "check the source path")
    return items


def _excluded(p: Path, exclude: Path | None) -> bool:
    return exclude is not None and p.absolute().is_relative_to(exclude.absolute())


def _scan(root: Path, recursive: bool, exclude: Path | None) -> list[Path]:
    """Photos in ``root`` (and below when ``recursive``), skipping hidden entries, avatar bundles and ``exclude``."""
    found, stack = [], [root.absolute()]
    while stack:
        folder = stack.pop()
        if _excluded(folder, exclude) or (folder != root.absolute() and (folder / "manifest.json").is_file()):
            continue
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                if recursive:
                    stack.append(entry)
            elif entry.suffix.lower() in PHOTO_SUFFIXES:
                found.append(entry)
    return sorted(found)


def slug(text: str) -> str:
    """``text`` as an id: letters, digits, ``.``, ``_``, ``-``; anything else becomes ``_``."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "item"
    return s[:120]


def _derive_ids(files: list[Path], base: Path) -> list[Item]:
    """Ids from paths relative to ``base`` without the suffix (``sub/a.jpg`` -> ``sub__a``); two photos that
    would share one (``a.jpg`` and ``a.png``) keep their suffix (``a_jpg``, ``a_png``)."""
    stems = {}
    for f in files:
        try:
            rel = f.relative_to(base)
        except ValueError:
            rel = Path(f.name)
        stems[f] = slug("__".join(rel.with_suffix("").parts))
    counts: dict[str, int] = {}
    for s in stems.values():
        counts[s] = counts.get(s, 0) + 1
    items, used = [], set()
    for f in files:
        s = stems[f]
        if counts[s] > 1:
            s = slug(f"{s}_{f.suffix.lstrip('.')}")
        base_id, n = s, 2
        while s in used or s in RESERVED_IDS or s.endswith(EXTRAS_SUFFIX):
            s, n = f"{base_id}_{n}", n + 1
        used.add(s)
        items.append(Item(id=s, photo=str(f), origin=str(f)))
    return items


def _check_ids(items: list[Item]) -> list[Item]:
    seen: dict[str, str] = {}
    for it in items:
        if not ID_RE.match(it.id) or it.id in RESERVED_IDS or it.id.endswith(EXTRAS_SUFFIX):
            raise BatchError(
                f"{it.origin}: id {it.id!r} cannot name a bundle folder",
                f"use letters, digits, '.', '_' and '-' (not ending in {EXTRAS_SUFFIX}), at most 128 characters",
            )
        if it.id in seen:
            raise BatchError(f"{it.origin}: id {it.id!r} is also the id of {seen[it.id]}", "give every item its own id")
        seen[it.id] = it.origin
    return items


def _item_from_row(row: dict, folder: Path, origin: str) -> Item:
    row = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    photo = next((row[c] for c in PHOTO_COLUMNS if row.get(c) not in (None, "")), None)
    if not isinstance(photo, str):
        raise BatchError(f"{origin}: no photo path (a column or key named {' / '.join(PHOTO_COLUMNS)})")
    photo_path = Path(photo.strip()).expanduser()
    photo_path = photo_path if photo_path.is_absolute() else folder / photo_path
    options = {}
    for key, value in row.items():
        if key in PHOTO_COLUMNS or key == "id" or value in (None, ""):
            continue
        if key not in OPTION_COLUMNS:
            raise BatchError(
                f"{origin}: unknown column {key!r}", f"known: photo, id, {', '.join(sorted(OPTION_COLUMNS))}"
            )
        name, kind = OPTION_COLUMNS[key]
        try:
            options[name] = kind(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise BatchError(f"{origin}: {key} {value!r} is not a {kind.__name__}") from None
    raw_id = row.get("id")
    item_id = str(raw_id).strip() if raw_id not in (None, "") else slug(photo_path.stem)
    return Item(id=item_id, photo=str(photo_path.absolute()), options=options, origin=origin)


def _read_csv(path: Path) -> list[Item]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BatchError(f"{path} could not be read as CSV ({exc})") from exc
    return [_item_from_row(r, path.parent.absolute(), f"{path.name} row {i + 2}") for i, r in enumerate(rows)]


def _read_json(path: Path) -> list[Item]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BatchError(f"{path} could not be read as JSON ({exc})") from exc
    rows = data.get("items") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise BatchError(f"{path}: expected a list of items (or an object with an 'items' list)")
    items = []
    for i, r in enumerate(rows):
        origin = f"{path.name} item {i}"
        if isinstance(r, str):
            r = {"photo": r}
        if not isinstance(r, dict):
            raise BatchError(f"{origin}: an item is a photo path or an object with a 'photo' key")
        items.append(_item_from_row(r, path.parent.absolute(), origin))
    return items
