"""The fast path of the warp: :func:`engine.rig.deform.warp_with_binding` baked on regular grids and read back
with trilinear interpolation -- a coarse grid over everything that moves, seam-aware fine patches over the eyes
and the mouth, and the mouth-cavity weight. Its slow, obvious twin is :func:`engine.rig.deform.warp_points`
(every point exactly); ``tests/test_rig.py`` compares them."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from engine.rig import topology as T
from engine.rig.deform import INSIDE_FAR, WarpSpec, _sorted_xy, finder_for, warp_with_binding


class _Grid:
    """A C-channel volume on the box [lo, hi] (canonical), read trilinearly; zero outside."""

    def __init__(self, lo: np.ndarray, n: np.ndarray, voxel: float, values: np.ndarray, device) -> None:
        self.lo = torch.as_tensor(lo, dtype=torch.float32, device=device)
        self.hi = torch.as_tensor(lo + (n - 1) * voxel, dtype=torch.float32, device=device)
        vol = torch.as_tensor(values.reshape(n[2], n[1], n[0], -1), dtype=torch.float32)
        self.volume = vol.permute(3, 0, 1, 2)[None].contiguous().to(device)

    def to(self, device) -> _Grid:
        self.lo, self.hi, self.volume = self.lo.to(device), self.hi.to(device), self.volume.to(device)
        return self

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        return ((x >= self.lo) & (x <= self.hi)).all(-1)

    def read(self, x: torch.Tensor) -> torch.Tensor:
        u = (2.0 * (x - self.lo) / (self.hi - self.lo) - 1.0).view(1, -1, 1, 1, 3)
        c = self.volume.shape[1]
        return F.grid_sample(self.volume, u, mode="bilinear", padding_mode="zeros", align_corners=True).view(c, -1).t()


class _SeamGrid(_Grid):
    """A displacement grid across a seam (closing lids, parting lips): each node also knows on which side of the
    seam its source lies (+1 upper, -1 lower). A point takes the side its trilinear side value says and is then
    interpolated from that side's corners only, so the seam is a smooth surface and never blends the two sides
    into what lay between them (the eye, the teeth)."""

    def __init__(self, lo, n, voxel, disp: np.ndarray, side: np.ndarray, device) -> None:
        super().__init__(lo, n, voxel, np.concatenate([disp, side[:, None]], 1), device)
        self.n = torch.as_tensor(np.asarray(n), device=device)
        self.flat = self.volume[0].permute(1, 2, 3, 0).reshape(-1, 4)  # (z, y, x) order, x fastest

    def to(self, device) -> _SeamGrid:
        super().to(device)
        self.n, self.flat = self.n.to(device), self.flat.to(device)
        return self

    def read(self, x: torch.Tensor) -> torch.Tensor:
        n = self.n
        f = (x - self.lo) / (self.hi - self.lo) * (n - 1).to(x.dtype)
        i0 = torch.minimum(f.floor().long().clamp(min=0), n - 2)
        t = (f - i0).clamp(0.0, 1.0)
        vals, wts = [], []
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    idx = ((i0[:, 2] + dz) * n[1] + (i0[:, 1] + dy)) * n[0] + (i0[:, 0] + dx)
                    vals.append(self.flat[idx])
                    wts.append((t[:, 0] if dx else 1 - t[:, 0]) * (t[:, 1] if dy else 1 - t[:, 1])
                               * (t[:, 2] if dz else 1 - t[:, 2]))  # fmt: skip
        v = torch.stack(vals, 1)  # (N, 8, 4)
        w = torch.stack(wts, 1)  # (N, 8)
        side = torch.where((w * v[..., 3]).sum(1, keepdim=True) >= 0, 1.0, -1.0)
        w = w * (v[..., 3] * side > 0)
        return (w[..., None] * v[..., :3]).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-12)


def _seam_side(q: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """+1 where sources lie above the mid-line between two source polylines (upper and lower lid, or lip), -1
    below."""
    mid = 0.5 * (np.interp(q[:, 0], *_sorted_xy(upper)) + np.interp(q[:, 0], *_sorted_xy(lower)))
    return np.where(q[:, 1] >= mid, 1.0, -1.0)


def _lattice(lo: np.ndarray, hi: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    n = np.maximum(np.ceil((hi - lo) / voxel).astype(int) + 1, 2)
    axes = [lo[d] + voxel * np.arange(n[d]) for d in range(3)]
    gz, gy, gx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return np.stack([gx, gy, gz], -1).reshape(-1, 3), n


FINE_EYE_M, FINE_MOUTH_M = 0.0008, 0.0015
"""Voxel sides (world metres, scaled to canonical) of the fine patches over the eyes and the mouth, where the warp
is discontinuous (closing lids, parting lips): a coarse grid would blend the two sides into a visible slit."""


class BakedWarp:
    """The warp sampled on a regular grid over the region that moves (identity outside it), refined by seam-aware
    fine patches over moving eyes and mouth, and the mouth cavity on the mouth patch (none outside it).
    ``sample(x)`` returns source points (N, 3) and cavity weights (N,) (None without a cavity)."""

    def __init__(self, spec: WarpSpec, voxel: float, device="cpu", scale: float = 1.0) -> None:
        self.spec = spec
        finder = finder_for(spec)
        c = T.contours()
        patches = []
        for name, idx, vox, (zlo, zhi), pad, (up, dn) in (
            ("eye_right", c["eye_right_loop"] + list(range(470, 486)) + [468], FINE_EYE_M, (0.008, 0.008), 0.004,
             (c["eye_right_upper"], c["eye_right_lower"])),
            ("eye_left", c["eye_left_loop"] + list(range(486, 502)) + [469], FINE_EYE_M, (0.008, 0.008), 0.004,
             (c["eye_left_upper"], c["eye_left_lower"])),
            ("mouth", c["lip_outer_upper"] + c["lip_outer_lower"] + c["mouth_loop"], FINE_MOUTH_M, (0.025, 0.01),
             0.006, (c["lip_inner_upper"], c["lip_inner_lower"])),
        ):  # fmt: skip
            if spec.moving[idx].max() < 1e-5:
                continue
            reg = np.concatenate([spec.observed[idx], spec.source[idx]])
            lo = reg.min(0) - np.array([pad, pad, zlo]) * scale
            hi = reg.max(0) + np.array([pad, pad, zhi]) * scale
            patches.append((name, lo, hi, vox * scale, up, dn))
        moved = spec.moving > 1e-5
        if not np.allclose(spec.jaw_linear, np.eye(3), atol=1e-9):
            moved |= spec.jaw_weight > 1e-3
        pts = np.concatenate([spec.observed[moved], spec.source[moved]])
        margin = float(spec.moving.max()) + INSIDE_FAR + 0.01
        lo = np.minimum.reduce([pts.min(0) - margin] + [pa[1] for pa in patches])
        hi = np.maximum.reduce([pts.max(0) + margin] + [pa[2] for pa in patches])
        grid, n = _lattice(lo, hi, voxel)
        q, _ = warp_with_binding(grid, *finder.query_lattice(grid, n, voxel), spec, cavity=False)
        self.shape = tuple(int(x) for x in n)
        self.coarse = _Grid(grid[0], n, voxel, q - grid, device)
        self.fine: list[_SeamGrid] = []
        self.cavity = None
        for name, plo, phi, v, up, dn in patches:
            g, m = _lattice(plo, phi, v)
            q, cav = warp_with_binding(g, *finder.query_lattice(g, m, v), spec, cavity=name == "mouth")
            side = _seam_side(q, spec.source[up], spec.source[dn])
            self.fine.append(_SeamGrid(g[0], m, v, q - g, side, device))
            if cav.max() > 1e-3:
                self.cavity = _Grid(g[0], m, v, cav[:, None], device)

    def to(self, device) -> BakedWarp:
        for g in [self.coarse, *self.fine] + ([self.cavity] if self.cavity is not None else []):
            g.to(device)
        return self

    @property
    def device(self):
        return self.coarse.volume.device

    def sample(self, x: torch.Tensor, coarse_only: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Source points and cavity weights for observed points x (N, 3). ``coarse_only`` skips the fine seam
        patches (the renderer's wide-density proposal pass does not need them)."""
        q = x.clone()
        c = None if self.cavity is None else x.new_zeros(x.shape[0])
        sel = torch.nonzero(self.coarse.inside(x))[:, 0]  # every patch lies inside the coarse box
        if len(sel) == 0:
            return q, c
        xs = x[sel]
        qs = xs + self.coarse.read(xs)
        if not coarse_only:
            for g in self.fine:
                s2 = torch.nonzero(g.inside(xs))[:, 0]
                if len(s2):
                    qs[s2] = xs[s2] + g.read(xs[s2])
        q[sel] = qs
        if self.cavity is not None:
            s3 = torch.nonzero(self.cavity.inside(xs))[:, 0]
            if len(s3):
                c[sel[s3]] = self.cavity.read(xs[s3])[:, 0].clamp(0.0, 1.0)
        return q, c
