"""Where along each ray to evaluate the field: a coarse proposal from the SDF with a wide density, then
importance samples near the surface (fast path), or a dense uniform sampler (the slow, obvious twin)."""

from __future__ import annotations

import torch

from engine.render.composite import alpha_weights


def uniform_samples(near: torch.Tensor, far: torch.Tensor, n: int, jitter: bool = False) -> torch.Tensor:
    """(R, n) distances: bin midpoints between near and far, optionally jittered inside each bin."""
    u = (torch.arange(n, device=near.device, dtype=near.dtype) + 0.5) / n
    u = u.expand(near.shape[0], n)
    if jitter:
        u = u + (torch.rand_like(u) - 0.5) / n
    return near[:, None] + (far - near)[:, None] * u


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n: int, jitter: bool = False) -> torch.Tensor:
    """Inverse-CDF samples (R, n) from piecewise-constant weights (R, B) over bin edges (R, B + 1)."""
    w = weights + 1e-5
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
    if jitter:
        u = torch.rand(cdf.shape[0], n, device=cdf.device, dtype=cdf.dtype)
    else:
        u = ((torch.arange(n, device=cdf.device, dtype=cdf.dtype) + 0.5) / n).expand(cdf.shape[0], n)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)
    c0, c1 = torch.gather(cdf, 1, idx - 1), torch.gather(cdf, 1, idx)
    b0, b1 = torch.gather(bins, 1, idx - 1), torch.gather(bins, 1, idx)
    t = (u - c0) / (c1 - c0).clamp(min=1e-8)
    return b0 + t * (b1 - b0)


def proposal_samples(field, origins, dirs, near, far, n_coarse: int, n_fine: int, jitter: bool = False):
    """Fine sample distances (R, n_fine), sorted, concentrated where a wide-density render of the SDF puts
    the surface. Runs without gradients."""
    with torch.no_grad():
        t = uniform_samples(near, far, n_coarse, jitter)
        step = (far - near).clamp(min=1e-6)[:, None] / n_coarse
        pts = origins[:, None] + dirs[:, None] * t[..., None]
        beta = float(step.max().clamp(min=field.beta))
        sig = field.density(pts.reshape(-1, 3), beta=beta).view(t.shape)
        w = alpha_weights(sig, step.expand_as(t))
        edges = torch.cat([t - 0.5 * step, t[:, -1:] + 0.5 * step], -1)
        fine = sample_pdf(edges, w, n_fine, jitter)
    return torch.sort(fine, -1).values, w.sum(-1)
