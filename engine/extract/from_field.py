"""The extraction steps that read a radiance field: its SDF on a lattice, its mesh, its colour as a callable.
The build, the benchmarks and the scripts call these; the numerical steps themselves stay functions of callables
(engine.extract.mesh, engine.extract.bake)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from engine.config import BuildConfig
from engine.extract.mesh import clean_mesh, marching_cubes, sample_grid


def sdf_lattice(field, res: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The field's signed distance (canonical units) sampled on ``res``^3 points over its box, and the box's
    (lo, hi) corners (3,)."""
    c = field.box_center.detach().cpu().numpy().astype(np.float64)
    h = float(field.box_half)
    lo, hi = c - h, c + h
    return sample_grid(lambda p: field.sdf_at(p.to(field.box_center.device)), lo, hi, res), lo, hi


def extract_mesh(field, cfg: BuildConfig, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The field's surface as a cleaned mesh in the world frame (metres): vertices (V, 3), faces (F, 3)."""
    vals, lo, hi = sdf_lattice(field, cfg.mc_res)
    verts, faces = marching_cubes(vals, field.surface_level, lo, hi)
    return clean_mesh(verts / scale, faces, cfg.max_faces)


def world_fn(field, scale: float, query: Callable, chunk: int = 262144) -> Callable[[np.ndarray], np.ndarray]:
    """world points (N, 3) in metres -> ``query(field, canonical points)`` as float64 numpy (N, ...), evaluated
    in chunks without gradients on the field's device (canonical = world x ``scale``, the same axes)."""
    dev = field.box_center.device

    def fn(pts_world: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(pts_world), chunk):
                p = torch.as_tensor(pts_world[i : i + chunk] * scale, dtype=torch.float32, device=dev)
                out.append(query(field, p).cpu().numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0,))

    return fn


def colour_fn(field, scale: float, chunk: int = 262144) -> Callable[[np.ndarray], np.ndarray]:
    """world points (N, 3) in metres -> the field's colour (N, 3) in [0, 1], evaluated in chunks."""
    fn = world_fn(field, scale, lambda f, p: f.colour(p), chunk)
    return lambda pts: fn(pts).reshape(-1, 3).astype(np.float32)
