"""The one chunking renderer: rays in, colour / alpha / z-depth out. Fast path and dense twin."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.conventions import Intrinsics
from engine.render.composite import alpha_weights, composite
from engine.render.rays import box_intersect, camera_rays_world
from engine.render.sampler import proposal_samples, uniform_samples


@dataclass
class RenderOptions:
    """How to sample rays. ``dense`` switches to the uniform twin with ``n_dense`` samples per ray."""

    n_coarse: int = 48
    n_fine: int = 12
    dense: bool = False
    n_dense: int = 512
    chunk: int = 32768
    learned_only: bool = False


def _deltas(t: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    d = t[:, 1:] - t[:, :-1]
    last = (far[:, None] - t[:, -1:]).clamp(min=1e-4)
    return torch.cat([d, torch.minimum(last, d[:, -1:].clamp(min=1e-4))], -1)


class WarpedField:
    """A field seen through a backward warp: density and colour at observed points x are the field's at
    ``deform(x)``."""

    def __init__(self, field, deform) -> None:
        self.field, self.deform = field, deform
        self.box_center, self.box_half = field.box_center, field.box_half

    @property
    def beta(self) -> float:
        return self.field.beta

    def density(self, x: torch.Tensor, beta: float | None = None) -> torch.Tensor:
        return self.field.density(self.deform(x), beta=beta)

    def colour(
        self, x: torch.Tensor, learned_only: bool = False, view_dirs: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.field.colour(self.deform(x), learned_only=learned_only, view_dirs=view_dirs)


def render_rays(field, origins_c, dirs_c, opts: RenderOptions, jitter: bool = False, deform=None):
    """Render canonical rays (R, 3): returns rgb (R, 3) premultiplied, alpha (R,), t (R,) canonical distance of
    the expected surface (divided by alpha). ``deform`` maps observed canonical points to the neutral field; one
    with a ``bind(field)`` method supplies its own view of the field (e.g. the expression rig's mouth cavity)."""
    if deform is not None:
        # The proposal pass must see the deformed surface too, so the whole field is viewed through the warp.
        field = deform.bind(field) if hasattr(deform, "bind") else WarpedField(field, deform)
    near, far = box_intersect(origins_c, dirs_c, field.box_center, field.box_half)
    hit = far > near + 1e-6
    r = origins_c.shape[0]
    rgb = origins_c.new_zeros(r, 3)
    alpha = origins_c.new_zeros(r)
    tdep = origins_c.new_zeros(r)
    if not bool(hit.any()):
        return rgb, alpha, tdep
    o, d, n0, f0 = origins_c[hit], dirs_c[hit], near[hit], far[hit]
    if opts.dense:
        t = uniform_samples(n0, f0, opts.n_dense, jitter)
    else:
        t, coarse_opacity = proposal_samples(field, o, d, n0, f0, opts.n_coarse, opts.n_fine, jitter)
        keep = coarse_opacity > 1e-4
        o, d, n0, f0, t = o[keep], d[keep], n0[keep], f0[keep], t[keep]
        hit_idx = torch.nonzero(hit)[:, 0][keep]
    if opts.dense:
        hit_idx = torch.nonzero(hit)[:, 0]
    if o.shape[0] == 0:
        return rgb, alpha, tdep
    pts = (o[:, None] + d[:, None] * t[..., None]).reshape(-1, 3)
    sig = field.density(pts).view(t.shape)
    w = alpha_weights(sig, _deltas(t, f0))
    a = w.sum(-1)
    # Colour only where it can matter (weights are tiny elsewhere): cheaper and identical to within 1e-4.
    sel = w.reshape(-1) > 1e-4
    cols = pts.new_zeros(pts.shape[0], 3)
    if bool(sel.any()):
        # each selected sample's ray direction (only the photo term's mirrored view reads it)
        dirs = None if opts.learned_only else d[torch.nonzero(sel)[:, 0] // t.shape[1]]
        cols[sel] = field.colour(pts[sel], learned_only=opts.learned_only, view_dirs=dirs)
    c = composite(w, cols.view(*t.shape, 3))
    rgb = rgb.index_put((hit_idx,), c)
    alpha = alpha.index_put((hit_idx,), a)
    tdep = tdep.index_put((hit_idx,), (w * t).sum(-1) / a.clamp(min=1e-6))
    return rgb, alpha, tdep


@torch.no_grad()
def render_image(
    field,
    cam2world_gl: np.ndarray,
    intr: Intrinsics,
    opts: RenderOptions | None = None,
    world_to_canon_scale: float = 1.0,
    deform=None,
) -> dict[str, np.ndarray]:
    """Render a world camera: ``rgb`` (H, W, 3) premultiplied float32, ``alpha`` (H, W), ``depth_m`` (H, W)
    z-depth in world metres (0 where alpha < 0.5)."""
    opts = opts or RenderOptions()
    origins, dirs, z_per_t = camera_rays_world(cam2world_gl, intr)
    dev = field.box_center.device
    s = float(world_to_canon_scale)
    o_all = torch.as_tensor(origins * s, dtype=torch.float32, device=dev)
    d_all = torch.as_tensor(dirs, dtype=torch.float32, device=dev)
    outs = []
    for i in range(0, o_all.shape[0], opts.chunk):
        rgb, a, t = render_rays(field, o_all[i : i + opts.chunk], d_all[i : i + opts.chunk], opts, deform=deform)
        outs.append(torch.cat([rgb, a[:, None], t[:, None]], -1).cpu())
    out = torch.cat(outs).numpy().reshape(intr.height, intr.width, 5)
    alpha = out[..., 3]
    depth = out[..., 4] / s * z_per_t.reshape(intr.height, intr.width)
    depth = np.where(alpha >= 0.5, depth, 0.0).astype(np.float32)
    return {"rgb": out[..., :3].astype(np.float32), "alpha": alpha.astype(np.float32), "depth_m": depth}
