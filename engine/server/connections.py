"""Connection limits below HTTP: header timeout, per-peer and global connection caps, JSON answers.

uvicorn's own ``limit_concurrency`` counts every open socket, authenticated or not, and answers plain text: 255
idle sockets that never send a byte lock every client out, and nothing ever closes them. Instead
:class:`GuardedH11Protocol` (uvicorn's h11 protocol, handed to uvicorn as ``http=``) gives every connection
``header_timeout_s`` to send complete request headers, from its opening or from the end of its previous
response, and closes it otherwise. :class:`ConnectionTable` counts connections per remote IP and in all; when a
cap is reached it makes room by closing the oldest connection that is *waiting for a request* (one that never
passed the request guard first, so an authorised client's kept-alive connection goes last), never one with a
request in progress: a flood of idle sockets can only push out other idle sockets, its own first. Only when every
connection has a request in progress is the newcomer answered ``503 too_many_connections``. How many requests
run at once is the request guard's business (engine/server/security.py).
"""

from __future__ import annotations

import logging
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from engine.server.security import error_body

log = logging.getLogger("likeness.server")

MAX_REFUSED_OPEN = 256
"""Refused connections kept open until they send the request their 503 answers; beyond it they are dropped."""
LOG_EVERY_S = 10.0
"""Least time between two log lines about the same connection limit."""
FD_RESERVE = 256
"""Open files kept for everything but client sockets (database, uploads, worker pipes, bundles)."""


