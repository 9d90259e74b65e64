"""``kill -9`` of a running batch at random moments, six times (each kind of moment twice), then a rerun to the
end: every item process dies with the batch, no half-written bundle is ever at an output path, a finished bundle
is never rebuilt, each rerun starts only unfinished items, and the last run leaves no staging folder or temp file
behind.

Kill moments cycle through: a random time after start, a random moment just after an item enters a stage that
writes inside its staging folder (maps, views, turntable, write), and just after an item finished (its bundle
swapped in, its journal line and report being written)."""

from __future__ import annotations

import hashlib
import os
import queue
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
from batch_support import (
    REPO,
    TINY_ARGS,
    astronaut_variants,
    batch_cmd,
    batch_env,
    events,
    half_written,
    leftovers,
    report,
)

from engine.io.swap import LEFTOVER_RE

pytestmark = pytest.mark.slow

TRIALS = 6
NAMES = [f"k{i}.png" if i % 2 else f"k{i}.jpg" for i in range(6)]
IN_BUNDLE = {"maps", "views", "turntable", "write"}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _bundle_ids(out: Path) -> dict[str, tuple]:
    """Complete bundles at the output now: id -> (manifest sha256, manifest inode)."""
    done = {}
    for p in out.iterdir() if out.is_dir() else ():
        m = p / "manifest.json"
        if not p.name.startswith(".") and m.is_file():
            done[p.name] = (hashlib.sha256(m.read_bytes()).hexdigest(), m.stat().st_ino)
    return done


def _trial(out: Path, src: Path, mode: str, delay_s: float) -> tuple[list[dict], bool]:
    """One batch, SIGKILLed according to ``mode``; returns its events and whether it ran to its end."""
    proc = subprocess.Popen(
        ["nice", "-n", "5", *batch_cmd(src, "-o", out, *TINY_ARGS, "--jobs", "2", "--progress", "jsonl")],
        cwd=REPO,
        env=batch_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put(None)], daemon=True)
    reader.start()
    got, t0, kill_at, ended = [], time.monotonic(), None, False
    if mode == "random":
        kill_at = t0 + delay_s
    while time.monotonic() - t0 < 120:
        timeout = max(0.01, kill_at - time.monotonic()) if kill_at else 0.5
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            line = ""
        if line is None:
            ended = True
            break
        if line:
            got.append(line)
            ev = events(line)[0]
            trigger = (mode == "stage" and ev["event"] == "stage" and ev["stage"] in IN_BUNDLE) or (
                mode == "finished" and ev["event"] == "item_finished"
            )
            if trigger and kill_at is None:
                kill_at = time.monotonic() + delay_s
        if kill_at and time.monotonic() >= kill_at:
            break
    if not ended:
        proc.kill()  # SIGKILL: no handler, no clean-up
    proc.wait(30)
    reader.join(10)
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line:
            got.append(line)
    return events("".join(got)), ended


def test_kill_9_at_random_moments(tmp_path, astronaut_rgb):
    src = tmp_path / "src"
    astronaut_variants(src, astronaut_rgb, NAMES)
    ids = {Path(n).stem for n in NAMES}
    out = tmp_path / "out"
    rng = random.Random(15)
    finished: dict[str, tuple] = {}
    killed_mid_write = 0
    for trial in range(TRIALS):
        mode = ("random", "stage", "finished")[trial % 3]
        delay = rng.uniform(0.5, 8.0) if mode == "random" else rng.uniform(0.0, 0.6)
        evs, ended = _trial(out, src, mode, delay)
        started = [e for e in evs if e["event"] == "item_started"]
        # a finished bundle is never started again
        assert not {e["id"] for e in started} & set(finished), (trial, mode)
        # the item processes died with the batch (bounded wait: the kernel delivers PDEATHSIG at once)
        deadline = time.monotonic() + 15
        while any(_alive(e["pid"]) for e in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [e["pid"] for e in started if _alive(e["pid"])], f"trial {trial}: item processes outlived the batch"
        # never a half-written bundle at an output path; finished ones untouched
        assert half_written(out) == [], (trial, mode)
        now = _bundle_ids(out)
        assert all(now.get(i) == v for i, v in finished.items()), (trial, mode)
        # what a killed writer left belongs to a dead process (the next run sweeps it)
        for name in os.listdir(out):
            m = LEFTOVER_RE.match(name)
            if m:
                killed_mid_write += 1
                assert not _alive(int(m["pid"])), name
        staged = [n for n in os.listdir(out) if LEFTOVER_RE.match(n)]
        print(f"trial {trial} {mode:>8} +{delay:.2f}s: started {len(started)}, bundles {len(now)}, staged {staged}")
        finished = now
        if ended:
            assert evs[-1]["event"] == "batch_finished"

    assert killed_mid_write >= 1, "no trial killed a batch while a bundle was being staged"
    r = subprocess.run(
        ["nice", "-n", "5", *batch_cmd(src, "-o", out, *TINY_ARGS, "--jobs", "2", "--progress", "jsonl")],
        cwd=REPO,
        env=batch_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    started = {e["id"] for e in events(r.stdout) if e["event"] == "item_started"}
    assert started == ids - set(finished)
    rep = report(out)
    assert rep["state"] == "finished" and rep["counts"]["succeeded"] + rep["counts"]["skipped"] == len(ids)
    assert {i["id"] for i in rep["items"] if i["status"] == "skipped"} == set(finished)
    assert all(_bundle_ids(out)[i] == v for i, v in finished.items())
    assert leftovers(out) == [] and half_written(out) == []
