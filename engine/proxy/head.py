"""The closed head proxy (issue: engine core, step 3).

The face comes from the lifted landmarks; the rest of the head, hair, ears, neck and shoulders are *inflated*
from the selfie matte so the proxy's silhouette from the photo camera is the matte by construction. Inflation
solves a Poisson problem for g = h^2 (h = how far the surface stands in front of the head's centre plane):
``laplacian(g) = -4`` in metric units gives a sphere for a round silhouette, with ``g = 0`` on the matte's
boundary and ``g = (z_centre - z_face)^2`` on the face. The back mirrors the front about the centre plane.
Everything here is in the *work camera* (the square face crop) and cv-camera metres."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.interpolate import griddata

from engine.conventions import Intrinsics
from engine.face.mesh import N_MESH, mesh_triangles, zbuffer_depth
from engine.proxy.canonical import Similarity
from engine.proxy.template import CHIN, NECK_RADIUS

SOLVE_RES = 160


@dataclass(frozen=True)
class HeadProxy:
    """Front and back z-depth (H, W) of the proxy in the work camera, metres; ``inside`` is the matte > 0.5."""

    front_m: np.ndarray
    back_m: np.ndarray
    inside: np.ndarray
    intr: Intrinsics
    centre_depth_m: float

    def occupancy_cv(self, points_cv: np.ndarray) -> np.ndarray:
        """Boolean occupancy of cv-camera points (N, 3)."""
        z = points_cv[:, 2]
        safe = np.where(z > 1e-6, z, 1.0)
        u = self.intr.fx * points_cv[:, 0] / safe + self.intr.cx
        v = self.intr.fy * points_cv[:, 1] / safe + self.intr.cy
        h, w = self.inside.shape
        iu = np.floor(u).astype(np.int64)
        iv = np.floor(v).astype(np.int64)
        ok = (z > 1e-6) & (iu >= 0) & (iv >= 0) & (iu < w) & (iv < h)
        out = np.zeros(len(points_cv), dtype=bool)
        idx = np.nonzero(ok)[0]
        iu, iv = iu[idx], iv[idx]
        zz = z[idx]
        out[idx] = self.inside[iv, iu] & (zz >= self.front_m[iv, iu]) & (zz <= self.back_m[iv, iu])
        return out


def _poisson_inflate(inside: np.ndarray, fixed: np.ndarray, fixed_val: np.ndarray, m_per_px: float) -> np.ndarray:
    """Solve laplacian(g) = -4 (metric) on ``inside`` with g = fixed_val where ``fixed`` and g = 0 outside."""
    h, w = inside.shape
    unknown = inside & ~fixed
    idx = -np.ones((h, w), dtype=np.int64)
    n = int(unknown.sum())
    idx[unknown] = np.arange(n)
    g = np.zeros((h, w))
    g[fixed] = fixed_val[fixed]
    if n == 0:
        return g
    rows, cols, vals = [], [], []
    rhs = np.full(n, 4.0 * m_per_px**2)
    ys, xs = np.nonzero(unknown)
    me = idx[ys, xs]
    rows.append(me)
    cols.append(me)
    vals.append(np.full(n, 4.0))
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        ny, nx = ys + dy, xs + dx
        valid = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        nyc, nxc = np.clip(ny, 0, h - 1), np.clip(nx, 0, w - 1)
        nb_unknown = valid & unknown[nyc, nxc]
        rows.append(me[nb_unknown])
        cols.append(idx[nyc, nxc][nb_unknown])
        vals.append(np.full(int(nb_unknown.sum()), -1.0))
        nb_fixed = valid & fixed[nyc, nxc]
        np.add.at(rhs, me[nb_fixed], g[nyc, nxc][nb_fixed])
    a = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    g[unknown] = spla.spsolve(a, rhs)
    return g


def face_depth(uv: np.ndarray, z: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Front depth (H, W) of the landmark face mesh: ``uv`` (478, 2) pixels, ``z`` (478,) metres. The mesh is
    z-buffered so a turned face keeps its nearest surface (the far cheek's landmarks fold behind the nose in 2D and
    would otherwise be averaged with it); the eye and mouth openings are filled by interpolation, through the iris
    landmarks where they are given. NaN off the face."""
    n = N_MESH
    zb = zbuffer_depth(uv[:n], z[:n], mesh_triangles(), shape)
    covered = np.isfinite(zb)
    holes = ndi.binary_fill_holes(covered) & ~covered
    if holes.any() and covered.sum() >= 3:
        ys, xs = np.nonzero(covered)
        hy, hx = np.nonzero(holes)
        pts, vals = np.stack([xs, ys], 1).astype(np.float64), zb[ys, xs]
        if len(uv) > n:  # the iris landmarks shape the eye openings (the eyeball sits behind the lids)
            iris = uv[n:] - 0.5
            iu, iv = np.round(iris).astype(int).T
            ok = (iu >= 0) & (iv >= 0) & (iu < shape[1]) & (iv < shape[0])
            ok[ok] = holes[iv[ok], iu[ok]]
            pts, vals = np.concatenate([pts, iris[ok]]), np.concatenate([vals, z[n:][ok]])
        fill = griddata(pts, vals, (hx, hy), method="linear")
        bad = ~np.isfinite(fill)
        if bad.any():
            fill[bad] = griddata(pts, vals, (hx[bad], hy[bad]), method="nearest")
        zb[hy, hx] = fill
    return zb


