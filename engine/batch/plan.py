"""What each item of a batch needs, and why: build it, skip it (its bundle is up to date), finish it (bundle up to
date, Blender outputs missing or stale), or carry an earlier run's failure (``--resume``). Also the batch's work
folder (``OUT/.likeness-batch``: lock, journal, logs) and the journal of finished items."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

from engine import __version__
from engine.batch.source import EXTRAS_SUFFIX, BatchError, Item
from engine.config import BuildConfig, preset
from engine.errors import BundleError
from engine.io.bundle import MANIFEST, read_manifest

WORK_DIR = ".likeness-batch"
EXTRAS_DONE = "done.json"
BUILD, SKIP, FINISH, CARRY = "build", "skip", "finish", "carry"


@dataclass(frozen=True)
class Outputs:
    """What every item makes beside its bundle. ``turntable``: neural (the bundle's own) | blender | none;
    ``exports``: of glb, obj (in the bundle) and fbx (Blender); ``blender_renderer``: workbench | cycles."""

    turntable: str = "neural"
    exports: tuple[str, ...] = ("glb", "obj")
    blender_renderer: str = "workbench"

    @property
    def needs_blender(self) -> bool:
        return self.turntable == "blender" or "fbx" in self.exports


@dataclass
class Planned:
    """One item with its full settings, its decision and the reason for it."""

    item: Item
    settings: dict
    action: str
    reason: str
    input_sha256: str | None
    key: str
    earlier: dict | None = None

    @property
    def id(self) -> str:
        return self.item.id


def bundle_dir(out: Path, item_id: str) -> Path:
    return out / item_id


def extras_dir(out: Path, item_id: str) -> Path:
    return out / f"{item_id}{EXTRAS_SUFFIX}"


def work_dir(out: Path) -> Path:
    return out / WORK_DIR


# -- settings ---------------------------------------------------------------------------------------------------


def parse_sets(pairs: list[str] | None) -> dict:
    """``--set KEY=VALUE`` pairs as BuildConfig overrides, typed like the field's default (``method_options``
    takes JSON). BatchError for an unknown key, ``quality`` (use --quality) or a value of the wrong type."""
    defaults = {f.name: getattr(BuildConfig(), f.name) for f in fields(BuildConfig)}
    out: dict = {}
    for text in pairs or ():
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or key not in defaults or key == "quality":
            known = ", ".join(k for k in defaults if k != "quality")
            raise BatchError(f"--set {text!r}: not KEY=VALUE for a build setting", f"settings: {known}")
        kind = type(defaults[key])
        try:
            if kind is dict:
                parsed = json.loads(value)
                if not isinstance(parsed, dict):
                    raise ValueError
            elif kind is int:
                parsed = int(value)
            elif kind is float:
                parsed = float(value)
            else:
                parsed = value
        except ValueError:
            raise BatchError(f"--set {text!r}: {key} takes a {kind.__name__}") from None
        out[key] = parsed
    return out


def item_config(item: Item, quality: str, device: str, sets: dict) -> BuildConfig:
    """The item's build config: the preset of its quality, then ``--device`` and ``--set``, then the item's own
    options; checked by BuildConfig (BatchError naming the item when refused)."""
    opts = dict(item.options)
    q = opts.pop("quality", quality)
    try:
        BuildConfig.from_dict({**sets, **opts})  # unknown names and invalid values, before the preset's replace
        return preset(q, **{"device": device, **sets, **opts})
    except (TypeError, ValueError) as exc:
        raise BatchError(f"{item.origin or item.id}: {exc}", "check the item's options and --set") from None


def file_sha256(path: str | os.PathLike) -> str | None:
    """The photo file's sha256 (what the manifest records as ``input.sha256``), None when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def item_key(sha: str | None, settings: dict, outputs: Outputs) -> str:
    """What an item's result depends on, hashed: photo bytes, settings, engine version and the outputs asked."""
    blob = json.dumps([sha, settings, __version__, outputs.turntable, sorted(outputs.exports)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- is it up to date? -----------------------------------------------------------------------------------------


def _diff(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    shown = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:4])
    return shown + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def bundle_state(bundle: Path, sha: str | None, settings: dict) -> tuple[bool, str, dict | None]:
    """(up to date?, why, manifest): a bundle is up to date when its manifest's input sha256, settings and engine
    version match and every file it lists is there."""
    if not (bundle / MANIFEST).is_file():
        return False, "no bundle yet" if not bundle.exists() else "no complete bundle at the output path", None
    try:
        m = read_manifest(bundle)
    except BundleError as exc:
        return False, f"the bundle there is unreadable ({exc.message})", None
    got = (m.get("input") or {}).get("sha256") if isinstance(m.get("input"), dict) else None
    if sha is None:
        return False, "the photo cannot be read", m
    if got != sha:
        return False, f"the photo changed (sha256 {str(got)[:12]} -> {sha[:12]})", m
    if m.get("engine_version") != __version__:
        return False, f"engine version changed ({m.get('engine_version')} -> {__version__})", m
    old = m.get("settings") if isinstance(m.get("settings"), dict) else {}
    if old != settings:
        return False, f"settings changed ({_diff(old, settings)})", m
    files = m["files"]
    missing = [v for v in files.values() if isinstance(v, str) and not (bundle / v).is_file()]
    missing += [v for v in m.get("turntable_frames") or () if isinstance(v, str) and not (bundle / v).is_file()]
    if missing:
        return (
            False,
            f"the bundle lacks {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""),
            m,
        )
    return True, "up to date (photo sha256, settings and engine version match)", m


def manifest_sha256(bundle: Path) -> str | None:
    return file_sha256(bundle / MANIFEST)


def extras_wanted(outputs: Outputs, settings: dict) -> dict:
    """What an item's ``<id>.blender/done.json`` must say for its Blender outputs to be current."""
    return {
        "turntable": outputs.turntable == "blender",
        "fbx": "fbx" in outputs.exports,
        "renderer": outputs.blender_renderer,
        "frames": settings["turntable_frames"],
        "size": settings["turntable_size"],
    }


def extras_state(extras: Path, bundle: Path, outputs: Outputs, settings: dict) -> tuple[bool, str]:
    if not outputs.needs_blender:
        return True, ""
    try:
        done = json.loads((extras / EXTRAS_DONE).read_text())
    except (OSError, ValueError):
        return False, "the Blender outputs are missing"
    if not isinstance(done, dict) or done.get("bundle_manifest_sha256") != manifest_sha256(bundle):
        return False, "the Blender outputs are of an older bundle"
    if any(done.get(k) != v for k, v in extras_wanted(outputs, settings).items()):
        return False, "the Blender outputs were made with other options"
    return True, ""


# -- the journal -------------------------------------------------------------------------------------------------


class Journal:
    """``OUT/.likeness-batch/journal.jsonl``: one line per finished item (id, key, status, error), appended and
    fsynced; the last line of an id wins, a torn last line (a kill mid-write) is ignored."""

    def __init__(self, out: Path) -> None:
        self.path = work_dir(out) / "journal.jsonl"

    def read(self) -> dict[str, dict]:
        last: dict[str, dict] = {}
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return last
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                last[rec["id"]] = rec
        return last

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


# -- the plan ----------------------------------------------------------------------------------------------------


def plan_items(
    items: list[Item],
    out: Path,
    quality: str,
    device: str,
    sets: dict,
    outputs: Outputs,
    resume: bool = False,
    retry_failed: bool = False,
) -> list[Planned]:
    """Every item's decision. An up-to-date bundle is always skipped (idempotent); with ``resume`` an item that
    failed in an earlier run with the same photo, settings and outputs keeps that failure, unless
    ``retry_failed``."""
    earlier = Journal(out).read() if (resume or retry_failed) else {}
    plans = []
    for it in items:
        settings = item_config(it, quality, device, sets).to_dict()
        sha = file_sha256(it.photo)
        key = item_key(sha, settings, outputs)
        bundle = bundle_dir(out, it.id)
        ok, why, _ = bundle_state(bundle, sha, settings)
        if ok:
            extras_ok, extras_why = extras_state(extras_dir(out, it.id), bundle, outputs, settings)
            action, reason = (SKIP, why) if extras_ok else (FINISH, f"bundle up to date; {extras_why}")
        else:
            action, reason = BUILD, why
        rec = earlier.get(it.id)
        if action != SKIP and rec and rec.get("status") == "failed" and rec.get("key") == key:
            if retry_failed:
                reason = f"{reason}; retrying its earlier failure ({(rec.get('error') or {}).get('code')})"
            else:
                code = (rec.get("error") or {}).get("code")
                action, reason = CARRY, f"failed in an earlier run ({code}); --retry-failed tries it again"
        plans.append(Planned(it, settings, action, reason, sha, key, rec if action == CARRY else None))
    return plans
