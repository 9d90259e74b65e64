"""The batch driver: read the items, plan them, run those that need it on the local pool or Ray, verify every
bundle, keep the journal and the report current, and return the exit code (0 all succeeded, 1 some failed,
3 all failed; a bad invocation raises BatchError, exit code 2, before anything is built).

One driver per output folder at a time (an flock on ``OUT/.likeness-batch/lock``, released by the kernel when the
driver dies). Leftovers of killed writers (staging folders, temp files) are swept before and after the run."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import engine
from engine.asset.export import INSTALL_HINT, blender_launcher
from engine.batch import report as rep
from engine.batch.plan import (
    BUILD,
    CARRY,
    SKIP,
    Journal,
    Outputs,
    Planned,
    bundle_dir,
    bundle_state,
    extras_dir,
    extras_state,
    extras_wanted,
    item_config,
    plan_items,
    work_dir,
)
from engine.batch.runner import LocalPool
from engine.batch.source import BatchError, read_items
from engine.io import swap
from engine.io.bundle import MANIFEST

TURNTABLE_SCRIPT = Path(engine.__file__).resolve().parents[1] / "scripts" / "turntable.py"
PYTHON = "{python}"
"""In a Blender command: the Python of the item's own process (the bpy module's), resolved on the node."""


@dataclass
class BatchOptions:
    source: str
    output: str
    recursive: bool = False
    quality: str = "standard"
    device: str = "auto"
    sets: dict = field(default_factory=dict)
    outputs: Outputs = field(default_factory=Outputs)
    jobs: int = 1
    timeout_s: float = 7200.0
    max_retries: int = 1
    resume: bool = False
    retry_failed: bool = False
    dry_run: bool = False
    progress: str = "bar"
    ray: str | None = None
    ray_cpus: float = 1.0
    ray_gpus: float | None = None
    ray_retries: int = 3
    command: list = field(default_factory=list)


def blender_command() -> list[str]:
    """How to run scripts/turntable.py: ``$LIKENESS_BLENDER`` (a Blender binary), else the bpy module's Python,
    else ``blender`` on PATH; BatchError when there is none."""
    if not TURNTABLE_SCRIPT.is_file():
        raise BatchError(f"{TURNTABLE_SCRIPT} is missing", "run the batch from a Likeness checkout")
    cmd = blender_launcher(os.environ, python=PYTHON)
    if cmd is None:
        raise BatchError(
            "--turntable blender and --exports fbx need Blender: neither the bpy module nor a blender binary is here",
            INSTALL_HINT,
        )
    return cmd


class BatchLock:
    """An exclusive flock on ``OUT/.likeness-batch/lock`` (BatchError when another driver holds it)."""

    def __init__(self, out: Path) -> None:
        self.path = work_dir(out) / "lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            who = self.fh.read().strip() or "another process"
            self.fh.close()
            raise BatchError(
                f"another likeness batch ({who}) is writing {self.path.parents[1]}", "wait for it"
            ) from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()}")
        self.fh.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def sweep(out: Path, ids) -> list[str]:
    """Leftovers of killed writers: staging folders of dead processes beside each item's bundle and Blender
    folder (engine.io.swap), and the report's and journal's temp files (ours alone: we hold the lock)."""
    done = []
    for i in ids:
        done += swap.sweep(bundle_dir(out, i))
        done += swap.sweep(extras_dir(out, i))
    for folder in (out, work_dir(out)):
        for p in folder.glob(".tmp-*"):
            p.unlink(missing_ok=True)
            done.append(f"removed {p.name}")
    return done


class Progress:
    """Events for machines (``jsonl``: one JSON object a line on stdout), a tqdm bar for people (``bar``, on
    stderr), or nothing (``none``)."""

    def __init__(self, mode: str) -> None:
        self.mode, self.t0, self.bar = mode, time.monotonic(), None
        self.out = sys.stdout

    def own_stdout(self) -> None:
        """Keep stdout for the events alone: whatever else prints (Ray's warnings, a library) goes to stderr."""
        if self.mode == "jsonl":
            sys.stdout.flush()
            self.out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
            os.dup2(2, 1)
            sys.stdout = sys.stderr

    def start_bar(self, total: int) -> None:
        if self.mode == "bar" and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="head", desc="likeness batch", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, ev: dict) -> None:
        if self.mode == "jsonl":
            self.out.write(json.dumps({**ev, "t": round(time.monotonic() - self.t0, 3)}) + "\n")
            self.out.flush()
        elif self.bar is not None:
            kind = ev.get("event")
            if kind == "stage":
                self.bar.set_postfix_str(f"{ev['id']}: {ev['stage']}", refresh=True)
            elif kind in ("item_finished", "item_failed"):
                self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _spec(p: Planned, out: Path, o: BatchOptions, blender: list[str] | None, threads: int) -> dict:
    spec = {
        "id": p.id,
        "action": "build" if p.action == BUILD else "finish",
        "photo": p.item.photo,
        "bundle": str(bundle_dir(out, p.id)),
        "extras": str(extras_dir(out, p.id)),
        "settings": p.settings,
        "log": str(work_dir(out) / "logs" / f"{p.id}.log"),
        "threads": threads,
        "blender": None,
    }
    if blender is not None:
        wanted = extras_wanted(o.outputs, p.settings)
        spec["blender"] = {**wanted, "command": blender, "script": str(TURNTABLE_SCRIPT), "wanted": list(wanted)}
    return spec