def raw_error(status: int, reason: str, code: str, message: str, hint: str) -> bytes:
    """A whole HTTP/1.1 error response with the JSON error body and ``Connection: close``, as bytes."""
    body = error_body(code, message, hint)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ConnectionTable:
    """The open connections by remote IP; decides who is admitted and who is closed to make room."""

    def __init__(self, max_connections: int, max_per_peer: int) -> None:
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer
        self.peers: dict[str, dict[GuardedH11Protocol, None]] = {}
        self.by_client: dict[tuple, GuardedH11Protocol] = {}
        self.total = 0
        self.refused_open = 0
        self.evicted = 0
        self._warned = {}

    def warn(self, what: str, peer: str) -> None:
        """Log ``what`` at most once every LOG_EVERY_S seconds per kind (a flood must not flood the log too)."""
        now = time.monotonic()
        if now - self._warned.get(what, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._warned[what] = now
            log.warning(
                "%s (latest from %s; %d open, %d closed to make room so far)", what, peer, self.total, self.evicted
            )

    def admit(self, conn: GuardedH11Protocol) -> bool:
        """Register ``conn``, first closing a waiting connection where a cap is reached; False when none could
        be closed (the caller refuses ``conn``, which is then not registered)."""
        mine = self.peers.get(conn.peer, {})
        if len(mine) >= self.max_per_peer and not self._evict_one(mine):
            return False
        if self.total >= self.max_connections and not self._evict_anywhere():
            return False
        self.peers.setdefault(conn.peer, {})[conn] = None
        if conn.client is not None:
            self.by_client[conn.client] = conn
        self.total += 1
        return True

    def remove(self, conn: GuardedH11Protocol) -> None:
        mine = self.peers.get(conn.peer)
        if mine is None or conn not in mine:
            return
        del mine[conn]
        if not mine:
            del self.peers[conn.peer]
        if conn.client is not None and self.by_client.get(conn.client) is conn:
            del self.by_client[conn.client]
        self.total -= 1

    def authorised(self, client) -> None:
        """The request guard let a request of this client address through: its connection is shed last."""
        conn = self.by_client.get(tuple(client)) if client else None
        if conn is not None:
            conn.authorised = True

    def _evict_one(self, conns) -> bool:
        """Close the connection of ``conns`` that waits for a request, never authorised first, oldest first."""
        victim = min(
            (c for c in conns if c.waiting),
            key=lambda c: (c.authorised, c.waiting_since),
            default=None,
        )
        if victim is None:
            return False
        self.remove(victim)
        self.evicted += 1
        self.warn("connection cap reached: closing the oldest idle connections", victim.peer)
        victim.close_connection()
        return True

    def _evict_anywhere(self) -> bool:
        """Make room in the global cap at the expense of the peer holding the most connections."""
        for peer in sorted(self.peers, key=lambda p: len(self.peers[p]), reverse=True):
            if self._evict_one(self.peers[peer]):
                return True
        return False


async def _refuse(scope, receive, send) -> None:
    """The ASGI answer of a connection that found every slot busy."""
    body = error_body(
        "too_many_connections",
        "the server has too many open connections with requests in progress",
        "retry in a few seconds, and reuse one connection for several requests",
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"retry-after", b"2"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the header timeout and the connection caps of ``table``.

    Use :func:`protocol_class` to bind a table and a header timeout; uvicorn makes one instance per connection.
    """

    table: ConnectionTable
    header_timeout_s: float

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.peer = "?"
        self.waiting = True
        self.waiting_since = 0.0
        self.authorised = False
        self.partial = False
        self.refused = False
        self.header_timer = None

    # -- the asyncio.Protocol interface ------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.peer = self.client[0] if self.client else "?"
        self._await_request()
        if not self.table.admit(self):
            if self.table.refused_open >= MAX_REFUSED_OPEN:
                self.table.warn("dropping new connections: every connection is busy", self.peer)
                self.transport.abort()
                return
            self.table.warn("refusing new connections: every connection has a request in progress", self.peer)
            self.refused = True
            self.table.refused_open += 1
            self.app = _refuse  # answers its first request with 503 too_many_connections, then closes

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        if self.refused:
            self.refused = False
            self.table.refused_open -= 1
        else:
            self.table.remove(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.waiting and data:
            self.partial = True
        super().data_received(data)

    # -- uvicorn's hooks ---------------------------------------------------------------------------------------

    def handle_events(self) -> None:
        scope = self.scope
        super().handle_events()
        if self.scope is not scope:  # h11 produced a Request: complete headers arrived
            self.waiting = False
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        # Before uvicorn's own: it may parse a pipelined request at once, which ends the wait again.
        if not self.transport.is_closing():
            self._await_request()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (malformed, or headers beyond h11's 16 KiB): the JSON error, then close."""
        self.transport.write(
            raw_error(
                400,
                "Bad Request",
                "bad_request",
                "the request is not valid HTTP/1.1 or its headers are too large",
                "send an HTTP/1.1 request with headers under 16 KiB (any HTTP client library does)",
            )
        )
        self.close_connection()

    # -- the header timeout ------------------------------------------------------------------------------------

    def _await_request(self) -> None:
        self.waiting = True
        self.partial = False
        self.waiting_since = self.loop.time()
        self._cancel_header_timer()
        self.header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _header_timeout(self) -> None:
        self.header_timer = None
        if not self.waiting or self.transport.is_closing():
            return
        if self.partial and self.conn.our_state is h11.IDLE:
            self.transport.write(
                raw_error(
                    408,
                    "Request Timeout",
                    "request_timeout",
                    f"the request headers did not arrive within {self.header_timeout_s:g} s",
                    "send the whole request at once; check the network between the client and the server",
                )
            )
        self.close_connection()

    def close_connection(self) -> None:
        """Close this connection (idempotent); its request, if any, sees a disconnect."""
        self._cancel_header_timer()
        self.waiting = False
        if self.transport is None or self.transport.is_closing():
            return
        try:
            self.conn.send(h11.ConnectionClosed())
        except h11.LocalProtocolError:
            pass
        self.transport.close()


def protocol_class(table: ConnectionTable, header_timeout_s: float) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass bound to ``table`` and the timeout, to pass as uvicorn's ``http=``."""
    return type(
        "BoundGuardedH11Protocol", (GuardedH11Protocol,), {"table": table, "header_timeout_s": header_timeout_s}
    )


def raise_open_file_limit(want: int) -> int | None:
    """Raise the soft RLIMIT_NOFILE toward ``want`` (never above the hard limit); the soft limit now in force, or
    None where there is no such limit (Windows) or it is unlimited."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    return None if soft == resource.RLIM_INFINITY else soft
