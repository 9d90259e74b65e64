"""The server's folder on disk: jobs.sqlite3, inputs/, avatars/<id>/ bundles, locks/.

Clients name artifacts by avatar id + file key, never by path; :meth:`Workspace.resolve_artifact` is the one
helper that turns those into a path (through engine.io.bundle.bundle_file: inside the bundle, after resolving
symlinks) and every file route uses it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from engine.errors import BundleError
from engine.io.bundle import MANIFEST, bundle_file, bundle_path, read_manifest

log = logging.getLogger("likeness.server")

ID_RE = re.compile(r"^[0-9a-f]{32}$")
KEY_RE = re.compile(r"^[A-Za-z0-9_+\-]{1,64}$")
FRAME_RE = re.compile(r"^turntable_frame_(\d{3,5})$")
INPUT_EXT = {"jpeg": "jpg", "png": "png", "webp": "webp", "heic": "heic"}


class NotFound(LookupError):
    """No such avatar, file key or file (deliberately says nothing about which part failed or where)."""


class Workspace:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.inputs = self.root / "inputs"
        self.avatars = self.root / "avatars"
        self.locks = self.root / "locks"
        for d in (self.root, self.inputs, self.avatars, self.locks):
            d.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "jobs.sqlite3"
        self._reported: set[str] = set()

    # -- inputs -----------------------------------------------------------------------------------------------

    def write_input(self, job_id: str, fmt: str, data: bytes) -> str:
        """Store an accepted upload durably (temp file in the same folder, fsync, rename); returns its name."""
        name = f"{job_id}.{INPUT_EXT[fmt]}"
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=self.inputs)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.inputs / name)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return name

    def read_input(self, name: str) -> bytes:
        return (self.inputs / Path(name).name).read_bytes()

    def remove_input(self, name: str) -> None:
        (self.inputs / Path(name).name).unlink(missing_ok=True)

    def prune_inputs(self, referenced: set[str]) -> int:
        """Delete uploads no job refers to (a crash between storing the upload and queueing its job)."""
        n = 0
        for p in self.inputs.iterdir():
            if p.name not in referenced:
                p.unlink(missing_ok=True)
                n += 1
        return n

    # -- bundles ----------------------------------------------------------------------------------------------

    def avatar_dir(self, avatar_id: str) -> Path:
        """Where the bundle of ``avatar_id`` lives (for the builder; readers use :meth:`bundle_dir`)."""
        if not ID_RE.match(avatar_id):
            raise NotFound(avatar_id)
        return self.avatars / avatar_id

    def bundle_dir(self, avatar_id: str) -> Path:
        """The resolved folder of a complete bundle inside avatars/, else NotFound."""
        path = self.avatar_dir(avatar_id)
        real = path.resolve()
        if real.parent != self.avatars or not (real / MANIFEST).is_file():
            raise NotFound(avatar_id)
        return real

    def manifest(self, avatar_id: str) -> dict:
        """The manifest of ``avatar_id``: NotFound when there is no bundle folder, BundleError (one line) when
        there is one but its manifest cannot be used."""
        return read_manifest(self.bundle_dir(avatar_id))

    def resolve_artifact(self, avatar_id: str, key: str) -> Path:
        """THE path helper: avatar id + file key -> a regular file inside that bundle, or NotFound.

        Keys are the manifest's ``files`` keys plus ``turntable_frame_NNN``; the manifest's value is resolved by
        :func:`engine.io.bundle.bundle_file` / :func:`~engine.io.bundle.bundle_path` (symlinks included, strictly
        inside the resolved bundle folder), and any refusal of the file is NotFound, which deliberately says
        nothing. A bundle whose manifest itself is unusable is a BundleError (``bad_bundle``)."""
        if not KEY_RE.match(key):
            raise NotFound(key)
        manifest = self.manifest(avatar_id)
        bundle = self.bundle_dir(avatar_id)
        m = FRAME_RE.match(key)
        try:
            if m:
                frames = manifest.get("turntable_frames")
                i = int(m.group(1))
                if not isinstance(frames, list) or i >= len(frames):
                    raise NotFound(key)
                return bundle_path(bundle, frames[i], f"turntable_frames[{i}]")
            return bundle_file(bundle, manifest, key)
        except BundleError as exc:
            raise NotFound(key) from exc

    def list_avatars(self, skipped: list | None = None) -> list[tuple[str, dict]]:
        """(id, manifest) of every complete bundle, oldest first; staging folders and strays are skipped. A
        folder with a manifest that cannot be used is left out too, appended to ``skipped`` as (id,
        BundleError) and logged once, so one bad bundle never fails the listing."""
        out = []
        for entry in sorted(self.avatars.iterdir()):
            if not ID_RE.match(entry.name):
                continue
            try:
                out.append((entry.name, self.manifest(entry.name)))
            except NotFound:
                continue
            except BundleError as exc:
                if skipped is not None:
                    skipped.append((entry.name, exc))
                if entry.name not in self._reported:
                    self._reported.add(entry.name)
                    log.warning("avatar %s is not listed: %s", entry.name, exc.one_line())
        out.sort(key=lambda im: str(im[1].get("created", "")))
        return out

    def complete_bundle_for(self, avatar_id: str, input_sha256: str, settings: dict) -> bool:
        """True when a finished bundle for this job already exists (a crash came after the swap)."""
        try:
            m = self.manifest(avatar_id)
        except (NotFound, BundleError):
            return False
        return _section(m, "input").get("sha256") == input_sha256 and m.get("settings") == settings

    def remove_staging(self, avatar_id: str) -> int:
        """Delete half-built leftovers of ``avatar_id`` (a build killed mid-way). Returns how many."""
        n = 0
        for p in self.avatars.glob(f".{avatar_id}.*"):
            if ".staging-" in p.name or ".old-" in p.name:
                shutil.rmtree(p, ignore_errors=True)
                n += 1
        return n

    def remove_all_staging(self) -> int:
        n = 0
        for p in self.avatars.glob(".*"):
            if p.is_dir() and (".staging-" in p.name or ".old-" in p.name):
                shutil.rmtree(p, ignore_errors=True)
                n += 1
        return n

    def summary(self, avatar_id: str, manifest: dict) -> dict:
        metrics = manifest.get("metrics")
        return {
            "id": avatar_id,
            "created": str(manifest.get("created", "")),
            "input_name": str(_section(manifest, "input").get("name", "")),
            "quality": str(_section(manifest, "settings").get("quality", "")),
            "metrics": metrics if isinstance(metrics, dict) else {},
        }


def _section(manifest: dict, name: str) -> dict:
    """``manifest[name]`` when it is an object, else ``{}`` (a summary never fails on a strange manifest)."""
    value = manifest.get(name)
    return value if isinstance(value, dict) else {}


class FileLock:
    """An exclusive advisory lock on a file in locks/ (flock on POSIX, msvcrt on Windows); released on close or
    when the holding process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = None

    def acquire(self, blocking: bool = True) -> bool:
        fh = open(self.path, "a+b")  # noqa: SIM115 - held open for the life of the lock
        try:
            if os.name == "nt":  # pragma: no cover - exercised on Windows only
                import msvcrt

                fh.seek(0)
                mode = msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK
                msvcrt.locking(fh.fileno(), mode, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
