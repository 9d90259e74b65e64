"""One item's process (``python -m engine.batch.item``) with a timeout and a retry budget, and the local pool that
runs ``--jobs`` of them at once. The Ray runner (run_ray.py) calls the same :func:`run_item` inside its tasks.

An attempt fails with the item's own error (bad photo, no face, out of memory...), or, when the process ends
without a result, as ``timeout`` (killed at ``--timeout``), ``native_crash`` (ended by SIGABRT, SIGSEGV, SIGBUS,
SIGFPE or SIGILL: the same photo crashes again, so it is not retried) or ``worker_crashed`` (killed otherwise, e.g.
by the kernel's out-of-memory killer). Only :data:`RETRYABLE` errors are retried, at most ``max_retries`` times.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from engine.batch.item import ATTEMPT_ENV, PARENT_ENV

RETRYABLE = frozenset({"timeout", "worker_crashed", "out_of_memory"})
NATIVE_CRASH_SIGNALS = frozenset({signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL})
"""As the server's supervisor counts them (engine.server.supervisor)."""

_LIVE: dict[int, subprocess.Popen] = {}
_LIVE_LOCK = threading.Lock()


def kill_all() -> None:
    """SIGKILL every item process (and its process group: a Blender child) this process started and still runs."""
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    for p in procs:
        _kill_group(p)


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_error(rc: int, timed_out: bool, timeout_s: float) -> dict:
    if timed_out:
        return {
            "code": "timeout",
            "message": f"the item ran past its timeout of {timeout_s:g} s and was stopped",
            "hint": "raise --timeout, or use a lower --quality",
        }
    if rc < 0 and -rc in NATIVE_CRASH_SIGNALS:
        name = signal.Signals(-rc).name
        return {
            "code": "native_crash",
            "message": f"the item's process crashed in native code ({name})",
            "hint": "the same photo crashes again: crop it around the face or re-save it as an ordinary JPEG",
        }
    how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
    return {
        "code": "worker_crashed",
        "message": f"the item's process ended without a result ({how})",
        "hint": "SIGKILL is often the kernel's out-of-memory killer: run fewer --jobs or use a lower --quality",
    }


def run_attempt(spec: dict, attempt: int, on_event, timeout_s: float, log_path: Path) -> dict:
    """One process for the item: events forwarded to ``on_event`` (with id and attempt), the result returned."""
    env = {**os.environ, PARENT_ENV: str(os.getpid()), ATTEMPT_ENV: str(attempt)}
    threads = int(spec.get("threads") or 0)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base = {"id": spec["id"], "attempt": attempt}
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} attempt {attempt} on {socket.gethostname()}\n")
        log.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.batch.item"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,  # its own process group: a timeout kills a Blender child too
            text=True,
        )
        with _LIVE_LOCK:
            _LIVE[proc.pid] = proc
        on_event(
            {**base, "event": "item_started", "host": socket.gethostname(), "runner_pid": os.getpid(), "pid": proc.pid}
        )
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            _kill_group(proc)

        timer = threading.Timer(timeout_s, expire) if timeout_s > 0 else None
        if timer:
            timer.daemon = True
            timer.start()
        result = None
        try:
            try:
                proc.stdin.write(json.dumps(spec))
                proc.stdin.close()
            except BrokenPipeError:
                pass
            for line in proc.stdout:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(ev, dict):
                    continue
                if ev.get("event") == "result":
                    result = ev
                else:
                    on_event({**base, **ev})
            rc = proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                _kill_group(proc)
                proc.wait()
            with _LIVE_LOCK:
                _LIVE.pop(proc.pid, None)
        seconds = round(time.monotonic() - t0, 3)
    if result is not None and result.get("status") == "succeeded" and rc == 0:
        return {"status": "succeeded", "seconds": seconds, "error": None}
    if result is not None and result.get("status") == "failed" and not timed_out.is_set():
        return {"status": "failed", "seconds": seconds, "error": result.get("error")}
    return {"status": "failed", "seconds": seconds, "error": _exit_error(rc, timed_out.is_set(), timeout_s)}


def run_item(spec: dict, on_event, timeout_s: float, max_retries: int) -> dict:
    """The item to its end: attempts until one succeeds, the error is not :data:`RETRYABLE`, or the budget of
    ``max_retries`` retries is spent. Returns status, attempts, every attempt's error, seconds, host."""
    log_path = Path(spec["log"])
    errors, t0 = [], time.monotonic()
    for attempt in range(1, max_retries + 2):
        res = run_attempt(spec, attempt, on_event, timeout_s, log_path)
        if res["status"] == "succeeded":
            break
        errors.append(res["error"])
        retry = res["error"]["code"] in RETRYABLE and attempt <= max_retries
        on_event({"id": spec["id"], "attempt": attempt, "event": "attempt_failed", "will_retry": retry, **res})
        if not retry:
            break
    return {
        "id": spec["id"],
        "status": res["status"],
        "attempts": attempt,
        "error": res["error"],
        "attempt_errors": errors,
        "seconds": round(time.monotonic() - t0, 3),
        "host": socket.gethostname(),
    }


class LocalPool:
    """``jobs`` items at once, each in its own process, from threads of this one; events and results arrive on
    one queue that the driver drains (:meth:`poll`)."""

    def __init__(self, jobs: int, timeout_s: float, max_retries: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="likeness-item")
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.q: queue.Queue = queue.Queue()
        self.pending: dict[Future, str] = {}

    def submit(self, spec: dict) -> None:
        fut = self.pool.submit(run_item, spec, self.q.put, self.timeout_s, self.max_retries)
        self.pending[fut] = spec["id"]

        def done(f: Future, item_id=spec["id"]) -> None:
            exc = f.exception()
            res = f.result() if exc is None else _lost(item_id, exc)
            self.q.put({"event": "_result", "id": item_id, "result": res})

        fut.add_done_callback(done)

    def poll(self, wait_s: float = 0.25) -> list[dict]:
        """Events since the last call (``_result`` ones carry a finished item's result)."""
        out = []
        try:
            out.append(self.q.get(timeout=wait_s))
            while True:
                out.append(self.q.get_nowait())
        except queue.Empty:
            pass
        for ev in out:
            if ev.get("event") == "_result":
                for f, i in list(self.pending.items()):
                    if i == ev["id"]:
                        del self.pending[f]
        return out

    def busy(self) -> bool:
        return bool(self.pending) or not self.q.empty()

    def close(self) -> None:
        kill_all()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _lost(item_id: str, exc: BaseException) -> dict:
    """The result of an item whose runner itself failed (a bug, or a Ray worker lost past its retries)."""
    text = str(exc).strip()
    err = {
        "code": "worker_crashed",
        "message": f"the item's runner failed ({type(exc).__name__}: {text.splitlines()[0][:200] if text else ''})",
        "hint": "see the batch's log; rerun the batch to try again",
    }
    return {"id": item_id, "status": "failed", "attempts": 1, "error": err, "attempt_errors": [err], "seconds": 0.0}
