"""Which engine to talk to: a plain settings snapshot (read from the preferences on the main thread) and the one
local engine process this Blender session may own. No bpy here, so workers can call :func:`client_for`."""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from .client import EngineClient, LocalEngine

_local: LocalEngine | None = None
_lock = threading.Lock()


@dataclass(frozen=True)
class EngineSettings:
    """``mode`` LOCAL: start ``python -m engine serve`` from ``python`` (a venv or its python) on first use.
    ``mode`` REMOTE: connect to ``url`` with bearer ``token``. ``workspace``: the local engine's folder."""

    mode: str = "LOCAL"
    python: str = ""
    workspace: str = ""
    port: int = 0
    url: str = "http://127.0.0.1:8765"
    token: str = ""
    timeout_s: float = 10.0

    def describe(self) -> str:
        return f"local engine ({self.python or 'no Python set'})" if self.mode == "LOCAL" else f"engine at {self.url}"


def default_workspace() -> str:
    return str(Path(tempfile.gettempdir()) / f"likeness-engine-{os.getuid() if hasattr(os, 'getuid') else 'user'}")


def client_for(settings: EngineSettings) -> EngineClient:
    """A client for the configured engine; in LOCAL mode this starts the engine on first use (blocking: call it
    from a worker thread) and restarts it if it died or the settings changed."""
    if settings.mode != "LOCAL":
        client = EngineClient(settings.url, settings.token, timeout_s=settings.timeout_s)
        client.check_compatible()
        return client
    global _local
    with _lock:
        workspace = settings.workspace or default_workspace()
        stale = _local is not None and (
            not _local.running()
            or _local.workspace != Path(os.path.expanduser(workspace))
            or (settings.port and _local.port != settings.port)
        )
        if stale:
            _local.stop()
            _local = None
        if _local is None:
            _local = LocalEngine(settings.python, workspace, port=settings.port)
        engine = _local
    return engine.start()


def local_engine() -> LocalEngine | None:
    return _local


def stop_local_engine() -> bool:
    """Stop the local engine if this session started one; True when one was running."""
    global _local
    with _lock:
        engine, _local = _local, None
    if engine is None:
        return False
    was_running = engine.running()
    engine.stop()
    return was_running


atexit.register(stop_local_engine)
