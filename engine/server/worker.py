"""The build worker: a process started with the *spawn* method (never forked, so never after CUDA init), one per
device. It claims queued jobs from SQLite, runs ``build_avatar`` into avatars/<id> (staged and swapped in
atomically by the engine), writes throttled progress, honours cancels, and exits as soon as its server dies. With
``likeness serve --ray`` it sends each build to the Ray cluster instead (engine/server/ray_jobs.py) and does the rest
as before.

Torch is imported only inside :func:`worker_main`, after the device is pinned.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import traceback
from dataclasses import replace

from engine.errors import Cancelled, LikenessError, OutOfMemory, classify
from engine.pipeline import STAGES
from engine.server.errors import hint_for, scrub
from engine.server.jobs import CANCELLED, FAILED, SUCCEEDED, Job, JobStore
from engine.server.schema import BuildOptions
from engine.server.settings import build_overrides
from engine.server.workspace import FileLock, Workspace

log = logging.getLogger("likeness.worker")

STAGE_WEIGHTS = {s.name: s.weight for s in STAGES}
"""Share of a draft build's time per pipeline stage (engine.pipeline.STAGES); turns stage fractions into one 0..1."""


class ProgressWriter:
    """The ``progress`` and ``cancel`` callables of one build: overall fraction, ETA, throttled SQLite writes."""

    def __init__(self, store: JobStore, job_id: str, claim: str, interval_s: float) -> None:
        self.store, self.job_id, self.claim, self.interval_s = store, job_id, claim, interval_s
        self.t0 = time.monotonic()
        self.stage = None
        self.overall = 0.0
        self.last_write = 0.0
        self.last_check = 0.0
        self.stop = False
        total = sum(STAGE_WEIGHTS.values())
        acc, self.starts = 0.0, {}
        for name, w in STAGE_WEIGHTS.items():
            self.starts[name] = (acc / total, w / total)
            acc += w

    def eta_s(self) -> float | None:
        if self.overall < 0.02:
            return None
        return (time.monotonic() - self.t0) * (1.0 - self.overall) / self.overall

    def __call__(self, stage: str, frac: float) -> None:
        start, width = self.starts.get(stage, (self.overall, 0.0))
        self.overall = min(1.0, max(self.overall, start + width * min(max(frac, 0.0), 1.0)))
        now = time.monotonic()
        if stage != self.stage or now - self.last_write >= self.interval_s:
            self.stage = stage
            self.last_write = now
            if not self.store.set_progress(self.job_id, self.claim, stage, self.overall, self.eta_s()):
                self.stop = True

    def cancel(self) -> bool:
        now = time.monotonic()
        if not self.stop and now - self.last_check >= self.interval_s / 2:
            self.last_check = now
            self.stop = self.store.should_stop(self.job_id, self.claim)
        return self.stop


def lighter(cfg):
    """The same build with half the rays per fitting step (the main GPU-memory knob), or None at the floor."""
    if cfg.rays_per_step < 512:
        return None
    return replace(cfg, rays_per_step=cfg.rays_per_step // 2)


def run_job(store: JobStore, ws: Workspace, job: Job, claim: str, device: str, interval_s: float, ray=None) -> str:
    """Build one claimed job to its terminal state; returns that state (or 'lost' if the claim was taken).
    ``ray``: an engine.server.ray_jobs.RayBuilds, which builds it on the cluster instead of in this process."""
    from engine.io.images import load_photo_bytes
    from engine.pipeline import build_avatar

    ws.remove_staging(job.id)
    kind = "auto" if ray is not None else "cuda" if device.startswith("cuda") else "cpu"  # Ray: the node decides
    cfg = replace(BuildOptions(**job.options_dict()).build_config(kind), **build_overrides())
    try:
        data = ws.read_input(job.input_file)
    except OSError:
        error = ("internal", "the uploaded photo of this job is missing from the workspace", "submit it again")
        return FAILED if store.finish(job.id, claim, FAILED, error=error) else "lost"
    if ws.complete_bundle_for(job.id, hashlib.sha256(data).hexdigest(), cfg.to_dict()):
        log.info("job %s: bundle already complete (finished before a crash)", job.id)
        return SUCCEEDED if store.finish(job.id, claim, SUCCEEDED, avatar_id=job.id) else "lost"

    progress = ProgressWriter(store, job.id, claim, interval_s)
    if ray is not None:
        state, kw = ray.run(job, cfg, hashlib.sha256(data).hexdigest(), progress)
        return state if store.finish(job.id, claim, state, **kw) else "lost"
    try:
        photo = load_photo_bytes(data, job.input_name)
        while True:
            try:
                manifest = build_avatar(
                    photo, cfg, ws.avatar_dir(job.id), progress, progress.cancel, source_name=job.input_name
                )
                break
            except Exception as exc:  # noqa: BLE001 - classified just below, nothing is swallowed
                err = classify(exc, device)
                if not isinstance(err, OutOfMemory) or lighter(cfg) is None:
                    if err.code == "internal":
                        log.error("job %s failed:\n%s", job.id, traceback.format_exc())
                    raise err from exc
                cfg = lighter(cfg)
                log.warning("job %s: out of memory, retrying with %d rays per step", job.id, cfg.rays_per_step)
                _free_device_memory()
        warnings = [scrub(w["message"]) for w in manifest.get("warnings", [])]
        state, kw = SUCCEEDED, {"avatar_id": job.id, "warnings": warnings}
    except Cancelled:
        state, kw = CANCELLED, {}
    except LikenessError as exc:
        state, kw = FAILED, {"error": (exc.code, scrub(exc.message), scrub(hint_for(exc.code, exc.hint)))}
    finally:
        ws.remove_staging(job.id)
    return state if store.finish(job.id, claim, state, **kw) else "lost"


def _free_device_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _exit_with_parent(conn) -> None:
    """Block on the pipe from the server; when the server dies (EOF) or says stop, leave at once."""
    try:
        while conn.recv() != "stop":
            pass
    except (EOFError, OSError):
        pass
    os._exit(0)


def worker_main(
    workspace: str,
    device: str,
    claim: str,
    conn,
    interval_s: float,
    poll_s: float = 0.25,
    ray_address: str | None = None,
    max_attempts: int = 3,
) -> None:
    """Entry point of the spawned worker process for ``device`` ('cpu', 'cuda:N', or 'ray:N' with
    ``ray_address``: the cluster its builds run on, joined before the first claim)."""
    if device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.INFO, format=f"likeness worker {device}: %(message)s")
    threading.Thread(target=_exit_with_parent, args=(conn,), daemon=True, name="parent-watch").start()

    ws = Workspace(workspace)
    lock = FileLock(ws.locks / f"{device.replace(':', '_')}.lock")
    while not lock.acquire(blocking=False):  # a worker of a killed server may still be winding down
        time.sleep(0.2)
    import engine.pipeline  # noqa: F401 - pay the import (torch, mediapipe) before the first claim

    ray = None
    if ray_address:
        from engine.server.ray_jobs import RayBuilds

        ray = RayBuilds(ray_address, ws, max_attempts)
    store = JobStore(ws.db_path)
    while True:
        job = store.claim_next(claim)
        if job is None:
            time.sleep(poll_s)
            continue
        log.info("job %s: started (attempt %d)", job.id, job.attempts)
        t0 = time.monotonic()
        state = run_job(store, ws, job, claim, device, interval_s, ray)
        log.info("job %s: %s after %.1f s", job.id, state, time.monotonic() - t0)
