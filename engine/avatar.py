"""A built avatar loaded back from its bundle: the field, its cameras, and rendering from any world camera."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.conventions import Intrinsics, orbit_camera_gl
from engine.field.model import RadianceField
from engine.io.bundle import read_manifest
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


def load_field(path: Path, manifest: dict, device: str = "cpu") -> RadianceField:
    from safetensors.torch import load_file

    fm = manifest["field"]
    state = load_file(str(path / manifest["files"]["field"]), device="cpu")
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
    field.load_state_dict(state)
    field.eval()
    return field.to(device)


def load_avatar(path: str | Path, device: str = "cpu") -> Avatar:
    path = Path(path)
    manifest = read_manifest(path)
    return Avatar(path, manifest, load_field(path, manifest, device))


def load_landmarks_world(avatar: Avatar) -> np.ndarray:
    data = json.loads((avatar.path / avatar.manifest["files"]["landmarks"]).read_text())
    return np.array(data["landmarks_world"], dtype=np.float64)


def torch_device(name: str) -> str:
    from engine.errors import DeviceUnavailable

    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("--device cuda was asked for, but no CUDA GPU is available", "use --device cpu or auto")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
