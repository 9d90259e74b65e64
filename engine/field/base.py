"""What the renderer and the extraction need of a field: the protocol a learned or template-driven field
implements to stand in for engine.field.model.RadianceField. Canonical units; tensors on the field's device."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Field(Protocol):
    box_center: torch.Tensor
    """(3,) centre of the field's cube, canonical units."""
    box_half: float
    """Half the cube's side, canonical units."""

    @property
    def beta(self) -> float:
        """The SDF-to-density sharpness (canonical units): sigma = sigmoid(-d / beta) / beta."""

    @property
    def surface_level(self) -> float:
        """The SDF value where the extracted mesh's silhouette matches the rendered alpha."""

    def sdf_at(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) signed distance at canonical points (N, 3)."""

    def density(self, x: torch.Tensor, beta: float | None = None) -> torch.Tensor:
        """(N,) density at canonical points (N, 3); ``beta`` widens it (the proposal pass)."""

    def colour(
        self, x: torch.Tensor, view_dirs: torch.Tensor | None = None, learned_only: bool = False
    ) -> torch.Tensor:
        """(N, 3) colour in [0, 1] at canonical points (N, 3) seen along ``view_dirs`` (N, 3)."""