def _verify(p: Planned, out: Path, outputs: Outputs, res: dict) -> tuple[dict, dict | None]:
    """The driver's own check of a finished item's outputs on the output folder: (result, manifest)."""
    bundle = bundle_dir(out, p.id)
    ok, why, manifest = bundle_state(bundle, p.input_sha256, p.settings)
    if res["status"] != "succeeded":
        return res, manifest if ok else None
    if ok:
        ok, why = extras_state(extras_dir(out, p.id), bundle, outputs, p.settings)
    if ok:
        return res, manifest
    err = {
        "code": "verify_failed",
        "message": f"the item reported success but its outputs at {bundle} are not right: {why}",
        "hint": "every node must see the output folder at the same path (a shared filesystem)",
    }
    return {**res, "status": "failed", "error": err, "attempt_errors": [*res.get("attempt_errors", []), err]}, None


def run_batch(o: BatchOptions) -> int:
    out = Path(o.output).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise BatchError(f"{out} is a file, not a folder", "give the batch an output folder (-o)")
    if (out / MANIFEST).is_file():
        raise BatchError(f"{out} is an avatar bundle", "give the batch a folder of its own (-o)")
    blender = blender_command() if o.outputs.needs_blender else None
    items = read_items(o.source, o.recursive, exclude=out)
    for it in items:  # every item's settings are checked before anything is created
        item_config(it, o.quality, o.device, o.sets)
    emit = Progress(o.progress)
    if o.dry_run:
        plans = plan_items(items, out, o.quality, o.device, o.sets, o.outputs, o.resume, o.retry_failed)
        for p in plans:
            if o.progress == "jsonl":
                emit({"event": "plan", "id": p.id, "action": p.action, "reason": p.reason, "photo": p.item.photo})
            else:
                print(f"{p.action:<6}  {p.id}  {p.reason}")
        return 0
    ray = None
    emit.own_stdout()
    if o.ray:
        from engine.batch.run_ray import connect

        ray = connect(o.ray)
    out.mkdir(parents=True, exist_ok=True)
    with BatchLock(out):
        return _run_locked(o, out, items, blender, ray, emit)


