"""Helpers of the batch tests: a tiny build config (one item builds in a few seconds), demo photos, the CLI as a real
process, the checks every batch test makes on an output folder, and the ``cluster`` fixture (a real local Ray
head on loopback; import it into the test module that uses it)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.io.swap import LEFTOVER_RE

REPO = Path(__file__).resolve().parents[1]
from engine.config import TINY_OVERRIDES as TINY  # noqa: E402  (one tiny config for every test)

"""BuildConfig overrides that make one item a few seconds on two CPU cores."""
TINY_ARGS = ["--quality", "draft", "--device", "cpu"] + [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


def astronaut_variants(folder: Path, rgb: np.ndarray, names: list[str]) -> dict[str, Path]:
    """The demo astronaut saved under ``names``, each a different crop, size, flip or tone (PNG or JPEG)."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = rgb.shape[:2]
    makers = [
        lambda a: a,
        lambda a: a[0:400, 60:460],
        lambda a: np.ascontiguousarray(a[:, ::-1]),
        lambda a: np.asarray(Image.fromarray(a).rotate(4, resample=Image.BILINEAR)),
        lambda a: np.clip(a.astype(np.int16) + 25, 0, 255).astype(np.uint8),
        lambda a: a[20 : h - 20, 20 : w - 20],
        lambda a: np.asarray(Image.fromarray(a).resize((480, 480))),
    ]
    out = {}
    for i, name in enumerate(names):
        path = folder / name
        img = Image.fromarray(makers[i % len(makers)](rgb))
        if path.suffix.lower() in (".jpg", ".jpeg"):
            img.save(path, quality=92)
        else:
            img.save(path)
        out[Path(name).stem] = path
    return out


def not_a_face(path: Path) -> Path:
    """A real photo with no face in it (skimage's coffee cup)."""
    from skimage import data

    Image.fromarray(data.coffee()).save(path, quality=90)
    return path


def unreadable(path: Path) -> Path:
    """A file that says JPEG and is not one."""
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg " * 64)
    return path


def batch_env(fault: str = "") -> dict:
    env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("LIKENESS_BATCH_FAULT", None)
    if fault:
        env["LIKENESS_BATCH_FAULT"] = fault
    return env


def batch_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "engine", "batch", *map(str, args)]


def run_batch(*args, fault: str = "", timeout: float = 240) -> subprocess.CompletedProcess:
    """``likeness batch ARGS`` as a process (nice'd: the machine is shared)."""
    return subprocess.run(
        ["nice", "-n", "5", *batch_cmd(*args)],
        cwd=REPO,
        env=batch_env(fault),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def events(stdout: str) -> list[dict]:
    """The JSON lines of ``--progress jsonl`` (every line must be one JSON object)."""
    out = []
    for line in stdout.splitlines():
        ev = json.loads(line)
        assert isinstance(ev, dict) and "event" in ev, line
        out.append(ev)
    return out


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def leftovers(out: Path) -> list[str]:
    """Staging / old folders of killed writers and temp files anywhere in the batch's output folder."""
    bad = []
    for root, dirs, files in os.walk(out):
        for name in dirs + files:
            if LEFTOVER_RE.match(name) or name.startswith(".tmp-"):
                bad.append(os.path.relpath(os.path.join(root, name), out))
    return bad


def half_written(out: Path) -> list[str]:
    """Item folders at the output that are not complete bundles (every listed file there, manifest last)."""
    from engine.io.bundle import read_manifest

    bad = []
    for p in out.iterdir():
        if p.name.startswith(".") or not p.is_dir() or p.name.endswith(".blender"):
            continue
        try:
            m = read_manifest(p)
        except Exception as exc:  # noqa: BLE001 - any failure to read is a half-written bundle
            bad.append(f"{p.name}: {exc}")
            continue
        names = [v for v in m["files"].values() if isinstance(v, str)] + list(m.get("turntable_frames") or ())
        bad += [f"{p.name}/{n} missing" for n in names if not (p / n).is_file()]
    return bad


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_members(sid: int) -> list[int]:
    """Processes of session ``sid`` (the cluster's: ``ray start`` leads it, its workers have their own groups)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(name))
    return pids


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray head on 127.0.0.1 with 2 CPUs and token authentication; yields (address, env)."""
    port, client_port = _free_port(), _free_port()
    env = {
        **batch_env(),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": os.urandom(16).hex(),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray resolves 127.0.0.1 to the machine's interface address for its agents (resolve_ip_for_localhost);
        # this keeps every component of the test cluster on loopback.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    log = open(tmp_path_factory.mktemp("ray") / "ray_start.log", "w")
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}"]
    cmd += ["--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false"]
    cmd += ["--disable-usage-stats", f"--ray-client-server-port={client_port}"]
    head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
                time.sleep(0.3)
        yield f"127.0.0.1:{port}", env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for pid in _session_members(head.pid):  # the cluster's processes, by the session we started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        head.wait(15)
        log.close()
