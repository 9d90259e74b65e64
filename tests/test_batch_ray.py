"""``likeness batch --ray`` on a real local Ray cluster (``ray start --head`` on 127.0.0.1 with 2 CPUs, started and
stopped here): the batch runs as Ray tasks, one Ray worker is SIGKILLed in the middle of an item, Ray reruns that
item on a new worker, and the report is complete. Skipped when the ``ray`` extra is not installed."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time

import pytest

pytest.importorskip("ray", reason="needs the ray extra (pip install -e '.[ray]')")
pytestmark = pytest.mark.slow

import batch_support  # noqa: E402
from batch_support import (  # noqa: E402
    REPO,
    TINY_ARGS,
    astronaut_variants,
    batch_cmd,
    events,
    half_written,
    leftovers,
    report,
)

cluster = batch_support.cluster  # the fixture: a Ray head on 127.0.0.1, started and stopped by this module


def test_batch_on_ray_survives_a_lost_worker(cluster, tmp_path, astronaut_rgb):
    address, env = cluster
    src = tmp_path / "src"
    astronaut_variants(src, astronaut_rgb, ["r0.png", "r1.jpg"])  # one of them loses its worker
    out = tmp_path / "out"
    proc = subprocess.Popen(
        ["nice", "-n", "5", *batch_cmd(src, "-o", out, *TINY_ARGS, "--ray", address, "--progress", "jsonl")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put(None)], daemon=True).start()
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()
    got, starts, victim = [], {}, None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                break
            ev = events(line)[0]
            got.append(ev)
            if ev["event"] == "item_started":
                starts.setdefault(ev["id"], []).append(ev)
            if victim is None and ev["event"] == "stage" and ev["stage"] in ("init", "fit"):
                victim = starts[ev["id"]][-1]
                os.kill(victim["runner_pid"], signal.SIGKILL)  # the Ray worker running this item, mid-item
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert rc == 0, "".join(err)[-3000:]
    assert victim is not None, "no item reached its init stage"
    rep = report(out)
    assert rep["state"] == "finished" and rep["runner"].startswith("ray (2 CPUs")
    assert rep["counts"]["succeeded"] == 2 and rep["exit_code"] == 0
    items = {i["id"]: i for i in rep["items"]}
    lost = items[victim["id"]]
    assert lost["status"] == "succeeded" and lost["lost_workers"] == 1 and lost["attempts"] == 2
    runners = [e["runner_pid"] for e in starts[victim["id"]]]
    assert len(runners) == 2 and runners[0] == victim["runner_pid"] != runners[1]
    assert all(set(i["files"]) and i["metrics"]["input_psnr_db"] > 15 for i in items.values())
    assert got[-1]["event"] == "batch_finished" and got[-1]["exit_code"] == 0
    assert leftovers(out) == [] and half_written(out) == []

    # the same batch again on the cluster: everything is up to date, nothing is sent to Ray
    r = subprocess.run(
        batch_cmd(src, "-o", out, *TINY_ARGS, "--ray", address, "--progress", "jsonl"),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert not [e for e in events(r.stdout) if e["event"] == "item_started"]
    assert report(out)["counts"]["skipped"] == 2
