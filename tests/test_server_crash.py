"""What a build job tells its user, from a real server process: a worker that crashes in native code fails its
job at once (no three crash-and-retry rounds), a resubmission answers that failure instead of crashing again, and
the next worker serves other jobs; a photo with several faces succeeds with the notice in the job's status. The
crash is a real SIGABRT delivered to the real worker mid-build. The server builds with the tiny settings
(engine.config.TINY_OVERRIDES through ``LIKENESS_BUILD_OVERRIDES``): the crash, the retry policy and the
several-faces notice do not depend on the fit's size, and a tiny build still runs for many seconds."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3

import numpy as np
import pytest
from PIL import Image
from test_server_harness import ServerProcess, wait_for

pytestmark = pytest.mark.slow  # a real server process / build (make quick skips it)

pytest.importorskip("fastapi", reason="the engine server needs the [server] extra")
BUILD_TIMEOUT_S = 1200


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from engine.config import TINY_OVERRIDES

    env = {"LIKENESS_BUILD_OVERRIDES": json.dumps(TINY_OVERRIDES)}
    srv = ServerProcess(tmp_path_factory.mktemp("crash") / "ws", extra_env=env)
    srv.start()
    yield srv
    srv.stop()


def submit(c, data: bytes, options: dict) -> dict:
    r = c.post(
        "/v1/builds",
        files={"file": ("photo.png", data, "application/octet-stream")},
        data={"options": json.dumps(options)},
    )
    assert r.status_code in (200, 201, 202), r.text
    return r.json()["job"]


def finished(c, job_id):
    j = c.get(f"/v1/jobs/{job_id}").json()
    return j if j["state"] in ("succeeded", "failed", "cancelled") else None


def test_a_native_crash_fails_the_job_once_and_for_all(server, astronaut_png):
    with server.client() as c:
        job_id = submit(c, astronaut_png, {"quality": "draft"})["id"]
        wait_for(lambda: c.get(f"/v1/jobs/{job_id}").json()["state"] == "running", 300, 0.2, "the job to run")
        (worker,) = wait_for(server.worker_pids, 60, 0.2, "the worker")
        os.kill(worker, signal.SIGABRT)  # what OpenCV's remap did on a 34000-px panorama
        job = wait_for(lambda: finished(c, job_id), 60, 0.2, "the job to fail")
        err = job["error"]
        assert job["state"] == "failed" and err["code"] == "native_crash" and "SIGABRT" in err["message"], job
        assert err["hint"]
        with sqlite3.connect(f"file:{server.workspace / 'jobs.sqlite3'}?mode=ro", uri=True) as db:
            (attempts,) = db.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
        assert attempts == 1, "not started again after a crash the same photo repeats"

        again = submit(c, astronaut_png, {"quality": "draft"})
        assert again["id"] == job_id and again["state"] == "failed", "resubmitting answers the failure"
        wait_for(lambda: len(server.worker_pids()) == 1, 120, 0.2, "a replacement worker")
        assert c.get("/v1/health").status_code == 200


def test_several_faces_reach_the_job_status(server, astronaut_rgb):
    big = np.asarray(Image.fromarray(astronaut_rgb).resize((768, 768)))
    canvas = np.full((768, 1300, 3), 200, np.uint8)
    canvas[:, :768] = big
    canvas[128:640, 780:1292] = astronaut_rgb
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    with server.client() as c:
        job_id = submit(c, buf.getvalue(), {"quality": "draft"})["id"]
        job = wait_for(lambda: finished(c, job_id), BUILD_TIMEOUT_S, 1.0, "the build")
        assert job["state"] == "succeeded", job
        shown = [w for w in job["warnings"] if not w.startswith("no artist asset")]  # no prior prepared: one more
        assert len(shown) == 1 and "shows 2 faces" in shown[0], job
        manifest = c.get(f"/v1/avatars/{job['avatar_id']}").json()
        manifest = manifest.get("manifest", manifest)
        assert [w["code"] for w in manifest["warnings"] if w["code"] != "asset_skipped"] == ["several_faces"]
