"""A worker that crashes in native code fails its job at once (no three crash-and-retry rounds), a resubmission of
the same photo answers that failure instead of crashing again, and the next worker serves other jobs. Real
server process; the crash is a real SIGABRT delivered to the real worker mid-build."""

from __future__ import annotations

import json
import os
import signal
import sqlite3

import pytest
from test_server_harness import ServerProcess, wait_for

pytest.importorskip("fastapi", reason="the engine server needs the [server] extra")


def submit(c, data: bytes, options: dict):
    return c.post(
        "/v1/builds",
        files={"file": ("astronaut.png", data, "application/octet-stream")},
        data={"options": json.dumps(options)},
    )


def test_a_native_crash_fails_the_job_once_and_for_all(tmp_path, astronaut_png):
    srv = ServerProcess(tmp_path / "ws")
    srv.start()
    try:
        with srv.client() as c:
            r = submit(c, astronaut_png, {"quality": "draft"})
            assert r.status_code in (200, 201, 202), r.text
            job_id = r.json()["job"]["id"]
            wait_for(lambda: c.get(f"/v1/jobs/{job_id}").json()["state"] == "running", 300, 0.2, "the job to run")
            (worker,) = wait_for(srv.worker_pids, 60, 0.2, "the worker")
            os.kill(worker, signal.SIGABRT)  # what OpenCV's remap did on a 34000-px panorama

            def failed():
                j = c.get(f"/v1/jobs/{job_id}").json()
                return j if j["state"] == "failed" else None

            job = wait_for(failed, 60, 0.2, "the job to fail")
            err = job["error"]
            assert err["code"] == "native_crash" and "SIGABRT" in err["message"] and err["hint"], job
            with sqlite3.connect(f"file:{srv.workspace / 'jobs.sqlite3'}?mode=ro", uri=True) as db:
                (attempts,) = db.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
            assert attempts == 1, "not started again after a crash the same photo repeats"

            again = submit(c, astronaut_png, {"quality": "draft"}).json()["job"]
            assert again["id"] == job_id and again["state"] == "failed", "resubmitting answers the failure"
            wait_for(lambda: len(srv.worker_pids()) == 1, 120, 0.2, "a replacement worker")
            assert c.get("/v1/health").status_code == 200
    finally:
        srv.stop()
