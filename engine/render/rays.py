"""Camera rays in world and canonical frames (see engine.conventions)."""

from __future__ import annotations

import numpy as np
import torch

from engine.conventions import Intrinsics, cam2world_gl_to_cv


def camera_rays_world(cam2world_gl: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel ray origins (H*W, 3), unit directions (H*W, 3) and ``z_per_t`` (H*W,), the z-depth gained
    per unit of ray length (to turn ray distance into z-depth), row-major from the top-left pixel."""
    c2w = cam2world_gl_to_cv(cam2world_gl)
    j, i = np.mgrid[0 : intr.height, 0 : intr.width].astype(np.float64) + 0.5
    d_cam = np.stack([(i - intr.cx) / intr.fx, (j - intr.cy) / intr.fy, np.ones_like(i)], -1).reshape(-1, 3)
    norm = np.linalg.norm(d_cam, axis=1)
    d_cam /= norm[:, None]
    dirs = d_cam @ c2w[:3, :3].T
    origins = np.broadcast_to(c2w[:3, 3], dirs.shape).copy()
    return origins, dirs, d_cam[:, 2]


def box_intersect(
    origins: torch.Tensor, dirs: torch.Tensor, center: torch.Tensor, half: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test against the cube ``center +- half``: entry and exit distances (N,), entry >= 0."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (center - half - origins) * inv
    t1 = (center + half - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far
