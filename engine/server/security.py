"""The request guard, outermost ASGI middleware: Host allow-list, no cross-origin callers, bearer token, body cap.

Runs before routing, so it covers every route (downloads, event streams and the OpenAPI document included).
Request bodies are read into memory here, at most the cap, before any handler runs: an oversized request gets
413 and nothing is written anywhere (not even a spooled temp file).
"""

from __future__ import annotations

import hashlib
import hmac
import json

from engine.server.settings import ServerSettings

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
UPLOAD_ROUTES = (("POST", "/v1/builds"),)
MAX_UPLOADS_IN_FLIGHT = 4
"""Uploads buffered in memory at once (each up to ~50 MiB); more get 503 busy."""


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
    return json.dumps({"error": {"code": code, "message": message, "hint": hint}}).encode()


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

    def __init__(self, app, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings
        self.hosts = allowed_hosts(settings)
        self.token_digest = _digest(settings.token) if settings.token else None
        self.uploads_in_flight = 0

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
            f"send one photo of at most {self.settings.max_upload_bytes // 2**20} MB" if upload else "",
            ((b"connection", b"close"),),
        )

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

        cap = self._cap(scope["method"], scope["path"])
        lengths = [v for k, v in headers if k == b"content-length"]
        chunked = any(k == b"transfer-encoding" for k, _ in headers)
        try:
            declared = int(lengths[0]) if lengths else 0
        except ValueError:
            return await send_error(send, 400, "bad_request", "malformed Content-Length")
        if declared > cap:
            return await self._too_large(send, cap)
        if not declared and not chunked:
            return await self.app(scope, receive, send)

        upload = cap > self.settings.max_json_bytes
        if upload and self.uploads_in_flight >= MAX_UPLOADS_IN_FLIGHT:
            return await send_error(
                send, 503, "busy", "too many uploads at once", "retry shortly", ((b"retry-after", b"2"),)
            )
        self.uploads_in_flight += upload
        try:
            chunks, total = [], 0
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
                body = msg.get("body", b"")
                total += len(body)
                if total > cap:
                    return await self._too_large(send, cap)
                chunks.append(body)
                if not msg.get("more_body", False):
                    break
            buffered = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            del chunks
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return buffered
                return await receive()

            return await self.app(scope, replay, send)
        finally:
            self.uploads_in_flight -= upload
