"""An expression applied to one avatar: the deform callable the renderer takes, and the field seen through it.

:class:`ExpressionDeform` is what ``Avatar.render(..., deform=...)`` and ``render_image(..., deform=...)`` take.
It is a callable (observed canonical points (N, 3) -> neutral canonical points, as the renderer's hook asks) and
it also ``bind``s a field into an :class:`ExpressedField`, which adds the mouth cavity and which the renderer uses
for its proposal pass too, so samples land where the *expressed* surface is."""

from __future__ import annotations

import numpy as np
import torch

from engine.rig.arkit import N_SHAPES
from engine.rig.baked import BakedWarp
from engine.rig.deform import CAVITY_RGB, WarpSpec, cavity_depth_plane
from engine.rig.rig import FaceRig

BAKE_VOXEL_M = 0.004
"""Side of a coarse warp-grid voxel in world metres (the standard field's SDF voxel is about 4 mm); eyes and mouth
get finer, seam-aware patches (:mod:`engine.rig.deform`)."""


def warp_spec(rig: FaceRig, weights: np.ndarray, scale: float, gaze: dict | None = None) -> WarpSpec:
    """The warp from the proxy at ``weights`` to the proxy at the photo, in canonical units (world x ``scale``);
    ``gaze`` (the asset's rig only: {"eye_L" | "eye_R": (3, 3)}) turns the eyeballs as the asset's eye bones do
    (:meth:`engine.rig.asset_rig.AssetFaceRig.gaze_offsets`)."""
    lin, off = rig.jaw_source_from_observed(weights)
    observed = rig.proxy_at(weights)
    if gaze:
        observed = observed + rig.gaze_offsets(weights, gaze)
    return WarpSpec(
        observed=observed * scale,
        source=rig.photo * scale,
        triangles=rig.triangles,
        jaw_weight=rig.jaw_weight,
        jaw_linear=lin,
        jaw_offset=off * scale,
    )


class ExpressionDeform:
    """Backward warp for ARKit ``weights`` (52,) on ``rig`` (and the eye bones' ``gaze``, :func:`warp_spec`), baked
    on a grid of ``voxel_m`` world metres."""

    def __init__(
        self,
        rig: FaceRig,
        weights: np.ndarray,
        scale: float,
        device="cpu",
        voxel_m: float = BAKE_VOXEL_M,
        gaze: dict | None = None,
    ) -> None:
        w = np.asarray(weights, dtype=np.float64).reshape(N_SHAPES)
        self.weights = w
        self.rig = rig
        self.scale = float(scale)
        self.spec = warp_spec(rig, w, self.scale, gaze)
        self.identity = self.spec.is_identity()
        self.baked = None if self.identity else BakedWarp(self.spec, voxel_m * self.scale, device, self.scale)
        self.cavity_z = cavity_depth_plane(self.spec)

    def sample(self, x: torch.Tensor, coarse_only: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Neutral points (N, 3) and mouth-cavity weight (N,) (None when there is none)."""
        if self.baked is None:
            return x, None
        if self.baked.device != x.device:
            self.baked.to(x.device)
        return self.baked.sample(x, coarse_only)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.sample(x)[0]

    def bind(self, field) -> ExpressedField:
        return ExpressedField(field, self)


class ExpressedField:
    """A radiance field seen through an expression: density and colour at observed canonical points.

    In the mouth cavity (weight c) the field is replaced by a dark surface ``CAVITY_DEPTH`` behind the lips:
    ``sigma = (1 - c) sigma_field(warp(x)) + c sigma_cavity(x)``, and the same blend for colour."""

    def __init__(self, field, deform: ExpressionDeform) -> None:
        self.field = field
        self.deform = deform
        self.box_center = field.box_center
        self.box_half = field.box_half

    @property
    def beta(self) -> float:
        return self.field.beta

    @property
    def voxel(self) -> float:
        return self.field.voxel

    def _cavity_density(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        d = x[:, 2] - self.deform.cavity_z
        return torch.where(d < 4.0 * beta, torch.sigmoid(-d / beta) / beta, torch.zeros_like(d))

    def sdf_at(self, x: torch.Tensor) -> torch.Tensor:
        return self.field.sdf_at(self.deform.sample(x)[0])

    def density(self, x: torch.Tensor, beta: float | None = None) -> torch.Tensor:
        # a density much wider than the field's own is the renderer's proposal pass: the coarse warp is enough
        q, c = self.deform.sample(x, coarse_only=beta is not None and beta > 4.0 * self.field.beta)
        sig = self.field.density(q, beta=beta)
        if c is None:
            return sig
        b = self.field.beta if beta is None else beta
        return (1.0 - c) * sig + c * self._cavity_density(x, b)

    def colour(
        self, x: torch.Tensor, learned_only: bool = False, view_dirs: torch.Tensor | None = None
    ) -> torch.Tensor:
        q, c = self.deform.sample(x)
        col = self.field.colour(q, learned_only=learned_only, view_dirs=view_dirs)
        if c is None:
            return col
        rgb = torch.as_tensor(CAVITY_RGB, dtype=col.dtype, device=col.device)
        return (1.0 - c[:, None]) * col + c[:, None] * rgb
