"""``likeness serve``: refuse unsafe settings, take the workspace and the port, run uvicorn with the request guard
outermost and the connection limits of engine/server/connections.py below it."""

from __future__ import annotations

import errno
import logging
import socket
import sys

from engine.errors import LikenessError
from engine.server.settings import ServerSettings, build_overrides, check_bind
from engine.server.workspace import FileLock, Workspace

log = logging.getLogger("likeness.server")

BACKLOG = 2048
"""Connections the kernel queues for accept() (uvicorn's default)."""


class WorkspaceBusy(LikenessError):
    code = "workspace_busy"
    exit_code = 2


class PortBusy(LikenessError):
    """The port is taken (another server, or anything else listening there)."""

    code = "port_busy"
    exit_code = 2


class BindFailed(LikenessError):
    """The bind address cannot be listened on (unknown name, address not on this machine, no permission)."""

    code = "bind_failed"
    exit_code = 2


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` resolves to, bound before anything else is started; raises
    :class:`PortBusy` / :class:`BindFailed` (nothing is left open)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindFailed(
            f"cannot resolve the bind address {host!r}: {exc.strerror}", "pass --host 127.0.0.1 or a local address"
        ) from exc
    socks: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((addr[0], port, *addr[2:]))  # port 0: every address on the port the first one got
            sock.listen(BACKLOG)
            port = sock.getsockname()[1]
    except OSError as exc:
        for sock in socks:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortBusy(
                f"port {port} on {_shown(host)} is already in use",
                "stop the program listening there (another likeness serve?), or pass --port with a free port",
            ) from exc
        raise BindFailed(
            f"cannot listen on {_shown(host)}:{port}: {exc.strerror or exc}",
            "pass --host 127.0.0.1, an address of this machine, or a port above 1023",
        ) from exc
    return socks


def serve(settings: ServerSettings) -> int:
    """Run the server until interrupted; raises UnsafeBind / WorkspaceBusy / PortBusy / BindFailed (and, with
    ``--ray``, BackendUnavailable: no ray package, or no cluster at the address) before printing anything or
    starting a worker."""
    check_bind(settings)
    build_overrides()  # a malformed $LIKENESS_BUILD_OVERRIDES is one line now, not a failed job later
    if settings.ray:
        from engine.server.ray_jobs import check_ray

        check_ray(settings.ray)
    ws = Workspace(settings.workspace)
    lock = FileLock(ws.locks / "server.lock")
    if not lock.acquire(blocking=False):
        raise WorkspaceBusy(
            f"another likeness server is using the workspace {ws.root}", "stop it, or pass a different --workspace"
        )
    try:
        socks = bind_sockets(settings.host, settings.port)
    except LikenessError:
        lock.release()
        raise
    try:
        return _run(settings, ws, socks)
    finally:
        for sock in socks:
            sock.close()
        lock.release()


def _run(settings: ServerSettings, ws: Workspace, socks: list[socket.socket]) -> int:
    import uvicorn

    from engine.server.app import create_app
    from engine.server.connections import FD_RESERVE, ConnectionTable, protocol_class, raise_open_file_limit
    from engine.server.security import RequestGuard

    logging.getLogger("likeness").setLevel(logging.INFO)
    max_connections = settings.max_connections
    nofile = raise_open_file_limit(max_connections + 2 * FD_RESERVE)
    if nofile is not None and nofile - FD_RESERVE < max_connections:
        max_connections = max(64, nofile - FD_RESERVE)
        log.warning(
            "the open-file limit is %d: at most %d connections (raise it with ulimit -n)", nofile, max_connections
        )
    table = ConnectionTable(max_connections, min(settings.max_connections_per_peer, max_connections))
    app = create_app(settings, ws)
    port = socks[0].getsockname()[1]
    print(
        f"likeness: serving API v1 on http://{_shown(settings.host)}:{port}/v1 (workspace {ws.root}, "
        f"{'token required' if settings.token else 'no token: loopback only'})",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        RequestGuard(app, settings, table),
        http=protocol_class(table, settings.header_timeout_s),
        ws="none",
        proxy_headers=False,
        server_header=False,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        limit_concurrency=None,  # connections: ConnectionTable; requests: RequestGuard (both answer JSON)
        backlog=BACKLOG,
    )
    server = uvicorn.Server(config)
    server.run(sockets=socks)
    return 0 if server.started else 1
