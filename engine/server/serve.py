"""``likeness serve``: refuse unsafe settings, take the workspace, run uvicorn with the request guard outermost."""

from __future__ import annotations

import logging
import sys

from engine.errors import LikenessError
from engine.server.security import RequestGuard
from engine.server.settings import ServerSettings, check_bind
from engine.server.workspace import FileLock, Workspace

log = logging.getLogger("likeness.server")


class WorkspaceBusy(LikenessError):
    code = "workspace_busy"
    exit_code = 2


def serve(settings: ServerSettings) -> int:
    """Run the server until interrupted; raises UnsafeBind / WorkspaceBusy before binding anything."""
    check_bind(settings)
    ws = Workspace(settings.workspace)
    lock = FileLock(ws.locks / "server.lock")
    if not lock.acquire(blocking=False):
        raise WorkspaceBusy(
            f"another likeness server is using the workspace {ws.root}", "stop it, or pass a different --workspace"
        )
    import uvicorn

    from engine.server.app import create_app

    logging.getLogger("likeness").setLevel(logging.INFO)
    app = create_app(settings, ws)
    host = settings.host
    shown = f"[{host}]" if ":" in host else host
    print(
        f"likeness: serving API v1 on http://{shown}:{settings.port}/v1 (workspace {ws.root}, "
        f"{'token required' if settings.token else 'no token: loopback only'})",
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.run(
            RequestGuard(app, settings),
            host=host,
            port=settings.port,
            proxy_headers=False,
            server_header=False,
            ws="none",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            limit_concurrency=256,
        )
    finally:
        lock.release()
    return 0
