"""The fit's loss terms that are more than one line: the alpha target and total variation."""

from __future__ import annotations

import torch


def alpha_target(matte: torch.Tensor, steepen: float) -> torch.Tensor:
    """The alpha the fit aims for at a pixel whose selfie matte is ``matte``: the matte steepened about 0.5.

    The matte is soft over several pixels (0.7-0.9 a few pixels inside hair, a faint tail outside). Fitted as is,
    cross-entropy balances the alpha's total against the matte's (a logistic fit's optimum), and the deficit
    inside pulls the outline 1-3 px inside the matte's 0.5 contour all round (singnet_woman_portrait: 2.9 px,
    input-view PSNR 29.7 dB). Steepened by 3 the outline is centred on the contour (0.8 px) with a soft edge
    (32.8 dB); steeper (6) fits no better. scripts/outline.py measures it."""
    return ((matte - 0.5) * steepen + 0.5).clamp(0.0, 1.0)


def tv2(p: torch.Tensor) -> torch.Tensor:
    """Squared total variation over the last two axes (planes)."""
    return (p[..., 1:, :] - p[..., :-1, :]).pow(2).mean() + (p[..., :, 1:] - p[..., :, :-1]).pow(2).mean()


def tv3(v: torch.Tensor) -> torch.Tensor:
    """Squared total variation over the three grid axes of a (1, C, D, H, W) volume."""
    return sum((v.diff(dim=d)).pow(2).mean() for d in (2, 3, 4))
