"""``likeness serve --ray ADDRESS``: the server's build jobs as Ray tasks (the optional ``ray`` extra).

The server keeps its local structure -- one supervised worker process per slot (``ray:0`` ...), the SQLite job
store as the source of truth -- but a worker, instead of building in its own process, sends each job it claims to
the cluster as the batch's Ray task (engine.batch.run_ray: ``likeness batch``'s item process, one GPU per build
where the cluster has GPUs, one CPU otherwise, Ray's retries for lost workers). The task reads the upload from
``inputs/`` and builds into ``avatars/<id>`` (staged beside it, swapped in atomically), so the workspace must be on
a path every node sees. The worker follows the item's progress events (``ray/events/<id>.jsonl`` in the
workspace, the batch's channel), writes progress and ETA to SQLite, cancels the task when the job is cancelled
(``ray.cancel``; the supervisor's grace and kill still stand behind it), and finishes the job from the item's
result: succeeded with the manifest's warnings, or failed with the item's error, ``native_crash`` and
``worker_crashed`` worded as for a local build.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import socket
from pathlib import Path

from engine.batch.run_ray import INSTALL_HINT
from engine.errors import BackendUnavailable
from engine.server.errors import hint_for, scrub
from engine.server.jobs import CANCELLED, FAILED, SUCCEEDED, Job, native_crash_error, worker_crashed_error
from engine.server.workspace import Workspace

log = logging.getLogger("likeness.worker")

RAY_DIR = "ray"
"""The workspace's folder for the Ray tasks: ``events/<id>.jsonl`` (while a job runs), ``logs/<id>.log`` (the
build's own log, kept when it failed)."""
NO_CLUSTER_HINT = "start one with `ray start --head` (docs/BATCH.md) or give its address, e.g. --ray 10.0.0.5:6379"


def check_ray(address: str) -> None:
    """Before the server takes its port: BackendUnavailable (exit code 2, one line) when the ray package is not
    installed, or when nothing listens at ``HOST:PORT`` (``auto`` and ``ray://`` addresses are not probed)."""
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise BackendUnavailable("--ray needs the ray package, which is not installed", INSTALL_HINT)
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BackendUnavailable(f"--ray {address!r}: not HOST:PORT or auto", NO_CLUSTER_HINT)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise BackendUnavailable(
            f"no Ray cluster answers at {address} ({exc.strerror or exc})", NO_CLUSTER_HINT
        ) from None


def job_error(err: dict | None, attempts: int) -> tuple[str, str, str]:
    """The job's (code, message, hint) from an item's error; crashes as a local build words them, paths scrubbed."""
    err = err or {}
    code = str(err.get("code") or "internal")
    message = str(err.get("message") or "the build failed")
    m = re.search(r"\(([^()]*)\)\s*$", message)
    reason = m.group(1) if m else message
    if code == "native_crash":
        code, message, hint = native_crash_error(reason)
    elif code == "worker_crashed":
        code, message, hint = worker_crashed_error(attempts, reason)
    elif code == "internal":
        hint = "see the server log and the build's log (ray/logs/ in the workspace)"
    else:
        hint = hint_for(code, str(err.get("hint") or ""))
    return code, scrub(message), scrub(hint)


