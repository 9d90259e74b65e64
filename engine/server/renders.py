"""On-request renders, answered while builds run: they run in the server process, one at a time on one dedicated
thread (torch already spreads a render over the cores), on ``render_device`` (CPU by default, so a build on the
GPU never loses memory to a preview). Loaded avatars are cached by id and manifest time."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from engine.errors import InputError, LikenessError, OutOfMemory
from engine.io.bundle import bundle_file
from engine.server.errors import ApiError, from_domain, not_found, scrub
from engine.server.schema import RenderRequest
from engine.server.workspace import NotFound, Workspace

log = logging.getLogger("likeness.server")

CACHE_SIZE = 4
MEDIA_TYPES = {"png": "image/png", "depth_exr": "image/x-exr"}


def check_expression(weights: dict[str, float]) -> None:
    """Cheap refusals before a render is queued: 422 ``expressions_unavailable`` when this engine has no rig,
    ``bad_expression`` for a name that is not an ARKit-52 blendshape."""
    try:
        from engine.rig.arkit import parse_weights
    except ImportError as exc:
        raise ApiError(
            422,
            "expressions_unavailable",
            "this engine cannot render expressions yet (no expression rig installed)",
            "leave out 'expression' to render the face as photographed",
        ) from exc
    try:
        parse_weights(weights)
    except InputError as exc:
        raise ApiError(422, "bad_expression", scrub(exc.message), scrub(exc.hint)) from exc


def expression_deform(avatar, weights: dict[str, float], rig: str = "auto"):
    """The deformation of ``rig`` (engine.config.RIG_SOURCES) for ARKit ``weights``: absolute weights, names left
    out are 0, so ``{}`` is the neutral face (docs/RIG.md). The caller skips this for an absent expression (the
    face as photographed)."""
    check_expression(weights)
    from engine.rig import deform_for_avatar

    try:
        return deform_for_avatar(avatar, weights, rig=rig)
    except LikenessError as exc:
        raise from_domain(exc) from exc


def check_rig(bundle, manifest: dict, rig: str) -> None:
    """422 ``no_asset`` for ``rig="asset"`` on an avatar whose bundle has no asset (checked before queueing)."""
    if rig != "asset":
        return
    glb = bundle_file(bundle, manifest, "asset_glb", required=False)
    if glb is None or not glb.is_file():
        raise ApiError(
            422,
            "no_asset",
            "this avatar has no asset (asset/head.glb) whose keys could drive the field",
            "send rig 'auto' or 'proxy', or upload the bundle with its asset_glb part",
        )


def encode(render: dict, output: str) -> bytes:
    """PNG (RGBA, straight alpha) or single-channel float EXR (channel Z, z-depth in metres)."""
    buf = io.BytesIO()
    if output == "png":
        from PIL import Image

        from engine.extract.export import rgba_u8

        Image.fromarray(rgba_u8(render), "RGBA").save(buf, format="PNG", compress_level=3)
    else:
        import OpenEXR

        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        depth = np.ascontiguousarray(render["depth_m"], dtype=np.float32)
        OpenEXR.File(header, {"Z": depth}).write(buf)
    return buf.getvalue()


class Renderer:
    def __init__(self, ws: Workspace, device: str, max_pending: int, max_pixels: int) -> None:
        self.ws, self.device, self.max_pending, self.max_pixels = ws, device, max_pending, max_pixels
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="render")
        self.cache: OrderedDict = OrderedDict()
        self.lock = threading.Lock()
        self.pending = 0

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _bundle(self, avatar_id: str):
        """The folder of a renderable bundle: NotFound when there is none; a one-line BundleError when its
        manifest is unusable or its ``files.field`` does not resolve to a file inside it."""
        bundle = self.ws.bundle_dir(avatar_id)
        bundle_file(bundle, self.ws.manifest(avatar_id), "field")
        return bundle

    def _check_rig(self, avatar_id: str, rig: str) -> None:
        check_rig(self.ws.bundle_dir(avatar_id), self.ws.manifest(avatar_id), rig)

    def _avatar(self, avatar_id: str):
        from engine.avatar import load_avatar

        bundle = self._bundle(avatar_id)
        try:
            stamp = (bundle / "manifest.json").stat().st_mtime_ns
        except OSError as exc:  # removed in between
            raise NotFound(avatar_id) from exc
        with self.lock:
            hit = self.cache.get(avatar_id)
            if hit is not None and hit[0] == stamp:
                self.cache.move_to_end(avatar_id)
                return hit[1]
        avatar = load_avatar(bundle, device=self.device)
        with self.lock:
            self.cache[avatar_id] = (stamp, avatar)
            self.cache.move_to_end(avatar_id)
            while len(self.cache) > CACHE_SIZE:
                self.cache.popitem(last=False)
        return avatar

    def _render(self, avatar_id: str, req: RenderRequest) -> bytes:
        from engine.conventions import Intrinsics
        from engine.server.worker import classify

        try:
            avatar = self._avatar(avatar_id)
        except NotFound as exc:
            raise not_found("avatar") from exc
        except LikenessError as exc:
            raise from_domain(exc) from exc
        deform = None
        if req.expression is not None or req.pose:
            from engine.asset.skinning import render_deform

            if req.expression is not None:
                check_expression(req.expression)
            try:
                deform = render_deform(avatar, req.expression, req.pose, req.rig)
            except LikenessError as exc:
                raise from_domain(exc) from exc
        cam2world = np.array(req.cam2world, dtype=np.float64)
        intr = Intrinsics.from_dict(req.intrinsics.model_dump())
        try:
            out = avatar.render(cam2world, intr, deform=deform)
        except Exception as exc:  # noqa: BLE001 - OOM becomes 503, anything else is re-raised as is
            err = classify(exc, self.device)
            if isinstance(err, OutOfMemory):
                raise ApiError(503, err.code, err.message, "try a smaller image", {"Retry-After": "5"}) from exc
            raise
        return encode(out, req.output)

    async def render(self, avatar_id: str, req: RenderRequest) -> tuple[bytes, str]:
        """Queue one render; (bytes, media type). Cheap refusals (size, unknown avatar, no rig) come first."""
        w, h = req.intrinsics.width, req.intrinsics.height
        if w * h > self.max_pixels:
            raise ApiError(
                422, "render_too_large", f"{w}x{h} is more than {self.max_pixels} pixels", "render smaller tiles"
            )
        try:
            self._bundle(avatar_id)
        except NotFound as exc:
            raise not_found("avatar") from exc
        except LikenessError as exc:
            raise from_domain(exc) from exc
        if req.expression is not None:
            check_expression(req.expression)
            try:
                self._check_rig(avatar_id, req.rig)
            except NotFound as exc:
                raise not_found("avatar") from exc
            except LikenessError as exc:
                raise from_domain(exc) from exc
        if self.pending >= self.max_pending:
            raise ApiError(503, "busy", "too many renders are waiting", "retry shortly", {"Retry-After": "2"})
        self.pending += 1
        try:
            data = await asyncio.get_running_loop().run_in_executor(self.pool, self._render, avatar_id, req)
        finally:
            self.pending -= 1
        return data, MEDIA_TYPES[req.output]
