"""Start and stop a local engine process (``<python> -m engine serve``) on a free loopback port. No bpy.

The process gets a fresh random bearer token, its output goes to ``<workspace>/engine.log`` (the last line is
quoted when it dies), and on Linux it is killed if Blender dies without stopping it (``PR_SET_PDEATHSIG``). That
signal fires when the *thread* that forked the child ends, so every engine is forked from one long-lived thread.
"""

from __future__ import annotations

import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .api import EngineClient
from .errors import EngineError, EngineUnreachable

START_TIMEOUT_S = 120.0


def resolve_python(path: str) -> str:
    """A Python executable from what a user typed: the executable itself, a venv folder or its bin folder."""
    p = Path(os.path.expanduser(path.strip())) if path.strip() else None
    if p is None:
        raise EngineError("no engine Python is set", "set the path to the engine's Python or venv in the preferences")
    if p.is_dir():
        for cand in (p / "bin" / "python", p / "Scripts" / "python.exe", p / "python", p / "python.exe"):
            if cand.is_file():
                return str(cand)
        raise EngineError(f"no Python found in {p}", "point to the engine's venv folder or its python executable")
    if not p.is_file():
        raise EngineError(f"{p} does not exist", "point to the engine's venv folder or its python executable")
    return str(p)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Spawner:
    """Runs ``subprocess.Popen`` on one daemon thread that lives as long as the process (see the module note)."""

    def __init__(self) -> None:
        self._requests: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="likeness-engine-spawner", daemon=True)
                self._thread.start()
        reply: queue.Queue = queue.Queue(maxsize=1)
        self._requests.put((cmd, kwargs, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value

    def _serve(self) -> None:
        while True:
            cmd, kwargs, reply = self._requests.get()
            try:
                reply.put((True, subprocess.Popen(cmd, **kwargs)))
            except Exception as exc:  # handed back to the caller's thread
                reply.put((False, exc))


_spawner = _Spawner()


class LocalEngine:
    """One engine server process owned by this Blender session."""

    def __init__(self, python: str, workspace: str | Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.python = resolve_python(python)
        self.workspace = Path(os.path.expanduser(str(workspace)))
        self.host = host
        self.port = port or free_port(host)
        self.token = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workspace / "engine.log"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self) -> EngineClient:
        return EngineClient(self.url, self.token)

    def start(self, timeout_s: float = START_TIMEOUT_S) -> EngineClient:
        """Start the process (if not running) and wait until ``/v1/health`` answers; returns a client for it."""
        with self._lock:
            if not self.running():
                self._spawn()
            return self._wait_ready(timeout_s)

    def _spawn(self) -> None:
        self.workspace.mkdir(parents=True, exist_ok=True)
        cmd = [
            self.python,
            "-m",
            "engine",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workspace",
            str(self.workspace),
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the process's life)
        # The token goes in the environment, not the command line: other users' `ps` cannot read it there, and a
        # token that starts with "-" (token_urlsafe's alphabet has it) is not taken for an option.
        env = dict(os.environ, PYTHONUNBUFFERED="1", LIKENESS_TOKEN=self.token)
        for var in ("PYTHONHOME", "PYTHONPATH"):  # Blender's own Python settings must not leak into the engine
            env.pop(var, None)
        self.proc = _spawner.popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    def _wait_ready(self, timeout_s: float) -> EngineClient:
        client = EngineClient(self.url, self.token, timeout_s=2.0)
        t0 = time.monotonic()
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise EngineUnreachable(
                    f"the local engine exited with code {self.proc.returncode}: {self.last_log_line()}",
                    f"see {self.log_path}",
                )
            try:
                client.check_compatible()
                return EngineClient(self.url, self.token)
            except EngineUnreachable:
                if time.monotonic() - t0 > timeout_s:
                    raise EngineUnreachable(
                        f"the local engine did not answer within {timeout_s:.0f} s", f"see {self.log_path}"
                    ) from None
                time.sleep(0.25)

    def last_log_line(self) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no log"
        return lines[-1].strip() if lines else "no output"

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout_s)
            self.proc = None
            if self._log is not None:
                self._log.close()
                self._log = None
