"""Batch throughput as JSON: items per hour of ``likeness batch`` with ``--jobs 1``, ``--jobs 2`` and on a local Ray
cluster with 2 CPUs (started and stopped here), and Ray's overhead per item.

    python scripts/bench_batch.py                      # draft, 4 items (the demo astronaut, cropped and flipped)
    python scripts/bench_batch.py --tiny --items 6     # the tests' tiny config: seconds per item
    python scripts/bench_batch.py --device cuda -o out/bench/batch_gpu.json   # on a GPU machine

Ray's overhead per item is (Ray wall time - ``--jobs 2`` wall time) / items, both with two items at a time; the
cluster's start and the driver's connection are reported apart. Timings on a shared machine include the other
processes' load (the load average is recorded at the start and the end)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

from engine.config import TINY_OVERRIDES as TINY  # noqa: E402


def photos(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image
    from skimage import data

    a = data.astronaut()
    makers = [lambda x: x, lambda x: x[0:400, 60:460], lambda x: np.ascontiguousarray(x[:, ::-1]), lambda x: x[20:-20]]
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.ascontiguousarray(makers[i % 4](a))).save(folder / f"head{i:02d}.png")


def batch(src: Path, out: Path, args: list[str], env: dict) -> dict:
    cmd = [sys.executable, "-m", "engine", "-q", "batch", str(src), "-o", str(out), *args]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"bench_batch: {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    rep = json.loads((out / "report.json").read_text())
    items = rep["items"]
    per_item = [i["seconds"] for i in items]
    builds = [i["timings_s"].get("total") for i in items]
    return {
        "wall_s": round(wall, 2),
        "items": len(items),
        "items_per_hour": round(3600.0 * len(items) / wall, 1),
        "item_process_s_mean": round(sum(per_item) / len(per_item), 2),
        "build_s_mean": round(sum(builds) / len(builds), 2),
        "runner": rep["runner"],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cluster(env: dict, cpus: int, gpus: int):
    """``ray start --head --block`` on 127.0.0.1 in a session of its own; returns (process, address, seconds)."""
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}"]
    cmd += ["--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", f"--num-gpus={gpus}", "--include-dashboard=false"]
    cmd += ["--disable-usage-stats", f"--ray-client-server-port={free_port()}"]
    t0 = time.perf_counter()
    head = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            if head.poll() is not None or time.perf_counter() - t0 > 120:
                raise SystemExit("bench_batch: ray start --head did not come up") from None
            time.sleep(0.3)
    return head, f"127.0.0.1:{port}", time.perf_counter() - t0


def stop_cluster(head: subprocess.Popen) -> None:
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(5)
    except subprocess.TimeoutExpired:
        pass
    for name in os.listdir("/proc"):  # the cluster's processes: the session ray start leads
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[3]) == head.pid:
                        os.kill(int(name), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    head.wait(15)


def ray_connect_s(address: str, env: dict) -> float:
    code = f"import time, ray; t = time.perf_counter(); ray.init(address={address!r}); print(time.perf_counter() - t)"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return round(float(r.stdout.strip().splitlines()[-1]), 2) if r.returncode == 0 else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=4)
    p.add_argument("--quality", default="draft")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tiny", action="store_true", help="the tests' tiny build config instead of the preset's")
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("-o", "--output", help="also write the JSON here")
    args = p.parse_args()

    from harness.sysinfo import stamp

    env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3", "RAY_USAGE_STATS_ENABLED": "0"}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # a one-machine cluster on loopback only (docs/BATCH.md)
    env.pop("LIKENESS_BATCH_FAULT", None)
    common = ["--quality", args.quality, "--device", args.device]
    if args.tiny:
        common += [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    result = {"stamp": stamp(args.device), "config": {"items": args.items, "quality": args.quality, "tiny": args.tiny}}
    result["stamp"]["device"]["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="likeness-bench-batch-") as tmp:
        tmp = Path(tmp)
        photos(tmp / "src", args.items)
        result["jobs_1"] = batch(tmp / "src", tmp / "out1", [*common, "--jobs", "1"], env)
        result["jobs_2"] = batch(tmp / "src", tmp / "out2", [*common, "--jobs", "2"], env)
        if not args.no_ray:
            try:
                import ray  # noqa: F401
            except ImportError:
                result["ray"] = {"skipped": "ray is not installed (pip install -e '.[ray]')"}
            else:
                renv = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(16).hex()}
                gpus = 1 if args.device == "cuda" else 0
                head, address, start_s = ray_cluster(renv, 2, gpus)
                try:
                    connect = ray_connect_s(address, renv)
                    ray_args = [*common, "--ray", address] + (["--ray-gpus", "0.5"] if gpus else [])
                    r = batch(tmp / "src", tmp / "out_ray", ray_args, renv)
                finally:
                    stop_cluster(head)
                r["cluster_start_s"] = round(start_s, 2)
                r["driver_connect_s"] = connect
                r["overhead_s_per_item"] = round((r["wall_s"] - result["jobs_2"]["wall_s"]) / args.items, 2)
                result["ray"] = r
        shutil.rmtree(tmp / "src", ignore_errors=True)
    result["stamp"]["device"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
