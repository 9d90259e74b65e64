"""Measure the engine server: draft build throughput, and render latency with N clients while a build runs.

Starts ``likeness serve`` on a free loopback port with a fresh workspace, then
1. builds the demo portrait at ``--quality`` with nothing else running (build time -> builds per hour);
2. submits a second build (the portrait mirrored) and, while it runs, starts ``--clients`` clients that each poll
   the job and /v1/health every 0.5 s and ask for ``--renders`` renders of ``--size``² of the first avatar;
3. waits for the second build (build time under load).
Writes JSON (command, machine, versions, commit, numbers) to ``--out`` and stdout.

    .venv/bin/python scripts/server_load.py --clients 20 --size 512 --out out/server_load.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(rgb: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


def build(c: httpx.Client, data: bytes, name: str, quality: str, on_running=None) -> tuple[dict, float]:
    """Submit and wait; (final job, seconds from submit to a terminal state)."""
    t0 = time.monotonic()
    r = c.post("/v1/builds", files={"file": (name, data)}, data={"options": json.dumps({"quality": quality})})
    r.raise_for_status()
    job = r.json()["job"]
    started = False
    while job["state"] in ("queued", "running"):
        if job["state"] == "running" and not started and on_running is not None:
            started = True
            on_running(job)
        time.sleep(0.5)
        job = c.get(f"/v1/jobs/{job['id']}").json()
    return job, time.monotonic() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--renders", type=int, default=1, help="renders per client")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--quality", default="draft")
    p.add_argument("--out", default="out/server_load.json")
    args = p.parse_args()

    from skimage import data

    astronaut = data.astronaut()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="likeness-load-") as tmp:
        log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115
        server = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--port", str(port), "--workspace", str(Path(tmp) / "ws")],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.2)
            load0 = os.getloadavg()
            with httpx.Client(base_url=url, timeout=3600) as c:
                job1, t_idle = build(c, png(astronaut), "astronaut.png", args.quality)
                assert job1["state"] == "succeeded", job1
                avatar = job1["avatar_id"]
                manifest = c.get(f"/v1/avatars/{avatar}").json()
                v = manifest["views"]["view_yaw+30_pitch+0"]
                k = args.size / v["intrinsics"]["width"]
                intr = {n: v["intrinsics"][n] * k for n in ("fx", "fy", "cx", "cy")}
                cam = {"cam2world": v["cam2world"], "intrinsics": {**intr, "width": args.size, "height": args.size}}

                stats = {"render_s": [], "poll_s": [], "failures": []}
                lock = threading.Lock()
                threads: list[threading.Thread] = []
                done = threading.Event()

                def client(job_id: str) -> None:
                    with httpx.Client(base_url=url, timeout=3600) as cl:
                        renders_left = args.renders
                        while not done.is_set():
                            for path in (f"/v1/jobs/{job_id}", "/v1/health"):
                                t = time.monotonic()
                                r = cl.get(path)
                                with lock:
                                    stats["poll_s"].append(time.monotonic() - t)
                                    if r.status_code != 200:
                                        stats["failures"].append((path, r.status_code))
                            if renders_left:
                                renders_left -= 1
                                t = time.monotonic()
                                r = cl.post(f"/v1/avatars/{avatar}/render", json=cam)
                                with lock:
                                    stats["render_s"].append(time.monotonic() - t)
                                    if r.status_code != 200:
                                        stats["failures"].append(("render", r.status_code))
                            time.sleep(0.5)

                def start_clients(job: dict) -> None:
                    for _ in range(args.clients):
                        th = threading.Thread(target=client, args=(job["id"],), daemon=True)
                        th.start()
                        threads.append(th)

                job2, t_load = build(c, png(astronaut[:, ::-1].copy()), "mirror.png", args.quality, start_clients)
                done.set()
                for th in threads:
                    th.join(600)
            load1 = os.getloadavg()
        finally:
            server.terminate()
            server.wait(60)
            log.close()

    rs, ps = np.array(stats["render_s"]), np.array(stats["poll_s"])
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    import torch

    from engine import __version__

    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": commit,
        "engine_version": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "device": "cpu", "loadavg_before": load0, "loadavg_after": load1},
        "quality": args.quality,
        "build_idle_s": round(t_idle, 1),
        "builds_per_hour_idle": round(3600.0 / t_idle, 2),
        "build_under_load_s": round(t_load, 1),
        "build_under_load_state": job2["state"],
        "clients": args.clients,
        "render_size": args.size,
        "renders": int(rs.size),
        "render_p50_s": round(float(np.percentile(rs, 50)), 2) if rs.size else None,
        "render_p95_s": round(float(np.percentile(rs, 95)), 2) if rs.size else None,
        "render_max_s": round(float(rs.max()), 2) if rs.size else None,
        "polls": int(ps.size),
        "poll_p50_ms": round(float(np.percentile(ps, 50)) * 1000, 1) if ps.size else None,
        "poll_p95_ms": round(float(np.percentile(ps, 95)) * 1000, 1) if ps.size else None,
        "failures": stats["failures"],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if not stats["failures"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
