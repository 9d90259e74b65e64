"""A stdlib-only client for the engine's HTTP API v1 (no bpy, no engine import; safe in worker threads).

Every call has an explicit timeout; HTTP and socket failures become the typed errors of ``client.errors``.
"""

from __future__ import annotations

import json
import mimetypes
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from ..bundle import BundleInvalid, bundle_path
from . import bundle_upload, swap
from .errors import (
    Cancelled,
    DestinationRefused,
    EngineError,
    EngineIncompatible,
    EngineUnreachable,
    NotFound,
    error_from_body,
    error_from_job,
)
from .types import API_VERSION, AvatarSummary, BuildOptions, Health, Job

DEFAULT_TIMEOUT_S = 10.0
UPLOAD_TIMEOUT_S = 120.0
RENDER_TIMEOUT_S = 300.0


def _check_destination(dest: Path) -> None:
    """Raise DestinationRefused unless ``dest`` is absent, an empty folder or a Likeness bundle."""
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        return
    hint = "choose another download folder in the add-on's preferences, or move what is there yourself"
    if not dest.is_dir():
        raise DestinationRefused(f"{dest} is a file, not a bundle folder; refusing to replace it", hint)
    if not any(dest.iterdir()):
        return
    try:
        fmt = json.loads((dest / "manifest.json").read_text()).get("format")
    except (OSError, ValueError, AttributeError, RecursionError):
        fmt = None
    if fmt != "likeness-avatar":
        raise DestinationRefused(f"{dest} exists and is not a Likeness avatar bundle; refusing to replace it", hint)


def require_api_version(health: Health, where: str) -> Health:
    """``health`` if the engine speaks this add-on's API version, else :class:`EngineIncompatible`."""
    if health.api_version != API_VERSION:
        newer = "add-on" if health.api_version > API_VERSION else "engine"
        raise EngineIncompatible(
            f"the engine at {where} speaks API version {health.api_version}, this add-on speaks {API_VERSION}",
            f"update the Likeness {newer} so both match",
        )
    return health