# Beside the face nothing stands in front of the head's front outline: side hair and a raised hand in the photo
# lie *behind* the cheek, not level with it. The outline seen from above, in canonical (template) metres, is
# z = OUTLINE_Z0 - OUTLINE_K x^2 (through the template's nose tip 0.11, outer eye corners (0.045, 0.072) and face
# edges at the ears (0.070, 0.025)), plus a margin, never less than FLOOR_Z; applied from the shoulders' top
# to above the brows (SIDE_Y) and eased off over SIDE_FADE beyond.
OUTLINE_Z0, OUTLINE_K, MARGIN_Z, FLOOR_Z = 0.11, 18.8, 0.01, 0.01
SIDE_Y = (-0.14, 0.14)
SIDE_FADE = 0.04


def _behind_the_cheeks(
    front: np.ndarray, where: np.ndarray, intr: Intrinsics, to_canonical: Similarity, deepest_m: float
) -> np.ndarray:
    """``front`` z-depth (H, W) pushed back along each pixel's ray, where ``where``, until its canonical point lies
    no further forward than the head's front outline (above), but never deeper than ``deepest_m`` (so the proxy
    stays inside the field's box and the silhouette from the photo is unchanged)."""
    h, w = front.shape
    gy, gx = np.mgrid[0:h, 0:w] + 0.5
    d = np.stack([(gx - intr.cx) / intr.fx, (gy - intr.cy) / intr.fy, np.ones_like(gx)], -1)  # z-depth 1 rays
    m = to_canonical.scale * to_canonical.rotation
    q = (d * front[..., None]) @ m.T + to_canonical.translation
    z_max = np.maximum(OUTLINE_Z0 - OUTLINE_K * q[..., 0] ** 2 + MARGIN_Z, FLOOR_Z)
    beyond = np.maximum(SIDE_Y[0] - q[..., 1], q[..., 1] - SIDE_Y[1]).clip(min=0.0)
    z_max = z_max + beyond / SIDE_FADE * 0.15  # eased off over SIDE_FADE above and below, no step
    push = where & (q[..., 2] > z_max)
    dz = d @ m[2]  # canonical z per metre of depth along the ray (< 0: away from the camera is toward -z)
    t = (z_max - to_canonical.translation[2]) / np.minimum(dz, -1e-6)
    push &= dz < -1e-6
    return np.where(push, np.maximum(front, np.minimum(t, deepest_m)), front).astype(front.dtype)


