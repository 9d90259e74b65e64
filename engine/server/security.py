"""The request guard, outermost ASGI middleware: Host allow-list, no cross-origin callers, bearer token, body cap.

Runs before routing, so it covers every route (downloads, event streams and the OpenAPI document included).
Request bodies are read into memory here, at most the cap, before any handler runs: an oversized request gets
413 and nothing is written anywhere (not even a spooled temp file). The one exception is an import's body
(``STREAMED_ROUTES``: a field of up to hundreds of MB), handed to its route as it arrives under the same cap and
timeouts: the first violation is answered here and the route sees the client go away. A body that stalls for
``body_timeout_s`` (or is not complete after ``body_deadline_s``) gets 408 and the connection is closed. Requests
that pass the checks are counted: beyond ``max_requests_in_flight`` (uploads: ``max_uploads_in_flight``) they get
503 ``busy``, so refused callers never take a slot. Every refusal is the JSON error
``{"error": {"code", "message", "hint"}}``.
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
STREAMED_ROUTES = (("POST", "/v1/avatars"),)
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
        s = self.settings
        if cap == s.max_import_request_bytes:
            hint = (
                f"send a field of at most {s.max_field_bytes / 2**20:.0f} MiB (the engine's LIKENESS_MAX_FIELD_BYTES), "
                "or render with the engine that built the avatar"
            )
        elif cap > s.max_json_bytes:
            hint = f"send one photo of at most {s.max_upload_bytes // 2**20} MB"
        else:
            hint = "send a smaller JSON body; only POST /v1/builds and POST /v1/avatars take large bodies"
        message = f"the request body is larger than {cap // 1024} KiB"
        await send_error(send, 413, "payload_too_large", message, hint, (CLOSE,))

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

    async def _stream(self, scope, receive, send, cap: int) -> None:
        """Run the route with its body handed over as it arrives, capped and timed as :meth:`_read_body` does: the
        first violation is answered here (413, 408), the route then receives ``http.disconnect`` and whatever it
        sends afterwards is dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.body_deadline_s
        state = {"total": 0, "answered": False, "complete": False}

        async def guarded_receive():
            if state["answered"]:
                return {"type": "http.disconnect"}
            if state["complete"]:
                return await receive()
            left = deadline - loop.time()
            wait = min(self.settings.body_timeout_s, left)
            try:
                msg = await asyncio.wait_for(receive(), max(wait, 0.0))
            except TimeoutError:
                state["answered"] = True
                await self._timed_out(send, stalled=wait < left)
                return {"type": "http.disconnect"}
            if msg["type"] == "http.request":
                state["total"] += len(msg.get("body", b""))
                if state["total"] > cap:
                    state["answered"] = True
                    await self._too_large(send, cap)
                    return {"type": "http.disconnect"}
                state["complete"] = not msg.get("more_body", False)
            return msg

        async def guarded_send(message) -> None:
            if not state["answered"]:
                await send(message)

        await self.app(scope, guarded_receive, guarded_send)

    def _cap(self, method: str, path: str) -> int:
        route = (method, path.rstrip("/"))
        if route in UPLOAD_ROUTES:
            return self.settings.max_upload_request_bytes
        if route in STREAMED_ROUTES:
            return self.settings.max_import_request_bytes
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
            if (scope["method"], scope["path"].rstrip("/")) in STREAMED_ROUTES:
                return await self._stream(scope, receive, send, cap)
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
