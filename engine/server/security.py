"""The request guard, outermost ASGI middleware: Host allow-list, no cross-origin callers, bearer token, body cap.

Runs before routing, so it covers every route (downloads, event streams and the OpenAPI document included).
Request bodies are read into memory here, at most the cap, before any handler runs: an oversized request gets
413 and nothing is written anywhere (not even a spooled temp file). A body that stalls for ``body_timeout_s`` (or
is not complete after ``body_deadline_s``) gets 408 and the connection is closed. Requests that pass the checks
are counted: beyond ``max_requests_in_flight`` (uploads: ``max_uploads_in_flight``) they get 503 ``busy``, so
refused callers never take a slot. Every refusal is the JSON error ``{"error": {"code", "message", "hint"}}``.
Connection-level limits (header timeout, connection caps) are in engine/server/connections.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

from engine.server.errors import hint_for
from engine.server.settings import ServerSettings

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
UPLOAD_ROUTES = (("POST", "/v1/builds"),)
CLOSE = (b"connection", b"close")


def allowed_hosts(settings: ServerSettings) -> frozenset[str]:
    names = set(LOOPBACK_NAMES)
    if settings.host.strip("[]") not in WILDCARDS:
        names.add(settings.host.strip("[]").lower())
    names.update(h.strip("[]").lower() for h in settings.extra_hosts)
    return frozenset(names)


def host_name(value: str) -> str | None:
    """The host part of a Host header ('[::1]:8765' -> '::1'), or None when malformed."""
    value = value.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return name
    name, sep, port = value.partition(":")
    if sep and not port.isdigit():
        return None
    return name or None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def error_body(code: str, message: str, hint: str = "") -> bytes:
    """The JSON error document; an empty ``hint`` is filled by code (engine.server.errors.hint_for)."""
    return json.dumps({"error": {"code": code, "message": message, "hint": hint_for(code, hint)}}).encode()


async def send_error(send, status: int, code: str, message: str, hint: str = "", headers=()) -> None:
    body = error_body(code, message, hint)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware; see the module docstring for what it refuses and with which status."""

    def __init__(self, app, settings: ServerSettings, connections=None) -> None:
        """``connections``: the :class:`~engine.server.connections.ConnectionTable` told which connections carried
        a request that passed the checks (they are closed last when connections run short)."""
        self.app = app
        self.settings = settings
        self.connections = connections
        self.hosts = allowed_hosts(settings)
        self.token_digest = _digest(settings.token) if settings.token else None
        self.uploads_in_flight = 0
        self.requests_in_flight = 0

    def _check_headers(self, headers: list[tuple[bytes, bytes]]):
        """None when the request may proceed, else (status, code, message, hint, extra headers)."""
        hosts = [v for k, v in headers if k == b"host"]
        name = host_name(hosts[0].decode("latin-1")) if len(hosts) == 1 else None
        if name is None or name not in self.hosts:
            return (
                403,
                "host_not_allowed",
                "the Host header is missing or not one this server answers to",
                "connect to 127.0.0.1 or localhost, or start the server with --allow-host NAME",
                (),
            )
        for k, v in headers:
            if k == b"origin" or (k == b"sec-fetch-site" and v.lower() in (b"cross-site", b"same-site")):
                return (
                    403,
                    "origin_not_allowed",
                    "requests from web pages are refused",
                    "call the API from the Blender add-on, a script or curl",
                    (),
                )
        if self.token_digest is not None:
            auth = [v for k, v in headers if k == b"authorization"]
            scheme, _, token = (auth[0].decode("latin-1") if len(auth) == 1 else "").partition(" ")
            ok = scheme.lower() == "bearer" and hmac.compare_digest(_digest(token.strip()), self.token_digest)
            if not ok:
                return (
                    401,
                    "unauthorized",
                    "a valid bearer token is required",
                    "send 'Authorization: Bearer <token>' with the server's LIKENESS_TOKEN",
                    ((b"www-authenticate", b"Bearer"),),
                )
        return None

    async def _too_large(self, send, cap: int) -> None:
        upload = cap > self.settings.max_json_bytes
        await send_error(
            send,
            413,
            "payload_too_large",
            f"the request body is larger than {cap // 1024} KiB",
            f"send one photo of at most {self.settings.max_upload_bytes // 2**20} MB"
            if upload
            else "send a smaller JSON body; only POST /v1/builds takes large bodies",
            (CLOSE,),
        )

    async def _timed_out(self, send, stalled: bool) -> None:
        s = self.settings
        message = (
            f"the request body stalled for more than {s.body_timeout_s:g} s"
            if stalled
            else f"the request body was not complete after {s.body_deadline_s:g} s"
        )
        hint = "send the whole body without pausing; check the network, or retry"
        await send_error(send, 408, "request_timeout", message, hint, (CLOSE,))

    async def _read_body(self, receive, send, cap: int) -> bytes | None:
        """The whole body (at most ``cap``), or None once an error was sent or the client went away."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.body_deadline_s
        chunks, total = [], 0
        while True:
            left = deadline - loop.time()
            wait = min(self.settings.body_timeout_s, left)
            try:
                msg = await asyncio.wait_for(receive(), max(wait, 0.0))
            except TimeoutError:
                await self._timed_out(send, stalled=wait < left)
                return None
            if msg["type"] == "http.disconnect":
                return None
            body = msg.get("body", b"")
            total += len(body)
            if total > cap:
                await self._too_large(send, cap)
                return None
            chunks.append(body)
            if not msg.get("more_body", False):
                return b"".join(chunks)

    def _cap(self, method: str, path: str) -> int:
        if (method, path.rstrip("/")) in UPLOAD_ROUTES:
            return self.settings.max_upload_request_bytes
        return self.settings.max_json_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = [(k.lower(), v) for k, v in scope.get("headers", [])]
        problem = self._check_headers(headers)
        if problem is not None:
            status, code, message, hint, extra = problem
            return await send_error(send, status, code, message, hint, extra)
        if self.connections is not None:
            self.connections.authorised(scope.get("client"))

        cap = self._cap(scope["method"], scope["path"])
        lengths = [v for k, v in headers if k == b"content-length"]
        chunked = any(k == b"transfer-encoding" for k, _ in headers)
        try:
            declared = int(lengths[0]) if lengths else 0
        except ValueError:
            return await send_error(
                send, 400, "bad_request", "malformed Content-Length", "send a decimal Content-Length", (CLOSE,)
            )
        if declared > cap:
            return await self._too_large(send, cap)
        upload = cap > self.settings.max_json_bytes and bool(declared or chunked)
        if self.requests_in_flight >= self.settings.max_requests_in_flight:
            return await send_error(
                send,
                503,
                "busy",
                "too many requests are in progress",
                "retry in a few seconds; close event streams you no longer watch",
                ((b"retry-after", b"2"),),
            )
        if upload and self.uploads_in_flight >= self.settings.max_uploads_in_flight:
            return await send_error(
                send,
                503,
                "busy",
                "too many uploads are being received at once",
                "retry in a few seconds (the answer's Retry-After says when); send one photo at a time",
                ((b"retry-after", b"2"),),
            )
        self.requests_in_flight += 1
        self.uploads_in_flight += upload
        try:
            if not declared and not chunked:
                return await self.app(scope, receive, send)
            body = await self._read_body(receive, send, cap)
            if body is None:
                return
            buffered = {"type": "http.request", "body": body, "more_body": False}
            del body
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return buffered
                return await receive()

            return await self.app(scope, replay, send)
        finally:
            self.requests_in_flight -= 1
            self.uploads_in_flight -= upload
