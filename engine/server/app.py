"""API v1 routes (FastAPI). Domain errors are translated here, once, into ``{"error": {code, message, hint}}``."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine import __version__
from engine.errors import BundleError, LikenessError
from engine.server import API_VERSION
from engine.server.errors import ApiError, from_domain, not_found, scrub
from engine.server.imports import IMPORT_PARTS, Importer
from engine.server.jobs import (
    CANCELLED,
    FAILED,
    QUEUED,
    RETRYABLE_CODES,
    RUNNING,
    SUCCEEDED,
    Job,
    JobStore,
    canonical_json,
    job_key,
)
from engine.server.renders import Renderer
from engine.server.schema import (
    AvatarEnvelope,
    AvatarListing,
    AvatarSummary,
    BuildOptions,
    ErrorEnvelope,
    Health,
    JobEnvelope,
    JobOut,
    RenderRequest,
    SkippedAvatar,
)
from engine.server.settings import ServerSettings
from engine.server.supervisor import Supervisor
from engine.server.uploads import parse_upload, probe_image
from engine.server.workspace import NotFound, Workspace

log = logging.getLogger("likeness.server")

MEDIA = {
    ".png": "image/png",
    ".glb": "model/gltf-binary",
    ".obj": "model/obj",
    ".mtl": "text/plain",
    ".exr": "image/x-exr",
    ".json": "application/json",
    ".mp4": "video/mp4",
}
MAX_EVENT_STREAMS = 64
ERRORS = {status: {"model": ErrorEnvelope} for status in (401, 403, 404, 413, 422)}


def upload_responses(model, again: str, *statuses: int) -> dict:
    """The OpenAPI responses of an upload endpoint: 200 (``again``: the same upload was stored before) besides
    its 201/202, the extra error ``statuses`` and the common :data:`ERRORS`."""
    return {200: {"model": model, "description": again}, **{s: {"model": ErrorEnvelope} for s in statuses}, **ERRORS}


UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "one JPEG, PNG, WebP or HEIC photo"},
                    "options": {
                        "type": "string",
                        "description": "JSON object with any of quality, face_index, focal_35mm",
                        "example": '{"quality": "draft"}',
                    },
                },
            }
        }
    },
}
IMPORT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["manifest", "field"],
                "properties": {
                    name: {"type": "string", "format": "binary", "description": f"the bundle's {file}"}
                    for name, file in IMPORT_PARTS.items()
                },
            }
        }
    },
}


def detect_devices() -> tuple[str, ...]:
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return tuple(f"cuda:{i}" for i in range(n)) or ("cpu",)


def needs_rerun(job: Job, ws: Workspace) -> bool:
    """A resubmission re-queues a cancelled job, a failure that was not the input's fault, or a succeeded job
    whose bundle is gone; everything else returns the existing job."""
    if job.state == CANCELLED or (job.state == FAILED and job.error_code in RETRYABLE_CODES):
        return True
    if job.state == SUCCEEDED:
        try:
            ws.manifest(job.avatar_id or job.id)
        except (NotFound, BundleError):
            return True
    return False


def queue_build(store: JobStore, ws: Workspace, key: str, options: str, name: str, fmt: str, data: bytes):
    """(job, created): the job of ``key``, new or re-queued when created is True."""
    existing = store.by_key(key)
    if existing is not None:
        if needs_rerun(existing, ws):
            ws.write_input(existing.id, fmt, data)
            if store.requeue(existing.id):
                return store.get(existing.id), True
        return store.get(existing.id), False
    job_id = uuid.uuid4().hex
    input_file = ws.write_input(job_id, fmt, data)
    try:
        return store.insert(key, options, name, input_file, job_id), True
    except sqlite3.IntegrityError:  # the same upload raced us; theirs won
        ws.remove_input(input_file)
        return store.by_key(key), False


def create_app(settings: ServerSettings, ws: Workspace | None = None) -> FastAPI:
    ws = ws or Workspace(settings.workspace)
    store = JobStore(ws.db_path)
    ray_slots = tuple(f"ray:{i}" for i in range(settings.ray_jobs)) if settings.ray else ()
    devices = settings.devices or ray_slots or detect_devices()
    renderer = Renderer(ws, settings.render_device, settings.max_pending_renders, settings.max_render_pixels)
    importer = Importer(ws, settings.max_field_bytes, settings.max_import_json_bytes, settings.max_asset_bytes)
    supervisors = [Supervisor(settings, ws, store, d) for d in devices]
    streams = {"open": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ws.remove_all_staging()
        ws.prune_inputs(store.input_files())
        released = store.release(None, settings.max_attempts, "server restarted")
        if released:
            log.warning("re-queued after a restart: %s", ", ".join(released))
        for s in supervisors:
            s.start()
        try:
            yield
        finally:
            for s in supervisors:
                s.stop()
            renderer.close()

    app = FastAPI(
        title="Likeness engine",
        version=__version__,
        description="One portrait photo -> animatable 3D head. See docs/API.md.",
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.store, app.state.ws, app.state.supervisors = store, ws, supervisors

    # -- errors: the one translation ------------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(LikenessError)
    async def _domain_error(request: Request, exc: LikenessError):
        return await _api_error(request, from_domain(exc))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound):
        return await _api_error(request, not_found())

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return await _api_error(request, ApiError(exc.status_code, code, str(exc.detail), ""))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))
        return await _api_error(request, ApiError(422, "invalid_request", message[:300], "see /v1/openapi.json"))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return await _api_error(request, ApiError(500, "internal", "unexpected server error", "see the server log"))

    # -- routes -----------------------------------------------------------------------------------------------

    def get_job(job_id: str) -> Job:
        job = store.get(job_id) if len(job_id) <= 64 else None
        if job is None:
            raise not_found("job")
        return job

    @app.get("/v1/health", response_model=Health, responses=ERRORS)
    def health() -> Health:
        return Health(
            engine_version=__version__,
            api_version=API_VERSION,
            device=",".join(devices),
            queue_length=store.count(QUEUED),
            busy=store.count(RUNNING) > 0,
            max_field_bytes=settings.max_field_bytes,
            max_asset_bytes=settings.max_asset_bytes,
        )

    @app.post(
        "/v1/builds",
        status_code=202,
        response_model=JobEnvelope,
        responses=upload_responses(JobEnvelope, "the same input was already submitted", 415, 503),
        openapi_extra={"requestBody": UPLOAD_BODY},
    )
    async def submit_build(request: Request, response: Response) -> JobEnvelope:
        """Queue a build of one photo (202), or return the job that already exists for it (200)."""
        upload = parse_upload(await request.body(), request.headers.get("content-type", ""), settings.max_upload_bytes)
        try:
            options = BuildOptions(**upload.options)
        except (ValidationError, TypeError) as exc:
            msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]) or "invalid"
            raise ApiError(
                422, "invalid_options", msg[:300], "options: quality, method, face_index, focal_35mm, uv_layout"
            ) from exc
        fmt = await run_in_threadpool(probe_image, upload.image, upload.filename)
        options_json = canonical_json(options.model_dump())
        key = job_key(upload.image, options_json, __version__)
        job, created = await run_in_threadpool(
            queue_build, store, ws, key, options_json, upload.filename, fmt, upload.image
        )
        response.status_code = 202 if created else 200
        return JobEnvelope(job=JobOut.of(job))

    @app.get("/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
    def job_status(job_id: str) -> JobOut:
        return JobOut.of(get_job(job_id))

    @app.post("/v1/jobs/{job_id}/cancel", response_model=JobOut, responses=ERRORS)
    def cancel_job(job_id: str) -> JobOut:
        """Cancel a queued job at once or ask a running one to stop (its state turns cancelled within seconds)."""
        get_job(job_id)
        return JobOut.of(store.request_cancel(job_id))

    @app.get(
        "/v1/jobs/{job_id}/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "each data: line is a Job"}, **ERRORS},
    )
    async def job_events(job_id: str) -> StreamingResponse:
        """Server-sent events: the job whenever it changes, ending after it reaches a terminal state."""
        await run_in_threadpool(get_job, job_id)
        if streams["open"] >= MAX_EVENT_STREAMS:
            raise ApiError(503, "busy", "too many event streams are open", "poll GET /v1/jobs/{id}")

        async def stream():
            streams["open"] += 1
            try:
                last, n, sent = None, 0, time.monotonic()
                while True:
                    job = await run_in_threadpool(store.get, job_id)
                    if job is None:
                        return
                    payload = JobOut.of(job).model_dump_json()
                    if payload != last:
                        n += 1
                        last, sent = payload, time.monotonic()
                        yield f"id: {n}\ndata: {payload}\n\n"
                    elif time.monotonic() - sent > 15.0:
                        sent = time.monotonic()
                        yield ": keep-alive\n\n"
                    if job.terminal:
                        return
                    await asyncio.sleep(0.25)
            finally:
                streams["open"] -= 1

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.get("/v1/avatars", response_model=AvatarListing, responses=ERRORS)
    def list_avatars() -> AvatarListing:
        """Every usable bundle; a folder whose bundle cannot be used is reported under ``skipped`` instead of
        failing the listing."""
        skipped: list = []
        avatars = [AvatarSummary(**ws.summary(i, m)) for i, m in ws.list_avatars(skipped)]
        bad = [
            SkippedAvatar(id=i, code=exc.code, message=scrub(exc.message), hint=scrub(exc.hint)) for i, exc in skipped
        ]
        return AvatarListing(avatars=avatars, skipped=bad)

    @app.post(
        "/v1/avatars",
        status_code=201,
        response_model=AvatarEnvelope,
        responses=upload_responses(AvatarEnvelope, "the same files were imported before", 400, 415, 503, 507),
        openapi_extra={"requestBody": IMPORT_BODY},
    )
    async def import_avatar(request: Request, response: Response) -> AvatarEnvelope:
        """Import a bundle the engine did not build (its manifest, field and, for expressions, landmarks and
        expression) so that it can be rendered: 201 when stored, 200 with the same id when already stored."""
        avatar_id, created = await importer.receive(request)
        response.status_code = 201 if created else 200
        return AvatarEnvelope(avatar=AvatarSummary(**ws.summary(avatar_id, ws.manifest(avatar_id))))

    @app.get("/v1/avatars/{avatar_id}", responses={200: {"description": "the bundle's manifest.json"}, **ERRORS})
    def get_avatar(avatar_id: str) -> dict:
        return ws.manifest(avatar_id)

    @app.get(
        "/v1/avatars/{avatar_id}/files/{key}",
        response_class=FileResponse,
        responses={200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"}, **ERRORS},
    )
    def download(avatar_id: str, key: str) -> FileResponse:
        """A bundle file by its manifest key (glb, texture, depth_exr, ...) or turntable_frame_NNN."""
        path = ws.resolve_artifact(avatar_id, key)
        return FileResponse(
            path,
            media_type=MEDIA.get(path.suffix.lower(), "application/octet-stream"),
            headers={
                "X-Content-Type-Options": "nosniff",
                "Content-Disposition": f'attachment; filename="{key}{path.suffix}"',
            },
        )

    @app.post(
        "/v1/avatars/{avatar_id}/render",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}, "image/x-exr": {}}, "description": "RGBA PNG or depth EXR"},
            503: {"model": ErrorEnvelope},
            **ERRORS,
        },
    )
    async def render(avatar_id: str, req: RenderRequest) -> Response:
        """Render the avatar's radiance field from any camera (engine conventions, see docs/API.md)."""
        data, media_type = await renderer.render(avatar_id, req)
        return Response(data, media_type=media_type, headers={"Cache-Control": "no-store"})

    def openapi():
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            if settings.token:
                schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
