"""A built avatar loaded back from its bundle: the field, its cameras, and rendering from any world camera."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.conventions import Intrinsics, orbit_camera_gl
from engine.errors import BundleError
from engine.field.model import RadianceField
from engine.field.store import FIELD_FORMAT, FIELD_VERSION
from engine.io.bundle import bundle_file, bundle_label, read_landmarks_world, read_manifest, short
from engine.render.renderer import RenderOptions, render_image


@dataclass
class Avatar:
    path: Path
    manifest: dict
    field: RadianceField

    @property
    def scale(self) -> float:
        return float(self.manifest["canonical"]["scale"])

    @property
    def photo_cam2world(self) -> np.ndarray:
        return np.array(self.manifest["camera"]["cam2world"], dtype=np.float64)

    @property
    def work_intrinsics(self) -> Intrinsics:
        return Intrinsics.from_dict(self.manifest["camera"]["work"]["intrinsics"])

    @property
    def photo_intrinsics(self) -> Intrinsics:
        return Intrinsics.from_dict(self.manifest["camera"]["photo"]["intrinsics"])

    def photo_distance_m(self) -> float:
        return float(np.linalg.norm(self.photo_cam2world[:3, 3]))

    def render(
        self, cam2world_gl: np.ndarray, intr: Intrinsics, opts: RenderOptions | None = None, deform=None
    ) -> dict:
        s = self.manifest["settings"]
        opts = opts or RenderOptions(n_coarse=s["n_coarse"], n_fine=s["n_fine"])
        return render_image(self.field, cam2world_gl, intr, opts, world_to_canon_scale=self.scale, deform=deform)

    def orbit(
        self,
        yaw_deg: float,
        pitch_deg: float,
        size: int,
        distance_m: float | None = None,
        fov_deg: float | None = None,
        focal_mm: float | None = None,
        sensor_mm: float = 36.0,
    ):
        """Camera orbiting the head centre. Without fov/focal the photo's framing is kept; a ``distance_m``
        alone rescales the focal length so the head keeps its size (the Portrait NeRF perspective edit)."""
        d0 = self.photo_distance_m()
        d = distance_m or d0
        wi = self.work_intrinsics
        if focal_mm:
            f = focal_mm / sensor_mm * size
        elif fov_deg:
            f = 0.5 * size / np.tan(np.radians(fov_deg) / 2.0)
        else:
            f = wi.fy * size / wi.height * d / d0
        intr = Intrinsics(f, f, size / 2.0, size / 2.0, size, size)
        return orbit_camera_gl(yaw_deg, pitch_deg, d), intr


MAX_PHOTO_SIDE = 1 << 16
MAX_EXTRA_VIEWS = 64


def _entry(manifest: dict, dotted: str):
    """``manifest["a"]["b"]...`` for ``"a.b..."``; a BundleError naming the first level that is absent or not an
    object."""
    value = manifest
    for i, part in enumerate(dotted.split(".")):
        if not isinstance(value, dict) or part not in value:
            where = ".".join(dotted.split(".")[:i])
            where = f"manifest {where}" if where else "the manifest"
            raise BundleError(f"{where} has no {part!r} entry", "rebuild the avatar")
        value = value[part]
    return value


def _number(manifest: dict, dotted: str, lo: float, hi: float, whole: bool = False, above: bool = False):
    v = _entry(manifest, dotted)
    kind = "a whole number" if whole else "a number"
    ok = not isinstance(v, bool) and isinstance(v, int if whole else int | float)
    ok = ok and (isinstance(v, int) or math.isfinite(v)) and (v > lo if above else v >= lo) and v <= hi
    if not ok:
        raise BundleError(
            f"manifest {dotted} is {short(v)}; expected {kind} {'above' if above else 'from'} {lo:g} up to {hi:g}",
            "rebuild the avatar",
        )
    return v


def _matrix(manifest: dict, dotted: str, rows: int, cols: int, bound: float) -> np.ndarray:
    v = _entry(manifest, dotted)
    ok = isinstance(v, list) and len(v) == rows
    ok = ok and all(isinstance(r, list) and len(r) == cols for r in v)
    ok = ok and all(not isinstance(x, bool) and isinstance(x, int | float) for r in v for x in r)
    try:
        m = np.array(v, dtype=np.float64) if ok else None
    except OverflowError:
        m = None
    if m is None or not np.isfinite(m).all() or np.abs(m).max() > bound:
        raise BundleError(
            f"manifest {dotted} is {short(v)}; expected {rows}x{cols} finite numbers", "rebuild the avatar"
        )
    return m


def _intrinsics(manifest: dict, dotted: str) -> None:
    for n in ("fx", "fy"):
        _number(manifest, f"{dotted}.{n}", 0.0, 1e6, above=True)
    for n in ("cx", "cy"):
        _number(manifest, f"{dotted}.{n}", -1e6, 1e6)
    for n in ("width", "height"):
        _number(manifest, f"{dotted}.{n}", 1, MAX_PHOTO_SIDE, whole=True)


def check_manifest(manifest: dict) -> None:
    """THE validation of what loading and rendering an avatar read from its manifest: sample counts, the
    canonical scale, the photo's cam2world (a rigid 4x4 camera 1 mm to 1 km from the head) and both cameras'
    intrinsics, the field's sizes -- each a finite number in a sane range or a matrix of the right shape, else
    a one-line :class:`BundleError` naming the entry. :func:`load_avatar` runs it once, so :class:`Avatar`'s
    properties can trust the manifest. (Structure is :func:`engine.io.bundle.read_manifest`'s; files are
    :func:`engine.io.bundle.bundle_file`'s.)"""
    _number(manifest, "settings.n_coarse", 1, 1024, whole=True)
    _number(manifest, "settings.n_fine", 1, 1024, whole=True)
    _number(manifest, "canonical.scale", 1e-3, 1e3, above=True)
    c2w = _matrix(manifest, "camera.cam2world", 4, 4, 1e3)
    rot, dist = c2w[:3, :3], float(np.linalg.norm(c2w[:3, 3]))
    rigid = np.abs(rot.T @ rot - np.eye(3)).max() < 1e-3 and np.linalg.det(rot) > 0
    if not rigid or np.abs(c2w[3] - [0.0, 0.0, 0.0, 1.0]).max() > 1e-6 or not 1e-3 <= dist <= 1e3:
        raise BundleError(
            "manifest camera.cam2world is not a rigid camera pose 1 mm to 1 km from the head", "rebuild the avatar"
        )
    _intrinsics(manifest, "camera.photo.intrinsics")
    _intrinsics(manifest, "camera.work.intrinsics")
    _number(manifest, "field.grid_res", 2, 1024, whole=True)
    _number(manifest, "field.plane_res", 1, 8192, whole=True)
    _number(manifest, "field.plane_channels", 1, 256, whole=True)


def _field_error(label: str, what: str) -> BundleError:
    return BundleError(f"{label} {what}", "rebuild the avatar")


def _field_state(file: Path, manifest: dict, label: str) -> dict:
    """The tensors of a field file, checked before anything is built from them: the file's format and version
    metadata, then (from its header alone) the shapes the field is constructed from against the manifest's sizes,
    then every tensor finite floating point."""
    from safetensors import SafetensorError, safe_open

    fm = manifest["field"]
    g, p, c = fm["grid_res"], fm["plane_res"], fm["plane_channels"]
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FIELD_FORMAT:
                raise _field_error(label, f"is not a Likeness field (format {short(meta.get('format'), 40)})")
            if meta.get("version") != FIELD_VERSION:
                raise BundleError(
                    f"{label} is field format version {short(meta.get('version'), 20)}"
                    f"; this engine reads version {FIELD_VERSION}",
                    "use the Likeness that built it, or rebuild the avatar",
                )
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - not a dict
            h, w = (shapes.get("photo") or (0, 0, 0, 0))[-2:]
            e = (shapes.get("extra_photo") or (0,))[0]
            want = {
                "box_center": (3,),
                "box_half": (),
                "sdf": (1, 1, g, g, g),
                "planes": (4, c, p, p),
                "photo": (1, 3, h, w),
                "photo_intr": (4,),
                "canon_from_cv": (4, 4),
            }
            if "extra_photo" in shapes:
                want["extra_photo"] = (e, 3, h, w)
            for name, shape in want.items():
                if shapes.get(name) != shape:
                    raise _field_error(label, f"tensor {name!r} has shape {shapes.get(name)}, expected {shape}")
            if not (1 <= h <= MAX_PHOTO_SIDE and 1 <= w <= MAX_PHOTO_SIDE and e <= MAX_EXTRA_VIEWS):
                raise _field_error(label, f"holds a {w}x{h} photo and {e} extra views")
            state = {k: f.get_tensor(k) for k in shapes}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise _field_error(label, "is not a readable safetensors file") from exc
    for name, t in state.items():
        if not t.dtype.is_floating_point or not bool(torch.isfinite(t).all()):
            raise _field_error(label, f"tensor {name!r} is not finite floating point")
    if not 0.0 < float(state["box_half"]) < 1e3 or not bool((state["photo_intr"][:2] > 0).all()):
        raise _field_error(label, "has a degenerate box or photo camera")
    return state


def load_field(path: Path, manifest: dict, device: str = "cpu") -> RadianceField:
    """The radiance field of a bundle whose manifest passed :func:`check_manifest`; its file is
    ``files.field`` resolved by :func:`engine.io.bundle.bundle_file`, and any mismatch between the file and this
    engine's field (missing, unexpected or misshapen tensors) is a one-line BundleError."""
    file = bundle_file(path, manifest, "field")
    label = f"{bundle_label(path)}: files.field ({short(file.name, 40)})"
    state = _field_state(file, manifest, label)
    fm = manifest["field"]
    photo = state["photo"][0].permute(1, 2, 0).numpy()
    intr = state["photo_intr"].numpy()
    field = RadianceField(
        box_center=state["box_center"].numpy(),
        box_half=float(state["box_half"]),
        grid_res=fm["grid_res"],
        plane_res=fm["plane_res"],
        plane_channels=fm["plane_channels"],
        photo=photo,
        photo_fx=float(intr[0]),
        photo_fy=float(intr[1]),
        photo_cx=float(intr[2]),
        photo_cy=float(intr[3]),
        canon_from_cv=state["canon_from_cv"].numpy(),
        extra_views=int(state["extra_photo"].shape[0]) if "extra_photo" in state else 0,
    )
    expected = {k: tuple(v.shape) for k, v in field.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = sorted(k for k in expected if k in state and tuple(state[k].shape) != expected[k])
    if missing or unexpected or misshapen:
        parts = [
            f"{what} {', '.join(names[:3])}"
            for what, names in (("lacks", missing), ("has unknown", unexpected), ("has misshapen", misshapen))
            if names
        ]
        raise _field_error(label, f"does not match this engine's field: {'; '.join(parts)}")
    field.load_state_dict(state)
    field.eval()
    return field.to(device)


def load_avatar(path: str | Path, device: str = "cpu") -> Avatar:
    """A bundle loaded for rendering. Every way it can be unusable -- no or a malformed manifest, values out of
    range, a file leading out of the folder, a field file that is not this engine's -- is one :class:`BundleError`
    (exit code 2 on the CLI, ``bad_bundle`` on the server) naming what is wrong; nothing outside the bundle is
    read."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        check_manifest(manifest)
    except BundleError as exc:
        raise BundleError(f"{bundle_label(path)}: {exc.message}", exc.hint) from None
    return Avatar(path, manifest, load_field(path, manifest, device))


def load_landmarks_world(avatar: Avatar) -> np.ndarray:
    """The bundle's (478, 3) face landmarks, world metres (:func:`engine.io.bundle.read_landmarks_world`)."""
    return read_landmarks_world(avatar.path, avatar.manifest)


def torch_device(name: str) -> str:
    from engine.errors import DeviceUnavailable

    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("--device cuda was asked for, but no CUDA GPU is available", "use --device cpu or auto")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
