"""Keeps one spawned build worker alive per device: restarts a worker that died (its job re-queued, or failed after
``max_attempts``), kills one that ignores a cancel for ``cancel_grace_s``, and stops it with the server."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
import uuid

from engine.server.jobs import JobStore
from engine.server.settings import ServerSettings
from engine.server.worker import worker_main
from engine.server.workspace import Workspace

log = logging.getLogger("likeness.server")

NATIVE_CRASH_SIGNALS = frozenset(
    int(getattr(signal, name)) for name in ("SIGABRT", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL") if hasattr(signal, name)
)
"""A worker ended by one of these crashed in native code (OpenCV, mediapipe, torch): deterministic for the same
input, unlike SIGKILL (the out-of-memory killer, an operator), so its job fails at once instead of re-queuing."""


class Supervisor:
    def __init__(self, settings: ServerSettings, ws: Workspace, store: JobStore, device: str) -> None:
        self.settings, self.ws, self.store, self.device = settings, ws, store, device
        self.ctx = multiprocessing.get_context("spawn")
        self.proc = None
        self.conn = None
        self.claim = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name=f"supervise-{device}")
        self.restarts = 0

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        self.claim = f"{self.device}/{uuid.uuid4().hex[:12]}"
        parent_conn, child_conn = self.ctx.Pipe()
        self.proc = self.ctx.Process(
            target=worker_main,
            args=(str(self.ws.root), self.device, self.claim, child_conn, self.settings.progress_interval_s),
            kwargs={"ray_address": self.settings.ray, "max_attempts": self.settings.max_attempts},
            name=f"likeness-worker-{self.device}",
        )
        self.proc.start()
        child_conn.close()
        self.conn = parent_conn
        log.info("worker for %s started (pid %s)", self.device, self.proc.pid)

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(10)
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _watch(self) -> None:
        backoff = 0.5
        while not self._stop.wait(0.25):
            try:
                if not self.proc.is_alive():
                    code = self.proc.exitcode
                    self._kill()
                    native = code is not None and -code in NATIVE_CRASH_SIGNALS
                    reason = f"signal {signal.Signals(-code).name}" if native else f"exit code {code}"
                    ids = self.store.release(self.claim, self.settings.max_attempts, reason, native_crash=native)
                    log.warning("worker for %s died (exit code %s); jobs released: %s", self.device, code, ids)
                    if self._stop.wait(backoff):
                        return
                    backoff = min(backoff * 2, 30.0)
                    self.restarts += 1
                    self._spawn()
                    continue
                backoff = 0.5
                for job in self.store.running_with_claim(self.claim):
                    asked = job.cancel_requested
                    if asked is not None and time.time() - asked > self.settings.cancel_grace_s:
                        log.warning(
                            "job %s ignored its cancel for %.0f s; killing its worker", job.id, time.time() - asked
                        )
                        self._kill()
                        self.store.force_cancel(job.id, self.claim)
                        self.ws.remove_staging(job.id)
                        self._spawn()
                        break
            except Exception:  # noqa: BLE001 - the watcher must outlive a transient SQLite or OS error
                log.exception("supervisor for %s", self.device)

    def stop(self) -> None:
        """Stop the worker; its running job goes back to the queue (a graceful stop costs it no attempt)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._kill()
        self.store.release(self.claim, self.settings.max_attempts, "server stopped", refund=True)
