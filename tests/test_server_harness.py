"""Shared harness of the server tests (holds no tests): a real ``python -m engine serve`` process on a free
loopback port with its own workspace, plus small helpers. Imported by tests/test_server*.py."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(fn, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Call ``fn`` until it returns something truthy; that value, or AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except FileNotFoundError:
        return False


def png_bytes(rgb, fmt: str = "PNG", **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kw)
    return buf.getvalue()


def workspace_with(ws: Path, bundle: Path, avatar_id: str) -> Path:
    """A server workspace at ``ws`` holding a copy of ``bundle`` as avatar ``avatar_id`` (without its turntable and
    novel views: what the render tests need)."""
    (ws / "avatars").mkdir(parents=True, exist_ok=True)
    shutil.copytree(bundle, ws / "avatars" / avatar_id, ignore=shutil.ignore_patterns("turntable*", "view_*"))
    return ws


def photo_camera(manifest: dict, size: int) -> dict:
    """The render request's camera for a bundle's photo camera framed as its work crop, at ``size`` pixels."""
    w = manifest["camera"]["work"]["intrinsics"]
    k = size / w["width"]
    intr = {n: w[n] * k for n in ("fx", "fy", "cx", "cy")}
    return {"cam2world": manifest["camera"]["cam2world"], "intrinsics": {**intr, "width": size, "height": size}}


class ServerProcess:
    """``likeness serve`` in a subprocess (its own session, so teardown can end the worker it spawned too)."""

    def __init__(
        self,
        workspace: Path,
        token: str | None = None,
        extra_args: tuple = (),
        extra_env: dict | None = None,
        soft_nofile: int | None = None,
    ) -> None:
        """``extra_env``: variables added to the server's environment; ``soft_nofile``: the soft open-file limit
        the server starts with (as after ``ulimit -Sn``)."""
        self.workspace = Path(workspace)
        self.port = free_port()
        self.token = token
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(extra_env or {})
        self.soft_nofile = soft_nofile
        self.tmpdir = self.workspace.parent / f"{self.workspace.name}-tmp"
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workspace.parent / f"{self.workspace.name}-server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, timeout: float = 60.0, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=timeout, **kw)

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "LIKENESS_TOKEN"}
        env.update(TMPDIR=str(self.tmpdir), GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
        if self.token:
            env["LIKENESS_TOKEN"] = self.token
        env.update(self.extra_env)
        return env

    def start(self, wait: bool = True, timeout: float = 180.0) -> None:
        cmd = [sys.executable, "-m", "engine", "serve", "--port", str(self.port), "--workspace", str(self.workspace)]
        log = open(self.log_path, "a")  # noqa: SIM115 - kept by the child
        self.proc = subprocess.Popen(
            [*cmd, *self.extra_args],
            cwd=REPO,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self._limit_files if self.soft_nofile else None,
        )
        log.close()
        if wait:
            self.wait_ready(timeout)

    def _limit_files(self) -> None:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.soft_nofile, hard))

    def wait_ready(self, timeout: float = 180.0) -> None:
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return httpx.get(self.url + "/v1/health", headers=self.headers(), timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, 0.1, "the server to answer /v1/health")

    def worker_pids(self) -> list[int]:
        """Build workers among the server's children (multiprocessing's resource tracker is not one)."""
        pids = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            for pid in (task / "children").read_text().split():
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except FileNotFoundError:
                    continue
                if b"spawn_main" in cmdline:
                    pids.append(int(pid))
        return pids

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the session we started: a worker that outlived its server
        except ProcessLookupError:
            pass

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
