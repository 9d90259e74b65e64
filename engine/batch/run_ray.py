"""The batch's items as Ray tasks on an existing cluster (``--ray auto|ADDRESS``; the optional ``ray`` extra).

Each task runs the same :func:`engine.batch.runner.run_item` as the local pool -- the item in its own process,
with the batch's timeout and retry budget -- on whichever node Ray picks, with one GPU per build where the cluster
has GPUs (``--ray-gpus``), CPUs otherwise. A worker lost mid-item (node down, process killed) is Ray's to retry
(``max_retries``, :data:`RAY_RETRIES` by default); an item's own error is returned as its result and never
retried by Ray. Outputs go to the output folder, which every node must see at the same path; the driver verifies
each bundle there. Progress events travel through ``OUT/.likeness-batch/events/<id>.jsonl`` on that folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from engine.batch.runner import _lost, run_item
from engine.batch.source import BatchError

RAY_RETRIES = 3
"""How many times Ray reruns an item whose worker was lost (Ray's own retries for system failures)."""
INSTALL_HINT = "pip install 'likeness[ray]'; in a checkout, pip install -e '.[ray]'"


def import_ray():
    """The ray module, or BatchError (exit code 2) with the install hint."""
    try:
        import ray
    except ImportError:
        raise BatchError("--ray needs the ray package, which is not installed", INSTALL_HINT) from None
    return ray


def connect(address: str):
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` runs here, or $RAY_ADDRESS)."""
    ray = import_ray()
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR", include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise BatchError(
            f"no Ray cluster at {address} ({first})",
            "start one with `ray start --head` (docs/BATCH.md) or give its address, e.g. --ray 10.0.0.5:6379",
        ) from None
    return ray


def _ray_item(spec: dict, timeout_s: float, max_retries: int, events_path: str) -> dict:
    """Runs in a Ray worker: the item, its events appended to ``events_path`` on the shared output folder."""
    path = Path(events_path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def on_event(ev: dict) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(ev) + "\n")

    return run_item(spec, on_event, timeout_s, max_retries)


class RayPool:
    """The same interface as :class:`engine.batch.runner.LocalPool`: submit, poll, busy, close."""

    def __init__(
        self, ray, events_dir: Path, timeout_s: float, max_retries: int, cpus: float, gpus: float | None, retries: int
    ) -> None:
        self.ray, self.events_dir = ray, events_dir
        self.timeout_s, self.max_retries = timeout_s, max_retries
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        self.cpus, self.gpus = cpus, gpus
        self.task = ray.remote(_ray_item).options(
            num_cpus=cpus, num_gpus=gpus, max_retries=retries, retry_exceptions=False
        )
        self.refs: dict = {}
        self.offsets: dict[str, int] = {}
        self.starts: dict[str, int] = {}

    @property
    def description(self) -> str:
        res = self.ray.cluster_resources()
        return (
            f"ray ({int(res.get('CPU', 0))} CPUs, {int(res.get('GPU', 0))} GPUs; "
            f"{self.cpus:g} CPU{'' if self.cpus == 1 else 's'} and {self.gpus:g} GPU per item)"
        )

    def threads(self) -> int:
        return max(1, math.floor(self.cpus))

    def submit(self, spec: dict) -> None:
        path = self.events_dir / f"{spec['id']}.jsonl"
        ref = self.task.remote(spec, self.timeout_s, self.max_retries, str(path))
        self.refs[ref] = spec["id"]
        self.offsets[spec["id"]] = 0

    def _tail(self, item_id: str) -> list[dict]:
        path = self.events_dir / f"{item_id}.jsonl"
        try:
            with open(path, encoding="utf-8") as fh:
                fh.seek(self.offsets[item_id])
                chunk = fh.read()
        except OSError:
            return []
        complete = chunk[: chunk.rfind("\n") + 1]
        self.offsets[item_id] += len(complete.encode("utf-8"))
        events = []
        for line in complete.splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "item_started" and ev.get("attempt") == 1:
                self.starts[item_id] = self.starts.get(item_id, 0) + 1
            events.append(ev)
        return events

    def poll(self, wait_s: float = 0.5) -> list[dict]:
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=wait_s) if self.refs else ([], [])
        events = []
        for item_id in list(self.refs.values()):
            events += self._tail(item_id)
        for ref in ready:
            item_id = self.refs.pop(ref)
            try:
                res = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a lost worker past Ray's retries, or a bug in the task
                res = _lost(item_id, exc)
            lost = max(0, self.starts.get(item_id, 1) - 1)
            if lost:
                res = {**res, "lost_workers": lost, "attempts": res["attempts"] + lost}
            events.append({"event": "_result", "id": item_id, "result": res})
        return events

    def busy(self) -> bool:
        return bool(self.refs)

    def cancel(self, item_id: str) -> None:
        """Stop the item's task (its Ray worker is killed; the item's process dies with it). Its result still
        arrives through :meth:`poll`, as a failure."""
        for ref, i in list(self.refs.items()):
            if i == item_id:
                self.ray.cancel(ref, force=True)

    def close(self) -> None:
        for ref in list(self.refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self.ray.shutdown()
