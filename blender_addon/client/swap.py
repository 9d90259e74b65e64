"""Put a finished folder where another one is, so that a reader of that path sees the old folder or the new one
and never nothing; sweep what a killed writer left beside it.

Linux swaps the two paths in one system call (``renameat2(RENAME_EXCHANGE)``, ext4/xfs/btrfs/tmpfs). Where
that call is missing (macOS, Windows, some network filesystems) the fallback is two renames, ``dest`` aside to
``.NAME.old-PID-HEX`` and the staged folder into ``dest``; a kill between them leaves ``dest`` missing for the
next :func:`sweep` to put back. Leftovers carry the writer's process id, so a sweep never touches the folders
of a writer that is still running.

Stdlib only, no engine imports: ``blender_addon/client/swap.py`` is a verbatim copy (tests/test_swap.py).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import sys
import uuid
from pathlib import Path

RENAME_EXCHANGE = 2
"""renameat2 flag: swap the two paths atomically (linux/fs.h)."""
AT_FDCWD = -100
LEFTOVER_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>staging|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


def leftover_path(dest: Path, kind: str) -> Path:
    """A sibling of ``dest`` named for this process: ``.NAME.staging-PID-HEX`` or ``.NAME.old-PID-HEX``."""
    return dest.parent / f".{dest.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None


def exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` (both must exist) in one step. False, with nothing changed, when this
    platform or filesystem cannot; other failures raise OSError."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: no exchange here
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def swap_into_place(stage: Path, dest: Path) -> None:
    """Make the finished folder ``stage`` (a sibling of ``dest``) appear at ``dest``; what was at ``dest`` is
    deleted once nothing can see it. The caller has checked that ``dest`` may be replaced."""
    if not os.path.lexists(dest):
        os.replace(stage, dest)
        return
    if exchange(stage, dest):
        _remove(stage)  # now the old folder
        return
    old = leftover_path(dest, "old")
    os.replace(dest, old)
    os.replace(stage, dest)
    _remove(old)


def _alive(pid: int) -> bool:
    """False only when no process ``pid`` exists (never signals it: os.kill on Windows would end it)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # pragma: no cover - Windows only
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if handle:
            kernel32.CloseHandle(handle)
            return True
        return ctypes.get_last_error() != 87  # ERROR_INVALID_PARAMETER: no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or we cannot tell: leave its folders alone
    return True


def sweep(dest: Path) -> list[str]:
    """Clean up beside ``dest`` after writers that died: put back an ``.old-`` folder when ``dest`` is missing
    (a kill between the fallback's two renames), delete stale ``.staging-`` and ``.old-`` folders. Returns what
    it did, one short phrase each."""
    done: list[str] = []
    if not dest.parent.is_dir():
        return done
    stale = []
    for p in dest.parent.iterdir():
        m = LEFTOVER_RE.match(p.name)
        if m and m["name"] == dest.name and not _alive(int(m["pid"])):
            stale.append((m["kind"], p))
    for kind, p in sorted(stale, key=lambda kp: kp[0] != "old"):
        if kind == "old" and not os.path.lexists(dest):
            os.replace(p, dest)
            done.append(f"restored {dest.name} from {p.name}")
        else:
            _remove(p)
            done.append(f"removed {p.name}")
    return done
