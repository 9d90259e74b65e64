"""Pure volume-rendering compositing (no chunking, no device choice)."""

from __future__ import annotations

import torch


def alpha_weights(sigmas: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Weights (R, S) from densities and segment lengths (R, S): w_i = T_i * (1 - exp(-sigma_i * delta_i))."""
    alpha = 1.0 - torch.exp(-sigmas * deltas)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1] + 1e-10], -1), -1)
    return alpha * trans


def composite(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Sum over samples of weights (R, S) times values (R, S, C) -> (R, C)."""
    return (weights[..., None] * values).sum(-2)
