"""``likeness serve --ray ADDRESS``: the server's build jobs on a Ray cluster, SQLite still the source of truth.

The slow test runs a real ``likeness serve --ray 127.0.0.1:PORT`` against a real local Ray head
(tests/batch_support.py's ``cluster``: loopback, token authentication, 2 CPUs) with the tiny build settings through
``LIKENESS_BUILD_OVERRIDES``: one job succeeds with rising progress and a downloadable bundle, built by a process of
the Ray cluster (not of the server); a photo without a face fails with the build's error; and a job is cancelled
while it runs on Ray. The quick ones check the refusals at start (no ray package, no cluster, bad overrides) and how
an item's crash is worded for a job."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import batch_support
import numpy as np
import pytest
from batch_support import TINY
from test_server_harness import REPO, ServerProcess, free_port, pid_alive, png_bytes, wait_for

cluster = batch_support.cluster  # the fixture: a Ray head on 127.0.0.1, started and stopped by this module

RUNNING = ("queued", "running")
ON_RAY = re.compile(r"job ([0-9a-f]{32}): on Ray: host \S+, Ray worker pid (\d+), build process pid (\d+)")


def _serve(tmp_path: Path, *args: str, prelude: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    code = (
        f"import sys; {prelude}from engine.cli import main; "
        f"sys.exit(main(['serve', '--port', '0', '--workspace', {str(tmp_path / 'ws')!r}, *{list(args)!r}]))"
    )
    return subprocess.run(
        ["nice", "-n", "5", sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )


def test_serve_ray_without_the_ray_extra_says_how_to_install_it(tmp_path):
    r = _serve(tmp_path, "--ray", "127.0.0.1:6379", prelude="sys.modules['ray'] = None; ")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "--ray needs the ray package" in lines[0] and "likeness[ray]" in lines[0], lines[0]
    assert "serving" not in r.stderr + r.stdout and not (tmp_path / "ws").exists()


def test_serve_ray_refuses_an_address_without_a_cluster_and_bad_overrides(tmp_path):
    pytest.importorskip("ray", reason="needs the ray extra (pip install -e '.[ray]')")
    r = _serve(tmp_path, "--ray", f"127.0.0.1:{free_port()}")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "no Ray cluster answers at 127.0.0.1:" in lines[0], r.stderr
    assert "serving" not in r.stderr

    import os

    env = {**os.environ, "LIKENESS_BUILD_OVERRIDES": '{"iterations": "ten"}'}
    r = _serve(tmp_path, env=env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "LIKENESS_BUILD_OVERRIDES is not usable" in lines[0], r.stderr


def test_an_items_crash_is_worded_as_a_local_build_words_it():
    from engine.server.jobs import native_crash_error, worker_crashed_error
    from engine.server.ray_jobs import job_error

    crash = {"code": "native_crash", "message": "the item's process crashed in native code (SIGSEGV)", "hint": "x"}
    assert job_error(crash, 1) == native_crash_error("SIGSEGV")
    killed = {"code": "worker_crashed", "message": "the item's process ended without a result (signal SIGKILL)"}
    assert job_error(killed, 3) == worker_crashed_error(3, "signal SIGKILL")
    no_face = {"code": "no_face", "message": "no face in /home/ann/secret/me.jpg", "hint": ""}
    code, message, hint = job_error(no_face, 1)
    assert code == "no_face" and "/home" not in message and "me.jpg" in message and hint


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        pid = int(_stat(pid)[1])
        out.append(pid)
    return out


def _on_ray(srv: ServerProcess, job_id: str):
    """(Ray worker pid, build process pid) once the server's log says the job's build started on Ray."""
    for m in ON_RAY.finditer(srv.log()):
        if m.group(1) == job_id:
            return int(m.group(2)), int(m.group(3))
    return None


def _submit(c, data: bytes, name: str) -> dict:
    r = c.post("/v1/builds", files={"file": (name, data, "image/png")}, data={"options": '{"quality": "draft"}'})
    assert r.status_code == 202, r.text
    return r.json()["job"]


@pytest.mark.slow
def test_serve_ray_builds_on_the_cluster_and_cancels(cluster, tmp_path, astronaut_rgb):
    pytest.importorskip("ray", reason="needs the ray extra (pip install -e '.[ray]')")
    address, cluster_env = cluster
    ray_env = {k: v for k, v in cluster_env.items() if k.startswith("RAY_")}
    srv = ServerProcess(
        tmp_path / "ws",
        extra_args=("--ray", address),
        extra_env={**ray_env, "LIKENESS_BUILD_OVERRIDES": json.dumps(TINY)},
    )
    srv.start()
    try:
        with srv.client() as c:
            assert c.get("/v1/health").json()["device"] == "ray:0"
            job = _submit(c, png_bytes(astronaut_rgb), "astronaut.png")
            seen, where = [], None
            deadline = time.monotonic() + 150
            while job["state"] in RUNNING:
                assert time.monotonic() < deadline, f"job still {job} after 150 s:\n{srv.log()[-3000:]}"
                time.sleep(0.1)
                job = c.get(f"/v1/jobs/{job['id']}").json()
                if job["state"] == "running":
                    seen.append((job["stage"], job["progress"], job["eta_s"]))
                if where is None and (pids := _on_ray(srv, job["id"])):
                    ray_worker, build = pids
                    # while it builds: the build's process is a child of a Ray worker in the cluster's session,
                    # and neither is a descendant of the server (whose session we started)
                    where = (_stat(ray_worker)[3], _ancestors(ray_worker), _stat(build)[1])
            assert job["state"] == "succeeded", f"{job}\n{srv.log()[-3000:]}"
            assert job["progress"] == 1.0 and job["avatar_id"] == job["id"]

            assert where is not None, srv.log()[-3000:]
            sid, ancestors, build_parent = where
            assert int(sid) != srv.proc.pid and srv.proc.pid not in ancestors and int(build_parent) == ray_worker
            assert ray_worker not in srv.worker_pids()

            progress = [p for _, p, _ in seen]
            assert progress == sorted(progress), progress
            assert len({p for p in progress if 0 < p < 1}) >= 3, seen
            assert len({s for s, _, _ in seen if s}) >= 2 and any(e is not None for _, _, e in seen), seen

            manifest = c.get(f"/v1/avatars/{job['id']}").json()
            assert manifest["input"]["name"] == "astronaut.png"
            assert {k: manifest["settings"][k] for k in TINY} == TINY  # the overrides reached the build
            glb = c.get(f"/v1/avatars/{job['id']}/files/glb")
            assert glb.status_code == 200 and glb.content[:4] == b"glTF"

            # a photo without a face: the job fails with the build's own error, its log kept in the workspace
            coffee = batch_support.not_a_face(tmp_path / "coffee.jpg").read_bytes()
            bad = _submit(c, coffee, "coffee.jpg")
            bad = wait_for(lambda: (j := c.get(f"/v1/jobs/{bad['id']}").json())["state"] not in RUNNING and j, 90, 0.2)
            assert bad["state"] == "failed" and bad["error"]["code"] == "no_face", bad
            assert bad["error"]["hint"] and str(srv.workspace) not in bad["error"]["message"], bad
            assert (srv.workspace / "ray" / "logs" / f"{bad['id']}.log").is_file()

            # a job cancelled while its build runs on Ray
            workers = srv.worker_pids()
            second = _submit(c, png_bytes(np.ascontiguousarray(astronaut_rgb[:, ::-1])), "flipped.png")
            _, build2 = wait_for(lambda: _on_ray(srv, second["id"]), 90, 0.1, "the second build to start on Ray")
            asked = time.monotonic()
            assert c.post(f"/v1/jobs/{second['id']}/cancel").status_code == 200
            done = wait_for(
                lambda: (j := c.get(f"/v1/jobs/{second['id']}").json())["state"] != "running" and j, 30, 0.1
            )
            took = time.monotonic() - asked
            assert done["state"] == "cancelled" and done["error"]["code"] == "cancelled", done
            assert took < 8, f"{took:.1f} s: the supervisor's 10 s grace kill, not ray.cancel"
            assert f"job {second['id']}: cancelling its Ray task" in srv.log()
            assert srv.worker_pids() == workers  # the local worker was not killed and replaced
            wait_for(lambda: not pid_alive(build2), 15, 0.2, "the cancelled build's process to end")

        avatars = srv.workspace / "avatars"
        assert sorted(p.name for p in avatars.iterdir()) == [job["id"]]  # nothing of the cancelled build
        assert list((srv.workspace / "ray" / "events").iterdir()) == []
        assert not (srv.workspace / "ray" / "logs" / f"{job['id']}.log").exists()
    finally:
        srv.stop()
