"""Server settings: one frozen dataclass, filled by ``likeness serve``; building one does nothing."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import LikenessError
from engine.io.images import MAX_FILE_BYTES


class UnsafeBind(LikenessError):
    """A non-loopback bind without a token: anyone on the network could drive the engine."""

    code = "unsafe_bind"
    exit_code = 2


def _env(name: str, default: float, kind=float):
    """A default taken from the environment variable ``name`` when it is set (``likeness serve`` has no flag for
    it); a malformed value is a ValueError, which ``likeness serve`` reports as one line."""

    def make():
        raw = os.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"{name} must be a{'n integer' if kind is int else ' number'}, not {raw!r}") from None

    return field(default_factory=make)


@dataclass(frozen=True)
class ServerSettings:
    """How ``likeness serve`` runs. Sizes in bytes, times in seconds."""

    workspace: Path
    """Folder holding jobs.sqlite3, inputs/ and avatars/ (created if missing)."""
    host: str = "127.0.0.1"
    """Bind address; anything but loopback needs ``token``."""
    port: int = 8765
    """TCP port."""
    token: str | None = None
    """Bearer token required on every route when set."""
    extra_hosts: tuple[str, ...] = ()
    """Host names accepted in the Host header besides loopback names and the bind address."""
    render_device: str = "cpu"
    """Device of on-request renders in the server process: cpu (default, never competes for GPU memory) | cuda."""
    max_upload_bytes: int = MAX_FILE_BYTES
    """Largest accepted image file."""
    max_form_overhead_bytes: int = 64 * 1024
    """Multipart framing + options allowed on top of ``max_upload_bytes``."""
    max_json_bytes: int = 64 * 1024
    """Largest body of any other request."""
    max_field_bytes: int = _env("LIKENESS_MAX_FIELD_BYTES", 256 * 2**20, int)
    """Largest ``field.safetensors`` an import (POST /v1/avatars) accepts: a draft field is ~17 MB, standard
    ~46 MB, high ~142 MB (more with extra views). Streamed to disk, never held in memory. LIKENESS_MAX_FIELD_BYTES."""
    max_asset_bytes: int = _env("LIKENESS_MAX_ASSET_BYTES", 64 * 2**20, int)
    """Largest ``asset/head.glb`` an import accepts (its keys drive the field under ``rig: asset``; a 2K asset is
    ~3 MB). LIKENESS_MAX_ASSET_BYTES."""
    max_import_json_bytes: int = 4 * 2**20
    """Largest manifest.json, landmarks.json or expression.json part of an import (a bundle's are tens of kB)."""
    max_render_pixels: int = 4096 * 4096
    """Largest width * height of one render."""
    max_pending_renders: int = 64
    """Renders waiting or running before new ones get 503."""
    cancel_grace_s: float = 10.0
    """How long a running build may take to notice a cancel before its worker is killed."""
    max_attempts: int = 3
    """Times a job is started before a crashing worker fails it for good."""
    progress_interval_s: float = 0.5
    """Least time between two progress writes of one job."""
    devices: tuple[str, ...] = field(default=())
    """Build devices, one worker each (``cpu``, ``cuda:0``...); empty = detect (with ``ray``: ``ray:0`` ...
    ``ray:N-1``, N = ``ray_jobs``)."""
    ray: str | None = None
    """Address of a Ray cluster (``HOST:PORT``, or ``auto``: the one ``ray start`` runs here, or $RAY_ADDRESS):
    each build job runs there as a Ray task (one GPU per build where the nodes have one), while the local workers
    keep claiming jobs and writing their state to SQLite. The workspace must be on a path every node sees
    (docs/BATCH.md, "likeness serve --ray"). None: builds run in the local workers. Needs the ``ray`` extra."""
    ray_jobs: int = _env("LIKENESS_RAY_JOBS", 1, int)
    """With ``ray``: how many jobs are on the cluster at once (one local worker each). LIKENESS_RAY_JOBS."""

    # Connection and request limits (docs/API.md, "Limits and timeouts"). Each default can be changed with the
    # environment variable named in its docstring; a value given here wins over the variable.
    header_timeout_s: float = _env("LIKENESS_HEADER_TIMEOUT_S", 10.0)
    """Seconds a connection has, from its opening (or the end of its previous response), to send complete request
    headers; then it is closed (with a JSON 408 when it had sent part of a request). LIKENESS_HEADER_TIMEOUT_S."""
    keep_alive_timeout_s: float = _env("LIKENESS_KEEP_ALIVE_S", 5.0)
    """Seconds an idle kept-alive connection stays open after a response before the server closes it.
    LIKENESS_KEEP_ALIVE_S."""
    body_timeout_s: float = _env("LIKENESS_BODY_TIMEOUT_S", 15.0)
    """Longest pause, in seconds, while a request body is being received; a longer stall is answered 408
    ``request_timeout`` and the connection closed. LIKENESS_BODY_TIMEOUT_S."""
    body_deadline_s: float = _env("LIKENESS_BODY_DEADLINE_S", 600.0)
    """Seconds to receive one whole request body however steadily it trickles (50 MiB at ~1 Mbit/s fits); then
    408 ``request_timeout``. LIKENESS_BODY_DEADLINE_S."""
    max_connections: int = _env("LIKENESS_MAX_CONNECTIONS", 4096, int)
    """Open TCP connections, all peers together. Beyond it the peer holding the most connections loses its oldest
    connection that is waiting for a request (one that never carried an authorised request first); only when
    every connection has a request in progress is the newcomer answered 503 ``too_many_connections``. Lowered at
    start to fit the process's open-file limit. LIKENESS_MAX_CONNECTIONS."""
    max_connections_per_peer: int = _env("LIKENESS_MAX_CONNECTIONS_PER_PEER", 1024, int)
    """Open TCP connections from one remote IP address; beyond it that peer's own oldest waiting connection is
    closed (never another peer's), or the newcomer answered 503 ``too_many_connections`` when all of them have a
    request in progress. LIKENESS_MAX_CONNECTIONS_PER_PEER."""
    max_requests_in_flight: int = _env("LIKENESS_MAX_REQUESTS", 256, int)
    """Requests past the request guard (Host, Origin, token) at once, event streams included; more get 503
    ``busy``. Refused requests never count. LIKENESS_MAX_REQUESTS."""
    max_uploads_in_flight: int = _env("LIKENESS_MAX_UPLOADS", 4, int)
    """Uploads being received and checked at once (a build's photo is buffered in memory, up to ~50 MiB; an
    import's field is streamed to disk); more get 503 ``busy``. LIKENESS_MAX_UPLOADS."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0..65535")
        if self.render_device not in ("cpu", "cuda"):
            raise ValueError("render_device must be cpu or cuda")
        if self.token is not None and len(self.token) < 8:
            raise ValueError("a token needs at least 8 characters")
        for name in ("header_timeout_s", "keep_alive_timeout_s", "body_timeout_s", "body_deadline_s"):
            if not 0 < getattr(self, name) <= 86400:
                raise ValueError(f"{name} must be between 0 and 86400 seconds")
        if self.ray is not None and not self.ray.strip():
            raise ValueError("--ray needs an address (HOST:PORT or auto)")
        for name in (
            "max_connections",
            "max_connections_per_peer",
            "max_requests_in_flight",
            "max_uploads_in_flight",
            "ray_jobs",
            "max_field_bytes",
            "max_asset_bytes",
            "max_import_json_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @property
    def max_upload_request_bytes(self) -> int:
        return self.max_upload_bytes + self.max_form_overhead_bytes

    @property
    def max_import_request_bytes(self) -> int:
        """The body cap of POST /v1/avatars: the field, the asset, three JSON parts and the multipart framing."""
        return (
            self.max_field_bytes + self.max_asset_bytes + 3 * self.max_import_json_bytes + self.max_form_overhead_bytes
        )


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for wildcards, LAN addresses and other names."""
    h = host.strip().lower().strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_bind(settings: ServerSettings) -> None:
    """Refuse a non-loopback bind without a token (raises :class:`UnsafeBind`)."""
    if not is_loopback(settings.host) and not settings.token:
        raise UnsafeBind(
            f"refusing to listen on {settings.host} without a token: anyone on that network could use the engine",
            "set LIKENESS_TOKEN (or --token) to a long random secret, or bind 127.0.0.1",
        )


OVERRIDES_ENV = "LIKENESS_BUILD_OVERRIDES"


class BadSetting(LikenessError):
    """A server setting taken from the environment that cannot be used."""

    code = "bad_setting"
    exit_code = 2


def build_overrides() -> dict:
    """``$LIKENESS_BUILD_OVERRIDES``: a JSON object of ``engine.config.BuildConfig`` settings applied on top of
    every job's preset, e.g. ``{"iterations": 10, "grid_res": 48}`` (what ``likeness batch --set`` does). A knob
    for tests and ablations only: the server's build options stay quality / face_index / focal_35mm / method, and
    the job key does not include these (use a fresh workspace when they change). Unset or empty: ``{}``.
    Raises :class:`BadSetting` for anything that is not such an object (``likeness serve`` checks it at start)."""
    raw = os.environ.get(OVERRIDES_ENV, "").strip()
    if not raw:
        return {}
    from engine.config import BuildConfig

    try:
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        if "quality" in value:
            raise ValueError("quality is a build option, not an override")
        BuildConfig.from_dict(value)
    except (ValueError, TypeError) as exc:
        raise BadSetting(
            f"{OVERRIDES_ENV} is not usable: {exc}",
            'set it to a JSON object of build settings, e.g. {"iterations": 10}',
        ) from None
    return value