def build_head_proxy(
    matte: np.ndarray,
    landmarks_cv: np.ndarray,
    centre_cv: np.ndarray,
    intr: Intrinsics,
    scale: float,
    to_canonical: Similarity | None = None,
) -> HeadProxy:
    """The proxy for a work-camera ``matte`` (H, W) in [0, 1], metric cv-camera landmarks (478, 3), the head
    centre in cv-camera coordinates, and the canonical ``scale`` (subject size relative to the template). With
    ``to_canonical`` (cv camera -> canonical), what stands beside the face is kept behind the cheeks."""
    h, w = matte.shape
    f = SOLVE_RES / max(h, w)
    sh, sw = max(8, int(round(h * f))), max(8, int(round(w * f)))
    small = ndi.zoom(matte.astype(np.float64), (sh / h, sw / w), order=1) > 0.5
    z_c = float(centre_cv[2])
    # Landmarks in solve-grid pixels; the face's depth is their z-buffered mesh (face_depth).
    u = (intr.fx * landmarks_cv[:, 0] / landmarks_cv[:, 2] + intr.cx) * sw / w
    v = (intr.fy * landmarks_cv[:, 1] / landmarks_cv[:, 2] + intr.cy) * sh / h
    gy, gx = np.mgrid[0:sh, 0:sw] + 0.5
    face_z = face_depth(np.stack([u, v], 1), landmarks_cv[:, 2], (sh, sw))
    face = np.isfinite(face_z) & small
    face = ndi.binary_erosion(face, iterations=1) & small
    fixed_val = np.where(face, np.maximum(z_c - np.nan_to_num(face_z, nan=z_c), 0.0) ** 2, 0.0)
    m_per_px = z_c / (intr.fx * sw / w)
    g = _poisson_inflate(small, face, fixed_val, m_per_px)
    hgt = np.sqrt(np.maximum(g, 0.0))
    # Below the chin the body is flatter than a balloon: cap how far it stands out.
    chin_v = intr.fy * landmarks_cv[CHIN, 1] / landmarks_cv[CHIN, 2] + intr.cy
    chin_v *= sh / h
    ramp = np.clip((gy - chin_v) / (0.04 / scale * intr.fy * sh / h / z_c), 0.0, 1.0)
    cap = np.where(face, np.inf, (1.0 - ramp) * 1.0 + ramp * (1.2 * NECK_RADIUS / scale))
    hgt = np.minimum(hgt, cap)
    # Upsample to the work resolution.
    zoom = (h / sh, w / sw)
    front = z_c - ndi.zoom(hgt, zoom, order=1)[:h, :w]
    back = z_c + ndi.zoom(hgt, zoom, order=1)[:h, :w]
    inside = matte > 0.5
    if to_canonical is not None:
        face_w = ndi.zoom(face.astype(np.uint8), zoom, order=0)[:h, :w].astype(bool)
        front = _behind_the_cheeks(front, inside & ~face_w, intr, to_canonical, z_c)
    min_thick = 2.0 * m_per_px
    back = np.maximum(back, front + min_thick)
    return HeadProxy(front.astype(np.float32), back.astype(np.float32), inside, intr, z_c)


def matte_covers_cv(points_cv: np.ndarray, matte: np.ndarray, intr: Intrinsics, margin_px: int = 2) -> np.ndarray:
    """Visual-hull test for one more view: True where cv-camera points (N, 3) of that view project into its
    ``matte`` (H, W) > 0.5 dilated by ``margin_px``, or outside its image (no evidence there: not carved)."""
    inside = ndi.binary_dilation(matte > 0.5, iterations=margin_px) if margin_px > 0 else matte > 0.5
    z = points_cv[:, 2]
    safe = np.where(z > 1e-6, z, 1.0)
    iu = np.floor(intr.fx * points_cv[:, 0] / safe + intr.cx).astype(np.int64)
    iv = np.floor(intr.fy * points_cv[:, 1] / safe + intr.cy).astype(np.int64)
    h, w = inside.shape
    in_img = (z > 1e-6) & (iu >= 0) & (iv >= 0) & (iu < w) & (iv < h)
    out = ~in_img
    out[in_img] = inside[iv[in_img], iu[in_img]]
    return out