def _run_locked(o: BatchOptions, out: Path, items, blender, ray, emit: Progress) -> int:
    t0 = time.monotonic()
    swept = sweep(out, [i.id for i in items])
    plans = plan_items(items, out, o.quality, o.device, o.sets, o.outputs, o.resume, o.retry_failed)
    if ray is not None:
        from engine.batch.run_ray import RayPool

        events_dir = work_dir(out) / "events"
        shutil.rmtree(events_dir, ignore_errors=True)
        pool = RayPool(ray, events_dir, o.timeout_s, o.max_retries, o.ray_cpus, o.ray_gpus, o.ray_retries)
        runner, threads = pool.description, pool.threads()
    else:
        pool = LocalPool(o.jobs, o.timeout_s, o.max_retries)
        runner, threads = f"local ({o.jobs} job{'s' if o.jobs != 1 else ''})", max(1, (os.cpu_count() or 1) // o.jobs)
    header = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": o.command,
        "source": o.source,
        "output": str(out),
        "runner": runner,
        "quality": o.quality,
        "overrides": o.sets,
        "outputs": {"turntable": o.outputs.turntable, "exports": list(o.outputs.exports)},
        "swept": swept,
    }
    journal = Journal(out)
    rows: dict[str, dict] = {}
    by_id = {p.id: p for p in plans}
    for p in plans:
        if p.action == SKIP:
            _, _, manifest = bundle_state(bundle_dir(out, p.id), p.input_sha256, p.settings)
            rows[p.id] = rep.item_row(p, out, o.outputs, "skipped", None, manifest)
        elif p.action == CARRY:
            rows[p.id] = rep.item_row(p, out, o.outputs, "failed", None, None)
        else:
            rows[p.id] = rep.item_row(p, out, o.outputs, "pending", None, None)
    todo = [p for p in plans if p.action not in (SKIP, CARRY)]
    emit({"event": "batch_started", "items": len(plans), "to_run": len(todo), "output": str(out), "runner": runner})
    for p in plans:
        if p.action in (SKIP, CARRY):
            emit({"event": "item_skipped" if p.action == SKIP else "item_carried", "id": p.id, "reason": p.reason})
    ordered = lambda: [rows[p.id] for p in plans]  # noqa: E731
    rep.write_report(out, header, ordered(), finished=False)
    emit.start_bar(len(todo))
    interrupted = False
    try:
        for p in todo:
            pool.submit(_spec(p, out, o, blender if o.outputs.needs_blender else None, threads))
        while pool.busy():
            for ev in pool.poll():
                if ev.get("event") != "_result":
                    emit(ev)
                    continue
                p = by_id[ev["id"]]
                res, manifest = _verify(p, out, o.outputs, ev["result"])
                status = res["status"]
                rows[p.id] = rep.item_row(p, out, o.outputs, status, res, manifest)
                journal.append(
                    {"id": p.id, "key": p.key, "status": status, "error": res.get("error"), "attempts": res["attempts"]}
                )
                done = {"id": p.id, "attempts": res["attempts"], "seconds": res.get("seconds")}
                if status == "succeeded":
                    emit({"event": "item_finished", **done, "timings_s": rows[p.id]["timings_s"]})
                else:
                    emit({"event": "item_failed", **done, "error": res.get("error")})
                rep.write_report(out, header, ordered(), finished=False)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        pool.close()
        emit.close()
    header["swept_after"] = sweep(out, [i.id for i in items])
    header["seconds"] = round(time.monotonic() - t0, 3)
    report = rep.write_report(out, header, ordered(), finished=not interrupted)
    c = report["counts"]
    code = 130 if interrupted else report["exit_code"]
    emit({"event": "batch_finished", "counts": c, "exit_code": code, "report": str(out / "report.json")})
    print(
        f"likeness batch: {c['succeeded']} built, {c['skipped']} up to date, {c['failed']} failed"
        + (f", {c['pending']} not run (interrupted)" if interrupted else "")
        + f" in {header['seconds']:.1f} s -> {out / 'report.html'}",
        file=sys.stderr,
    )
    return code
