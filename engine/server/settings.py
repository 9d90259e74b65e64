"""Server settings: one frozen dataclass, filled by ``likeness serve``; building one does nothing."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import LikenessError
from engine.io.images import MAX_FILE_BYTES


class UnsafeBind(LikenessError):
    """A non-loopback bind without a token: anyone on the network could drive the engine."""

    code = "unsafe_bind"
    exit_code = 2


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
    """Build devices, one worker each (``cpu``, ``cuda:0``...); empty = detect."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0..65535")
        if self.render_device not in ("cpu", "cuda"):
            raise ValueError("render_device must be cpu or cuda")
        if self.token is not None and len(self.token) < 8:
            raise ValueError("a token needs at least 8 characters")

    @property
    def max_upload_request_bytes(self) -> int:
        return self.max_upload_bytes + self.max_form_overhead_bytes


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
