"""Relate a bundle's world frame to the ground truth's frame: a similarity ``x_world = s R x_gt + t``.

The engine's world is defined by the photo (origin at the fitted head centre, axes from its template-face fit,
metric scale from the template's size), so every GT camera must be carried into it before the bundle can render
that view. Two protocols:

* ``camera`` (default): the GT input camera *is* the bundle's photo camera (the build is told the true focal
  length, so the intrinsics agree), which fixes R and t for a given s: R = R_world R_gt^T and
  t = p_world - s R p_gt. The one unknown, the monocular scale s, is the median ratio of the bundle's rendered
  z-depth to the GT z-depth over the face at the input view. Novel cameras then keep their true pose relative
  to the input camera, as in the papers' protocols (calibrated test cameras).
* ``landmarks``: mediapipe's 478 landmarks detected on the GT input image are lifted to 3D with the GT depth
  and the GT camera, and Umeyama fits them to the bundle's ``landmarks.json`` (trimmed: the worst 20 % of
  residuals are dropped twice). This also tests the engine's head pose and landmark lifting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.conventions import Intrinsics, cam2world_gl_to_cv
from engine.proxy.canonical import Similarity, umeyama


@dataclass(frozen=True)
class Alignment:
    """``to_world`` maps GT-frame points to the bundle's world; ``method`` names the protocol."""

    to_world: Similarity
    method: str
    info: dict

    def camera(self, cam2world_gt: np.ndarray) -> np.ndarray:
        """A GT gl cam2world carried into the bundle's world (rotation and position; intrinsics unchanged)."""
        s = self.to_world
        out = np.eye(4)
        out[:3, :3] = s.rotation @ cam2world_gt[:3, :3]
        out[:3, 3] = s.apply(cam2world_gt[:3, 3][None])[0]
        return out

    def points(self, pts_gt: np.ndarray) -> np.ndarray:
        return self.to_world.apply(pts_gt)


def camera_alignment(
    cam2world_gt: np.ndarray, cam2world_world: np.ndarray, depth_world: np.ndarray, depth_gt: np.ndarray, region
) -> Alignment:
    """Protocol ``camera``: the input cameras coincide; s = median(depth_world / depth_gt) over ``region`` where
    both depths are valid (both maps from the same camera, pixel-aligned)."""
    ok = (depth_world > 0) & (depth_gt > 0) & region
    if ok.sum() < 50:
        ok = (depth_world > 0) & (depth_gt > 0)
    s = float(np.median(depth_world[ok] / depth_gt[ok]))
    rot = cam2world_world[:3, :3] @ cam2world_gt[:3, :3].T
    t = cam2world_world[:3, 3] - s * rot @ cam2world_gt[:3, 3]
    return Alignment(Similarity(s, rot, t), "camera", {"scale": s, "pixels": int(ok.sum())})


def backproject(uv: np.ndarray, depth: np.ndarray, cam2world_gl: np.ndarray, intr: Intrinsics):
    """Lift pixels (N, 2) with a z-depth map to world points; returns points (N, 3) and a validity mask (N,)
    (depth present in the whole 3x3 neighbourhood and no step over 1 cm there)."""
    h, w = depth.shape
    iu = np.clip(np.floor(uv[:, 0]).astype(int), 1, w - 2)
    iv = np.clip(np.floor(uv[:, 1]).astype(int), 1, h - 2)
    nb = np.stack([depth[iv + dy, iu + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 1)
    valid = (nb > 0).all(1) & (np.ptp(nb, axis=1) < 0.01)
    z = np.median(nb, axis=1)
    x = (uv[:, 0] - intr.cx) * z / intr.fx
    y = (uv[:, 1] - intr.cy) * z / intr.fy
    pc = np.stack([x, y, z], 1)
    c2w = cam2world_gl_to_cv(cam2world_gl)
    return pc @ c2w[:3, :3].T + c2w[:3, 3], valid


def landmark_alignment(
    landmarks_px_gt: np.ndarray,
    depth_gt: np.ndarray,
    cam2world_gt: np.ndarray,
    intr: Intrinsics,
    landmarks_world: np.ndarray,
    trim: float = 0.2,
    rounds: int = 2,
) -> Alignment:
    """Protocol ``landmarks``: Umeyama from GT-lifted landmarks to the bundle's 3D landmarks, trimmed."""
    pts_gt, valid = backproject(landmarks_px_gt[:, :2], depth_gt, cam2world_gt, intr)
    idx = np.nonzero(valid)[0]
    if len(idx) < 20:
        raise ValueError(f"only {len(idx)} landmarks have ground-truth depth; cannot align")
    sim = umeyama(pts_gt[idx], landmarks_world[idx])
    for _ in range(rounds):
        res = np.linalg.norm(sim.apply(pts_gt[idx]) - landmarks_world[idx], axis=1)
        keep = res <= np.quantile(res, 1.0 - trim)
        idx = idx[keep]
        sim = umeyama(pts_gt[idx], landmarks_world[idx])
    res = np.linalg.norm(sim.apply(pts_gt[idx]) - landmarks_world[idx], axis=1)
    info = {
        "scale": sim.scale,
        "landmarks_used": int(len(idx)),
        "rms_residual_mm": float(np.sqrt((res**2).mean()) * 1e3),
    }
    return Alignment(sim, "landmarks", info)


def compare(a: Alignment, b: Alignment, centre_gt=(0.0, 0.0, 0.0)) -> dict:
    """How far apart two alignments put things: rotation angle (deg), scale ratio, and the distance (mm, in the
    bundle's world) between where they map the GT head centre."""
    r = a.to_world.rotation @ b.to_world.rotation.T
    ang = float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))
    c = np.asarray(centre_gt, np.float64)[None]
    d = float(np.linalg.norm(a.points(c) - b.points(c)) * 1e3)
    return {"rotation_deg": ang, "scale_ratio": a.to_world.scale / b.to_world.scale, "centre_offset_mm": d}
