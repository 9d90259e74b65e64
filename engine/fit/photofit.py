"""Fitting an initialised field to the photo(s): the loop both registered methods share after their own init.

Each step renders a batch of rays (80 % near the matte, ``edge_ray_frac`` of the step from its edge band, the
rest anywhere in the crop) with the learned colour, and takes one Adam step on photometric, alpha-vs-matte,
proxy-depth agreement, colour symmetry, colour prior and total-variation losses."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.config import BuildConfig
from engine.fit.base import Cancel, FitReport, FitState, Progress, tick
from engine.fit.data import hidden_voxels, ray_table
from engine.fit.losses import alpha_target, tv2, tv3
from engine.render.renderer import RenderOptions, render_rays


@dataclass(frozen=True)
class PhotoFitConfig:
    """The photo fit's numbers. Learning rates are Adam's; weights multiply each loss term in the sum."""

    lr_sdf_voxels: float = 0.02
    """SDF grid learning rate, in voxels per step."""
    lr_planes: float = 0.01
    """Triplane features' learning rate."""
    lr_mlp: float = 0.003
    """Colour decoder's learning rate."""
    near_matte_frac: float = 0.8
    """Share of each step's rays drawn near the matte (the matte dilated 4 px); edge rays count in it."""
    matte_steepen: float = 3.0
    """The alpha target is the matte steepened about 0.5 by this factor (engine.fit.losses.alpha_target)."""
    w_alpha: float = 0.1
    """Weight of the alpha cross-entropy against the steepened matte."""
    w_depth: float = 0.01
    """Weight of the agreement with the proxy's front depth (reference view, in voxels, clamped)."""
    depth_clamp_voxels: float = 10.0
    """Per-ray cap of the proxy-depth error, voxels."""
    w_symmetry: float = 0.02
    """Weight of the learned colour's mirror symmetry (x -> -x in canonical space) on surface points."""
    w_prior: float = 0.02
    """Weight of keeping the learned colour near the initialisation's colour prior."""
    w_tv_planes: float = 1e-2
    """Total variation of the triplanes."""
    w_tv_sdf: float = 1e-2
    """Total variation of the SDF grid, in voxel units."""
    symmetry_points: int = 20000
    """Surface points drawn once for the symmetry term."""
    term_batch: int = 4096
    """Points per step for the symmetry and prior terms."""
    history_every: int = 25
    """Steps between two loss records in the manifest's fit history."""
    keep_hidden: bool = True
    """Voxels no view's rays reach keep the initial SDF (engine.fit.data.hidden_voxels); off, the regularisers
    erode them."""
    hidden_margin_voxels: float = 8.0
    """How far behind a view's visible surface a voxel still counts as seen (the fit moves the surface by a few
    voxels), voxels."""