class RayBuilds:
    """One worker's link to the cluster: joined once (raises BatchError when there is none), one job at a time."""

    def __init__(self, address: str, ws: Workspace, max_attempts: int) -> None:
        from engine.batch.run_ray import RAY_RETRIES, RayPool, connect

        self.ws = ws
        self.dir = ws.root / RAY_DIR
        ray = connect(address)
        # The item's own retry budget covers a build process that died (worker_crashed) like the local server's
        # max_attempts; Ray's retries cover a lost Ray worker or node. No timeout: a local build has none either.
        self.pool = RayPool(ray, self.dir / "events", 0.0, max(0, max_attempts - 1), 1.0, None, RAY_RETRIES)
        log.info("joined the Ray cluster at %s: %s", address, self.pool.description)

    def log_path(self, job_id: str) -> Path:
        return self.dir / "logs" / f"{job_id}.log"

    def _spec(self, job: Job, cfg) -> dict:
        return {
            "id": job.id,
            "action": "build",
            "photo": str(self.ws.inputs / Path(job.input_file).name),
            "name": job.input_name,
            "bundle": str(self.ws.avatar_dir(job.id)),
            "extras": str(self.dir / "extras" / job.id),  # never written: the server asks for no Blender step
            "settings": cfg.to_dict(),
            "log": str(self.log_path(job.id)),
            "threads": self.pool.threads(),
            "blender": None,
        }

    def _attempt(self, job: Job, cfg, progress) -> tuple[dict, bool]:
        """One Ray task for the job, followed to its result: (result, whether we cancelled it)."""
        pool = self.pool
        events = pool.events_dir / f"{job.id}.jsonl"
        events.unlink(missing_ok=True)
        pool.submit(self._spec(job, cfg))
        cancelled = False
        try:
            while True:
                for ev in pool.poll(0.5):
                    kind = ev.get("event")
                    if kind == "stage":
                        progress(str(ev.get("stage")), float(ev.get("fraction") or 0.0))
                    elif kind == "item_started":
                        log.info(
                            "job %s: on Ray: host %s, Ray worker pid %s, build process pid %s (attempt %s)",
                            job.id,
                            ev.get("host"),
                            ev.get("runner_pid"),
                            ev.get("pid"),
                            ev.get("attempt"),
                        )
                    elif kind == "attempt_failed":
                        err = ev.get("error") or {}
                        log.warning("job %s: attempt %s on Ray failed: %s", job.id, ev.get("attempt"), err.get("code"))
                    elif kind == "_result":
                        return ev["result"], cancelled
                if not cancelled and progress.cancel():  # a cancel was asked, or the job is no longer ours
                    cancelled = True
                    log.info("job %s: cancelling its Ray task", job.id)
                    pool.cancel(job.id)
        finally:
            events.unlink(missing_ok=True)
            pool.offsets.pop(job.id, None)
            pool.starts.pop(job.id, None)

    def run(self, job: Job, cfg, input_sha256: str, progress) -> tuple[str, dict]:
        """Build the claimed job on the cluster: (terminal state, keywords of JobStore.finish)."""
        from engine.server.worker import lighter

        try:
            while True:
                res, cancelled = self._attempt(job, cfg, progress)
                complete = self.ws.complete_bundle_for(job.id, input_sha256, cfg.to_dict())
                if res.get("status") == "succeeded" or (cancelled and complete):  # (done before the cancel landed)
                    if not complete:
                        return FAILED, {
                            "error": (
                                "verify_failed",
                                "the build on the Ray cluster reported success but its bundle is not in the workspace",
                                "every Ray node must see the server's workspace at the same path (a shared "
                                "filesystem; docs/BATCH.md)",
                            )
                        }
                    manifest = self.ws.manifest(job.id)
                    warnings = [scrub(w["message"]) for w in manifest.get("warnings", [])]
                    self.log_path(job.id).unlink(missing_ok=True)
                    return SUCCEEDED, {"avatar_id": job.id, "warnings": warnings}
                if cancelled:
                    self.log_path(job.id).unlink(missing_ok=True)
                    return CANCELLED, {}
                err = res.get("error") or {}
                if err.get("code") == "out_of_memory" and lighter(cfg) is not None:
                    cfg = lighter(cfg)  # as a local build does: half the rays per fitting step, down to 256
                    log.warning(
                        "job %s: out of memory on Ray, retrying with %d rays per step", job.id, cfg.rays_per_step
                    )
                    continue
                log.warning("job %s failed on Ray: %s (log: %s)", job.id, err.get("code"), self.log_path(job.id))
                return FAILED, {"error": job_error(err, int(res.get("attempts") or 1))}
        finally:
            self.ws.remove_staging(job.id)
