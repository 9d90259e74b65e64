"""Background work without freezing Blender: worker threads + one ``bpy.app.timers`` poller on the main thread.

Threading rules (the whole add-on follows them):

1. **bpy only on the main thread.** A worker function gets plain Python values (paths, dicts, numbers) that the
   operator read from bpy *before* submitting, and returns plain values. It never touches ``bpy``.
2. Workers talk to the main thread only through :class:`Task` methods (``report``, ``cancelled``), which put
   messages on a queue. The timer callback :func:`pump` drains that queue on the main thread, updates the task's
   public fields, calls ``on_done`` / ``on_error`` there (that is where datablocks get created) and redraws.
3. Cancel sets an event the worker checks between steps; the worker turns it into ``client.Cancelled``.
4. Scripts and tests (no event loop: ``blender -b -P`` or the ``bpy`` module) call :func:`wait`, which runs the
   same :func:`pump` on the calling (main) thread until the task ends.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import bpy

POLL_S = 0.2
_ids = itertools.count(1)
_messages: queue.Queue = queue.Queue()
_tasks: dict[int, Task] = {}


@dataclass
class Task:
    """One unit of background work. Public fields are written on the main thread only (by :func:`pump`)."""

    kind: str  # "build", "render", "download", "connect", ...
    label: str
    id: int = field(default_factory=lambda: next(_ids))
    state: str = "running"  # running | succeeded | failed | cancelled
    stage: str = ""
    progress: float = 0.0
    eta_s: float | None = None
    error: str = ""
    result: object = None
    started: float = field(default_factory=time.monotonic)
    on_done: Callable | None = None
    on_error: Callable | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)

    # -- worker side (any thread) --
    def report(self, stage: str, progress: float, eta_s: float | None = None) -> None:
        _messages.put((self.id, "progress", (stage, max(0.0, min(1.0, float(progress))), eta_s)))

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # -- main thread --
    def cancel(self) -> None:
        self._cancel.set()
        self.stage = "cancelling"

    @property
    def finished(self) -> bool:
        return self.state != "running"


def submit(kind: str, label: str, work: Callable[[Task], object], on_done=None, on_error=None) -> Task:
    """Run ``work(task)`` in a daemon thread; ``on_done(task)`` / ``on_error(task)`` later run on the main thread."""
    task = Task(kind=kind, label=label, on_done=on_done, on_error=on_error)
    _tasks[task.id] = task

    def run() -> None:
        try:
            _messages.put((task.id, "done", work(task)))
        except BaseException as exc:  # reported on the main thread, in plain words
            from .client import Cancelled

            kind_ = "cancelled" if isinstance(exc, Cancelled) or task.cancelled() else "failed"
            detail = "" if kind_ == "cancelled" else "".join(traceback.format_exception_only(type(exc), exc)).strip()
            _messages.put((task.id, kind_, (str(exc) or type(exc).__name__, detail)))

    threading.Thread(target=run, name=f"likeness-{kind}-{task.id}", daemon=True).start()
    if not bpy.app.timers.is_registered(pump):
        bpy.app.timers.register(pump, first_interval=POLL_S, persistent=True)
    return task


def pump() -> float | None:
    """Timer callback (main thread): apply queued worker messages; keep polling while tasks run."""
    changed = False
    while True:
        try:
            task_id, kind, payload = _messages.get_nowait()
        except queue.Empty:
            break
        task = _tasks.get(task_id)
        if task is None:
            continue
        changed = True
        if kind == "progress":
            task.stage, task.progress, task.eta_s = payload
            continue
        task.state = {"done": "succeeded"}.get(kind, kind)
        if kind == "done":
            task.result, task.progress = payload, 1.0
            callback = task.on_done
        else:
            task.error = payload[0]
            callback = task.on_error
        if callback is not None:
            try:
                callback(task)
            except Exception as exc:  # a failing callback must not kill the timer
                task.state, task.error = "failed", f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
    if changed:
        _redraw()
    return POLL_S if any(not t.finished for t in _tasks.values()) else None


def wait(task: Task, timeout_s: float | None = None) -> Task:
    """Block the main thread until ``task`` ends, pumping messages (for scripts, tests and ``wait=True``)."""
    t0 = time.monotonic()
    while not task.finished:
        pump()
        if task.finished:
            break
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            task.cancel()
            timeout_s = None  # give the worker its chance to stop cleanly, then keep pumping
        time.sleep(0.05)
    return task


def active(kind: str | None = None) -> list[Task]:
    return [t for t in _tasks.values() if not t.finished and (kind is None or t.kind == kind)]


def latest(kind: str) -> Task | None:
    """The most recent task of ``kind`` (running or not), for the panel."""
    found = [t for t in _tasks.values() if t.kind == kind]
    return found[-1] if found else None


def get(task_id: int) -> Task | None:
    return _tasks.get(task_id)


def forget_finished() -> None:
    for tid in [t.id for t in _tasks.values() if t.finished]:
        del _tasks[tid]


def shutdown(timeout_s: float = 2.0) -> None:
    """Cancel everything (unregister / quit): workers stop at their next check; the timer is removed."""
    for t in _tasks.values():
        t.on_done = t.on_error = None  # the add-on's classes are going away; results are dropped
        t.cancel()
    deadline = time.monotonic() + timeout_s
    while active() and time.monotonic() < deadline:
        pump()
        time.sleep(0.05)
    if bpy.app.timers.is_registered(pump):
        bpy.app.timers.unregister(pump)
    _tasks.clear()


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "STATUSBAR", "PREFERENCES", "IMAGE_EDITOR"}:
                area.tag_redraw()
