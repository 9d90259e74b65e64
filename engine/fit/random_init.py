"""``random-init``: the field starts random and only the photo fit shapes it -- Portrait NeRF's Table 2 baseline.

The SDF grid starts as uniform noise of +-0.5 voxel (density everywhere, gradients everywhere), the triplanes as
N(0, 0.01), the decoder at PyTorch's default, and the fit's colour prior points at the random field's own
colours. The fit itself -- including its proxy-depth agreement term -- is the proxy-init method's, so comparing
the two isolates the initialisation, not the proxy's role as a loss."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from engine.config import BuildConfig
from engine.field.model import RadianceField
from engine.fit.base import FitReport, FitState
from engine.fit.data import FitData
from engine.fit.photofit import PhotoFitConfig, fit_to_photo


@dataclass(frozen=True)
class RandomInitConfig(PhotoFitConfig):
    """The photo fit's numbers (inherited) and the random start's."""

    sdf_noise_voxels: float = 1.0
    """Width of the SDF grid's uniform noise, voxels (centred on 0)."""
    plane_noise: float = 0.01
    """Standard deviation of the triplanes' random start."""
    prior_points: int = 20000
    """Points, uniform in the field's box, whose random colours the fit's prior term keeps."""


class RandomInitFit:
    """A random field, then the photo fit (see the module docstring)."""

    name = "random-init"
    Config = RandomInitConfig

    def __init__(self, cfg: BuildConfig, options: RandomInitConfig | None = None) -> None:
        self.cfg = cfg
        self.options = options or RandomInitConfig()

    def check(self, field: RadianceField, data: FitData) -> None:
        """Any analysed photo will do."""

    def init(self, field: RadianceField, data: FitData, progress=None, cancel=None) -> FitState:
        o = self.options
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(self.cfg.seed)  # CPU generator, copied to the field's device
        with torch.no_grad():
            field.sdf.copy_((torch.rand(field.sdf.shape, generator=gen) - 0.5) * (o.sdf_noise_voxels * field.voxel))
            field.planes.copy_(torch.randn(field.planes.shape, generator=gen) * o.plane_noise)
        field.refresh_normals()
        u = (torch.rand(o.prior_points, 3, generator=gen) * 2.0 - 1.0).to(field.box_center.device)
        pts = (u * field.box_half + field.box_center).float()
        with torch.no_grad():
            prior = (pts, field.learned_colour(pts).detach())
        info = {"init_s": time.perf_counter() - t0, "init_colour_mse": None}
        return FitState(field, data, colour_prior=prior, info=info)

    def fit(self, state: FitState, progress=None, cancel=None) -> FitReport:
        return fit_to_photo(state, self.cfg, self.options, progress, cancel)
