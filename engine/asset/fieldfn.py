"""The bundle's field as callables of world metres (the asset works in world metres; the field in canonical
units, world x ``scale``, the same axes): signed distance and surface normal."""

from __future__ import annotations

import numpy as np

from engine.asset.delight import unit
from engine.extract.from_field import world_fn


def sdf_world_fn(field, scale: float, chunk: int = 262144):
    """world points (N, 3) metres -> the field's signed distance to its extracted surface (N,) in world metres."""
    level = float(field.surface_level)
    fn = world_fn(field, scale, lambda f, p: f.sdf_at(p).reshape(-1), chunk)
    return lambda pts: (fn(pts).reshape(-1) - level) / scale


def normal_world_fn(field, scale: float, chunk: int = 262144, step_m: float = 0.001):
    """world points (N, 3) -> the field's unit surface normal (N, 3) (world axes are canonical axes): the field's
    own ``normal_at`` where it has one (a trilinear normal buffer), else central differences of its SDF."""
    if not hasattr(field, "normal_at"):
        sdf = sdf_world_fn(field, scale, chunk)

        def fd(pts: np.ndarray) -> np.ndarray:
            g = [sdf(pts + step_m * e) - sdf(pts - step_m * e) for e in np.eye(3)]
            return unit(np.stack(g, 1))

        return fd
    fn = world_fn(field, scale, lambda f, p: f.normal_at(p), chunk)
    return lambda pts: unit(fn(pts).reshape(-1, 3))
