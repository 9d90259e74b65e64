"""The process that makes one batch item: ``python -m engine.batch.item`` reads the item's spec (JSON) on stdin,
builds its bundle with :func:`engine.pipeline.build_avatar` (staged, swapped in atomically), then its Blender
outputs through ``scripts/turntable.py`` when asked, and writes events as JSON lines on stdout: ``stage``
(throttled) and one ``result`` (succeeded, or failed with the error's code, message and hint). Anything a native
library prints goes to stderr (the item's log), never into the events.

It dies with its parent (Linux ``PR_SET_PDEATHSIG``, and a watch on the parent's pid elsewhere), so a batch killed
with ``kill -9`` leaves no build running.

Fault injection, for tests and drills only: ``LIKENESS_BATCH_FAULT=KIND:ID[,KIND:ID...]`` makes item ``ID`` fail
as it enters its ``fit`` stage: ``crash`` aborts the process (SIGABRT, as a crash in native code would), ``kill``
SIGKILLs it (as the kernel's out-of-memory killer would), ``hang`` sleeps until the timeout, ``oom`` raises
MemoryError, ``flaky`` SIGKILLs only the item's first attempt. Unset, nothing is injected.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

FAULT_ENV = "LIKENESS_BATCH_FAULT"
PARENT_ENV = "LIKENESS_BATCH_PARENT"
ATTEMPT_ENV = "LIKENESS_BATCH_ATTEMPT"
PROGRESS_INTERVAL_S = 0.5
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """End this process when the process that started it ends (``PARENT_ENV`` names it)."""
    parent = int(os.environ.get(PARENT_ENV, "0") or 0)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if parent and os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    if parent:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def fault_for(item_id: str) -> str | None:
    """The fault injected into ``item_id`` by ``LIKENESS_BATCH_FAULT``, if any."""
    for part in os.environ.get(FAULT_ENV, "").split(","):
        kind, _, target = part.strip().partition(":")
        if target == item_id and kind in ("crash", "kill", "hang", "oom", "flaky"):
            return kind
    return None


def _inject(kind: str) -> None:
    if kind == "crash":
        os.abort()
    if kind == "kill" or (kind == "flaky" and os.environ.get(ATTEMPT_ENV, "1") == "1"):
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "hang":
        while True:
            time.sleep(60)
    if kind == "oom":
        raise MemoryError("injected by LIKENESS_BATCH_FAULT")


class Events:
    """JSON lines on a private copy of stdout; fd 1 itself is pointed at stderr for anything else that prints."""

    def __init__(self) -> None:
        self.fh = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self.lock = threading.Lock()

    def __call__(self, **event) -> None:
        with self.lock:
            self.fh.write(json.dumps(event) + "\n")
            self.fh.flush()


class StageProgress:
    """The pipeline's ``progress`` callable: a ``stage`` event on every new stage and at most every 0.5 s."""

    def __init__(self, emit: Events, fault: str | None) -> None:
        self.emit, self.fault = emit, fault
        self.stage, self.last = None, 0.0

    def __call__(self, stage: str, frac: float) -> None:
        if stage == "fit" and self.fault:
            _inject(self.fault)
        now = time.monotonic()
        if stage != self.stage or now - self.last >= PROGRESS_INTERVAL_S or frac >= 1.0:
            self.stage, self.last = stage, now
            self.emit(event="stage", stage=stage, fraction=round(float(frac), 3))


def build(spec: dict, progress: StageProgress) -> dict:
    from engine.config import BuildConfig
    from engine.io.images import load_photo

    cfg = BuildConfig.from_dict(spec["settings"])
    name = spec.get("name") or os.path.basename(spec["photo"])  # the server's jobs: the uploaded file's name
    photo = load_photo(spec["photo"], name)  # a bad photo fails before torch and mediapipe are even imported
    from engine.pipeline import build_avatar

    manifest = build_avatar(photo, cfg, spec["bundle"], progress, source_name=name)
    return manifest


def blender_outputs(spec: dict, emit: Events) -> None:
    """The Blender turntable (frames, MP4, .blend) and/or FBX of the finished bundle, through
    ``scripts/turntable.py`` (run by the bpy module's Python or a Blender binary), staged beside
    ``OUT/<id>.blender`` and swapped in with ``done.json`` written last."""
    from engine.batch.plan import EXTRAS_DONE, manifest_sha256
    from engine.io import swap
    from engine.io.bundle import write_json_atomic

    bl = spec["blender"]
    dest, bundle = Path(spec["extras"]), Path(spec["bundle"])
    swap.sweep(dest)
    stage = swap.leftover_path(dest, "staging")
    stage.mkdir(parents=True)
    try:
        emit(event="stage", stage="blender", fraction=0.0)
        args = ["--bundle", str(bundle), "-o", str(stage), "--renderer", bl["renderer"]]
        args += ["--frames", str(bl["frames"]), "--size", str(bl["size"])]
        if bl["fbx"]:
            args += ["--fbx", str(stage / "head.fbx")]
        if not bl["turntable"]:
            args += ["--no-turntable"]
        cmd = [sys.executable if c == "{python}" else c for c in bl["command"]] + [bl["script"], "--", *args]
        r = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=subprocess.PIPE, text=True, preexec_fn=_pdeathsig
        )
        if r.returncode != 0:
            from engine.errors import LikenessError

            sys.stderr.write(r.stderr)
            last = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
            raise LikenessError(f"the Blender step failed: {last[:300]}", "see the item's log")
        done = {"bundle_manifest_sha256": manifest_sha256(bundle), **{k: bl[k] for k in bl["wanted"]}}
        write_json_atomic(stage / EXTRAS_DONE, done)
        swap.swap_into_place(stage, dest)
        emit(event="stage", stage="blender", fraction=1.0)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


_PRCTL = None
if sys.platform.startswith("linux"):
    import ctypes as _ctypes

    try:
        _PRCTL = _ctypes.CDLL(None).prctl
    except (OSError, AttributeError):  # pragma: no cover
        _PRCTL = lambda *a: 0


def _pdeathsig() -> None:  # runs in the forked child, before exec
    if sys.platform.startswith("linux"):
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)


def run(spec: dict, emit: Events) -> int:
    from engine.errors import LikenessError, classify

    t0 = time.monotonic()
    fault = fault_for(spec["id"])
    threads = int(spec.get("threads") or 0)
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        if spec["action"] == "build":
            build(spec, StageProgress(emit, fault))
        elif fault:
            _inject(fault)
        if spec.get("blender"):
            blender_outputs(spec, emit)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the item's result, then the exit code
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        err = classify(exc, spec["settings"].get("device", "cpu"), "see the item's log", "the build")
        if not isinstance(exc, LikenessError):
            import traceback

            traceback.print_exc(file=sys.stderr)
        emit(
            event="result",
            status="failed",
            error={"code": err.code, "message": err.message, "hint": err.hint},
            seconds=round(time.monotonic() - t0, 3),
        )
        return err.exit_code
    emit(event="result", status="succeeded", seconds=round(time.monotonic() - t0, 3))
    return 0


def main() -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    die_with_parent()
    emit = Events()
    spec = json.loads(sys.stdin.read())
    return run(spec, emit)


if __name__ == "__main__":
    sys.exit(main())