def surface_points(field, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` canonical points (n, 3) drawn from the voxels within 1.5 voxels of the SDF's zero level."""
    with torch.no_grad():
        g = field.sdf.shape[-1]
        sdf = field.sdf[0, 0]
        idx = torch.nonzero(sdf.abs() < 1.5 * field.voxel)
        pick = idx[torch.randint(0, len(idx), (n,), generator=gen).to(idx.device)].float()
        unit = -1.0 + 2.0 * pick[:, [2, 1, 0]] / (g - 1)
        return unit * field.box_half + field.box_center


def fit_to_photo(
    state: FitState, cfg: BuildConfig, o: PhotoFitConfig, progress: Progress | None, cancel: Cancel | None
) -> FitReport:
    """Fit ``state.field`` in place for ``cfg.iterations`` steps (see the module docstring)."""
    field, data = state.field, state.data
    t0 = time.perf_counter()
    dev = field.sdf.device
    oc_t, dc_t, photo, matte, proxy_t, near_matte, edge = (torch.from_numpy(a).to(dev) for a in ray_table(data))
    has_proxy = torch.isfinite(proxy_t)
    fg_idx = torch.nonzero(near_matte)[:, 0]
    edge_idx = torch.nonzero(edge)[:, 0]
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opts = RenderOptions(n_coarse=cfg.n_coarse, n_fine=cfg.n_fine, learned_only=True)
    opt = torch.optim.Adam(
        [
            {"params": [field.sdf], "lr": o.lr_sdf_voxels * field.voxel},
            {"params": [field.planes], "lr": o.lr_planes},
            {"params": field.mlp.parameters(), "lr": o.lr_mlp},
        ]
    )
    n_edge = int(cfg.rays_per_step * cfg.edge_ray_frac) if len(edge_idx) else 0
    n_fg = int(cfg.rays_per_step * o.near_matte_frac) - n_edge
    sym_pts = surface_points(field, o.symmetry_points, gen)
    keep = None
    if o.keep_hidden:
        hidden = hidden_voxels(field, data, cfg, o.hidden_margin_voxels)
        keep = torch.from_numpy(~hidden).to(dev, field.sdf.dtype)[None, None]
    history = []
    for i in range(cfg.iterations):
        idx = torch.cat(
            [
                fg_idx[torch.randint(0, len(fg_idx), (n_fg,), generator=gen).to(dev)],
                edge_idx[torch.randint(0, max(1, len(edge_idx)), (n_edge,), generator=gen).to(dev)],
                torch.randint(0, len(photo), (cfg.rays_per_step - n_fg,), generator=gen).to(dev),
            ]
        )
        rgb, alpha, tdep = render_rays(field, oc_t[idx], dc_t[idx], opts, jitter=True)
        m = matte[idx]
        fg = m > 0.5
        # Colour against the photo where the person is (alpha is fitted to the matte separately, so a soft matte
        # edge does not darken the colours).
        l_rgb = F.mse_loss(rgb[fg], photo[idx][fg] * alpha[fg, None].detach()) if fg.any() else rgb.sum() * 0
        l_alpha = F.binary_cross_entropy(alpha.clamp(1e-4, 1 - 1e-4), alpha_target(m, o.matte_steepen))
        fd = fg & has_proxy[idx]  # the proxy's depth is known in the reference view only
        l_depth = (
            ((tdep[fd] - proxy_t[idx][fd]).abs() / field.voxel).clamp(max=o.depth_clamp_voxels).mean()
            if fd.any()
            else 0.0
        )
        sp = sym_pts[torch.randint(0, len(sym_pts), (o.term_batch,), generator=gen).to(dev)]
        mir = sp * torch.tensor([-1.0, 1.0, 1.0], device=dev)
        l_sym = (field.learned_colour(sp) - field.learned_colour(mir)).abs().mean()
        l_prior = 0.0
        if state.colour_prior is not None:
            prior_pts, prior_rgb = state.colour_prior
            pi = torch.randint(0, len(prior_pts), (o.term_batch,), generator=gen).to(dev)
            diff = (field.learned_colour(prior_pts[pi]) - prior_rgb[pi]).abs()
            w = state.colour_prior_weight
            l_prior = diff.mean() if w is None else (diff.mean(-1) * w[pi]).mean()
        l_tv = o.w_tv_planes * tv2(field.planes) + o.w_tv_sdf * tv3(field.sdf / field.voxel)
        loss = l_rgb + o.w_alpha * l_alpha + o.w_depth * l_depth + o.w_symmetry * l_sym + o.w_prior * l_prior + l_tv
        opt.zero_grad()
        loss.backward()
        if keep is not None:
            field.sdf.grad.mul_(keep)
        opt.step()
        if i % o.history_every == 0 or i == cfg.iterations - 1:
            history.append({"step": i, "loss": float(loss.detach()), "rgb_mse": float(l_rgb.detach())})
        tick(progress, cancel, "fit", (i + 1) / max(1, cfg.iterations))
    field.refresh_normals()
    info = {"fit_s": time.perf_counter() - t0, "history": history}
    if keep is not None:
        info["hidden_voxel_frac"] = round(1.0 - float(keep.mean()), 4)
    return FitReport(info)