class EngineClient:
    """Talks to one engine at ``base_url`` (e.g. ``http://127.0.0.1:8765``; ``/v1`` is added here)."""

    def __init__(self, base_url: str, token: str = "", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        url = base_url.strip().rstrip("/")
        if not url:
            raise EngineUnreachable("no engine URL is set", "set one in the add-on preferences")
        if "://" not in url:
            url = "http://" + url
        if url.endswith("/v1"):
            url = url[:-3]
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise EngineUnreachable(f"{base_url!r} is not an http(s) URL", "e.g. http://127.0.0.1:8765")
        self.base_url = url
        self.token = token.strip()
        self.timeout_s = timeout_s

    # -- plumbing -------------------------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | Iterable[bytes] | None = None,
        content_type: str = "",
        timeout_s: float = 0.0,
        content_length: int | None = None,
    ) -> tuple[bytes, str]:
        """``body``: bytes, or an iterable of chunks streamed as they come (with its ``content_length``)."""
        req = urllib.request.Request(self.base_url + "/v1" + path, data=body, method=method)
        req.add_header("Accept", "application/json, image/png, */*")
        if content_type:
            req.add_header("Content-Type", content_type)
        if content_length is not None:
            req.add_header("Content-Length", str(content_length))
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s) as resp:  # noqa: S310 (http/s only)
                return resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                decoded = json.loads(raw.decode("utf-8")) if raw else None
            except ValueError:
                decoded = None
            fallback = f"the engine answered HTTP {exc.code} to {method} {path}"
            raise error_from_body(exc.code, decoded, fallback) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EngineUnreachable(
                f"the engine at {self.base_url} is not reachable ({reason})",
                "start it, or check the URL in the add-on preferences",
            ) from None

    def _json(self, method: str, path: str, payload: dict | None = None, timeout_s: float = 0.0) -> dict:
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        raw, _ = self._request(
            method, path, body=body, content_type="application/json" if body else "", timeout_s=timeout_s
        )
        try:
            return json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            raise EngineError(f"the engine sent invalid JSON for {method} {path}") from None

    # -- API ------------------------------------------------------------------------------------------------------

    def health(self) -> Health:
        return Health.from_dict(self._json("GET", "/health"))

    def check_compatible(self) -> Health:
        """``health()`` and refuse an engine that speaks another API version."""
        return require_api_version(self.health(), self.base_url)

    def submit_build(self, photo: bytes, filename: str, options: BuildOptions) -> Job:
        boundary = "likeness-" + uuid.uuid4().hex
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        safe_name = os.path.basename(filename).replace('"', "_") or "photo"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="options"\r\n'
            f"Content-Type: application/json\r\n\r\n{json.dumps(options.to_dict())}\r\n".encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n".encode(),
            photo,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
        raw, _ = self._request(
            "POST",
            "/builds",
            body=b"".join(parts),
            content_type=f"multipart/form-data; boundary={boundary}",
            timeout_s=UPLOAD_TIMEOUT_S,
        )
        return Job.from_dict(json.loads(raw.decode("utf-8"))["job"])

    def job(self, job_id: str) -> Job:
        return Job.from_dict(self._json("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}"))

    def cancel(self, job_id: str) -> Job | None:
        d = self._json("POST", f"/jobs/{urllib.parse.quote(job_id, safe='')}/cancel")
        d = d.get("job", d)
        return Job.from_dict(d) if "id" in d else None

    def wait(
        self,
        job_id: str,
        on_update: Callable[[Job], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
    ) -> Job:
        """Poll a job until it ends; a succeeded job is returned, a failed or cancelled one raises.

        ``should_cancel`` returning True asks the engine to cancel and raises :class:`Cancelled`.
        """
        t0 = time.monotonic()
        while True:
            if should_cancel and should_cancel():
                try:
                    self.cancel(job_id)
                except EngineError:
                    pass  # already finished or the engine went away: nothing left to cancel
                raise Cancelled("the build was cancelled")
            job = self.job(job_id)
            if on_update:
                on_update(job)
            if job.state == "succeeded":
                return job
            if job.state == "cancelled":
                raise Cancelled("the build was cancelled")
            if job.state == "failed":
                raise error_from_job(job.error)
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                raise EngineError(f"the build did not finish within {timeout_s:.0f} s")
            time.sleep(poll_s)

    def avatars(self) -> list[AvatarSummary]:
        return [AvatarSummary.from_dict(a) for a in self._json("GET", "/avatars").get("avatars", [])]

    def manifest(self, avatar_id: str) -> dict:
        return self._json("GET", f"/avatars/{urllib.parse.quote(avatar_id, safe='')}")

    def has_avatar(self, avatar_id: str) -> bool:
        """True when the engine holds a usable bundle of ``avatar_id``."""
        try:
            self.manifest(avatar_id)
        except NotFound:
            return False
        return True

    def upload_bundle(self, bundle_dir: str | Path, max_field_bytes: int = 0) -> str:
        """Send a bundle folder the engine did not build -- its manifest, field and, for expressions, landmarks,
        photo expression and the asset GLB (when the engine takes one and it fits) -- streamed from the files
        (``POST /v1/avatars``); returns the engine's id for it, the same for the same files however often they
        are sent. The field must fit the engine's cap (``max_field_bytes``; 0: the cap its health reports),
        checked before anything is sent. :class:`~.bundle_upload.FieldMissing` when the folder has no field."""
        health = self.health()
        parts = bundle_upload.upload_parts(bundle_dir, max_asset_bytes=health.max_asset_bytes)
        limit = max_field_bytes or health.max_field_bytes or bundle_upload.DEFAULT_MAX_FIELD_BYTES
        bundle_upload.check_field_size(parts, limit, self.base_url)
        boundary = "likeness-" + uuid.uuid4().hex
        body, length = bundle_upload.multipart_stream(parts, boundary)
        raw, _ = self._request(
            "POST",
            "/avatars",
            body=body,
            content_type=f"multipart/form-data; boundary={boundary}",
            timeout_s=UPLOAD_TIMEOUT_S,
            content_length=length,
        )
        try:
            return str(json.loads(raw.decode("utf-8"))["avatar"]["id"])
        except (ValueError, KeyError, TypeError):
            raise EngineError("the engine sent an invalid answer to POST /avatars") from None

    def file(self, avatar_id: str, key: str, timeout_s: float = UPLOAD_TIMEOUT_S) -> bytes:
        q = urllib.parse.quote
        return self._request("GET", f"/avatars/{q(avatar_id, safe='')}/files/{q(key, safe='')}", timeout_s=timeout_s)[0]

    def download_bundle(
        self,
        avatar_id: str,
        dest: str | Path,
        keys: tuple[str, ...] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Path:
        """Fetch an avatar's manifest and files (``keys``: the manifest keys to fetch; None = all but the field)
        into ``dest``, staged in a sibling folder and swapped into place, so ``dest`` is always one complete bundle
        (or absent). Refuses (:class:`DestinationRefused`, nothing touched) a ``dest`` that holds anything but a
        Likeness bundle."""
        dest = Path(dest)
        _check_destination(dest)
        manifest = self.manifest(avatar_id)
        files = manifest.get("files", {})
        wanted = [k for k in files if (k in keys if keys is not None else k != "field")]
        swap.sweep(dest)
        stage = swap.leftover_path(dest, "staging")
        stage.mkdir()
        try:
            for key in wanted:
                if should_cancel and should_cancel():
                    raise Cancelled("the download was cancelled")
                try:  # the add-on's one resolving rule (bundle.bundle_path): a name must stay inside the bundle
                    bundle_path(stage, files[key], f"files.{key}", required=False)
                except BundleInvalid as exc:
                    raise EngineError(str(exc), "the engine sent a manifest naming files outside the bundle") from exc
                target = stage / files[key]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.file(avatar_id, key))
            (stage / "manifest.json").write_text(json.dumps(manifest, indent=1))
            _check_destination(dest)
            swap.swap_into_place(stage, dest)  # dest shows the old bundle or the new one, never neither
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return dest

    def render(
        self,
        avatar_id: str,
        cam2world: list[list[float]],
        intrinsics: dict,
        expression: dict[str, float] | None = None,
        output: str = "png",
        timeout_s: float = RENDER_TIMEOUT_S,
        rig: str | None = None,
        pose: dict | None = None,
    ) -> bytes:
        """Neural render of the radiance field: PNG (RGBA, straight alpha) or, with ``output="depth_exr"``, EXR.
        ``expression``: ARKit weights (names left out are 0, so ``{}`` is the neutral face); None renders the face
        as photographed. ``rig``: whose shapes move the field (``asset`` | ``proxy``; None: the engine's default,
        the asset's when the avatar has one). ``pose``: the asset armature's ``neck`` / ``head`` bones as 4x4
        rest -> posed world transforms in engine axes (scene_io.bone_pose); None: the rest pose."""
        payload = {
            "cam2world": [[float(v) for v in row] for row in cam2world],
            "intrinsics": intrinsics,
            "output": output,
        }
        if expression is not None:
            payload["expression"] = {k: float(v) for k, v in expression.items()}
            if rig is not None:
                payload["rig"] = rig
        if pose:
            payload["pose"] = {bone: [[float(v) for v in row] for row in m] for bone, m in pose.items()}
        body = json.dumps(payload).encode("utf-8")
        raw, _ = self._request(
            "POST",
            f"/avatars/{urllib.parse.quote(avatar_id, safe='')}/render",
            body=body,
            content_type="application/json",
            timeout_s=timeout_s,
        )
        return raw
