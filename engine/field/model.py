"""Radiance field in canonical face space.

density: an SDF grid ``sdf`` (canonical units) turned into density by ``sigma = sigmoid(-sdf / beta) / beta``
(VolSDF-style, cut to zero 4 beta outside), so the zero level set is the surface and marching cubes reads it directly.

colour: ``c(x) = v(x) * photo(pi(x)) + (1 - v(x)) * c_theta(x)`` -- the photo's pixel where the input camera sees
x (v from the field's own input-view depth and the surface's foreshortening), and a fitted triplane + MLP
colour ``c_theta`` elsewhere (initialised by projecting the photo with a mirror-symmetric fill). Like pixel-aligned
fields (PixelNeRF, the real-time triplane encoder), the input image conditions the field.

With extra views (photos with known cameras, fitted together with the reference photo), the photo term takes
each point's colour from every view that sees it, weighted toward the view that sees it most head-on (see
:meth:`RadianceField.photo_term`). Colour is view-independent (a handful of photos carries too little
view-dependent signal to fit).

With the reference photo alone, the face's far side is seen at a grazing angle (stretched texture) or through
hair that falls across it. The photo mirrored about the face's plane of symmetry is then a second, *virtual*
view (the camera mirrored in canonical x): inside the face region (:func:`face_region`), where the mirrored
photo sees a point much more head-on than the photo does, its colour is blended in, weighted by how close the
viewing direction is to the virtual camera's ray (image-based rendering's angular weight). At the photo's own
camera the mirror's weight is zero, so the input view is the photo; looking from the far side the face is the
near side's skin. Without a viewing direction (the texture bake) the surface normal stands in for it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SILHOUETTE_LEVEL = 3.0

# The mirrored virtual view (module docstring): angular sharpness of the view weights (1 - cos units), and the
# head-on advantage (cosine of the mirrored photo's ray minus the photo's) over which the mirror fades in.
MIRROR_TAU = 0.05
MIRROR_GAIN = (0.1, 0.3)
MIRROR_HEAD_ON = 4
MIRROR_FRONT_TOL = 4.0  # voxels: a face is not exactly symmetric, so its mirror image may stand a little proud
MIRROR = torch.tensor([-1.0, 1.0, 1.0])


def face_region(x: torch.Tensor) -> torch.Tensor:
    """(N,) in [0, 1]: how much canonical x (N, 3) lies on the face (the template's face, forehead to chin and
    ear to ear, front half), where left and right mirror each other; eased over 1.5-2 cm at the edges."""
    ax = ((0.085 - x[:, 0].abs()) / 0.015).clamp(0.0, 1.0)
    ay = ((x[:, 1] + 0.13) / 0.02).clamp(0.0, 1.0) * ((0.11 - x[:, 1]) / 0.02).clamp(0.0, 1.0)
    az = (x[:, 2] / 0.02).clamp(0.0, 1.0)
    return ax * ay * az


class RadianceField(nn.Module):
    """All positions are canonical, (N, 3) float32; densities per canonical unit length; colours in [0, 1]."""

    def __init__(
        self,
        box_center: np.ndarray,
        box_half: float,
        grid_res: int,
        plane_res: int,
        plane_channels: int,
        photo: np.ndarray,
        photo_fx: float,
        photo_fy: float,
        photo_cx: float,
        photo_cy: float,
        canon_from_cv: np.ndarray,
        extra_views: int = 0,
    ) -> None:
        """``photo`` (H, W, 3) in [0, 1] is the reference view's work crop with pinhole ``photo_f*, photo_c*``
        (pixels) and ``canon_from_cv`` (4, 4); ``extra_views`` reserves that many more photo slots of the same
        size (filled by :meth:`set_extra_view`; none for a single-photo build, whose state is unchanged)."""
        super().__init__()
        self.register_buffer("box_center", torch.as_tensor(np.asarray(box_center), dtype=torch.float32))
        self.register_buffer("box_half", torch.tensor(float(box_half)))
        g = grid_res
        self.sdf = nn.Parameter(torch.zeros(1, 1, g, g, g))
        # xy (front half), xy (back half), xz, yz: front and back of the head do not share a plane.
        self.planes = nn.Parameter(torch.zeros(4, plane_channels, plane_res, plane_res))
        self.mlp = nn.Sequential(nn.Linear(3 * plane_channels + 15, 32), nn.ReLU(), nn.Linear(32, 3))
        self.register_buffer("normals", torch.zeros(1, 3, g, g, g))
        img = torch.as_tensor(np.asarray(photo, dtype=np.float32)).permute(2, 0, 1)[None]
        self.register_buffer("photo", img.contiguous())
        self.register_buffer("photo_depth", torch.zeros(1, 1, img.shape[2], img.shape[3]))
        self.register_buffer("photo_intr", torch.tensor([photo_fx, photo_fy, photo_cx, photo_cy], dtype=torch.float32))
        m = torch.as_tensor(np.asarray(canon_from_cv), dtype=torch.float32)
        self.register_buffer("canon_from_cv", m)
        self.register_buffer("photo_enabled", torch.tensor(0.0))
        self.mirror_fill = True  # the mirrored virtual view on the face (module docstring); not saved
        if extra_views > 0:
            e, (h, w) = extra_views, img.shape[2:]
            self.register_buffer("extra_photo", torch.zeros(e, 3, h, w))
            self.register_buffer("extra_photo_depth", torch.zeros(e, 1, h, w))
            self.register_buffer("extra_photo_intr", torch.zeros(e, 4))
            self.register_buffer("extra_canon_from_cv", torch.eye(4).repeat(e, 1, 1))
            self.register_buffer("extra_enabled", torch.zeros(e))

    @property
    def n_extra_views(self) -> int:
        """Photo slots beside the reference photo."""
        return int(self.extra_photo.shape[0]) if hasattr(self, "extra_photo") else 0

    # ----------------------------------------------------------------- geometry
    @property
    def voxel(self) -> float:
        return float(2.0 * self.box_half / (self.sdf.shape[-1] - 1))

    @property
    def beta(self) -> float:
        """Density sharpness, canonical units (a tenth of a voxel). A grazing ray reaches alpha 0.5 about
        ``SILHOUETTE_LEVEL`` betas outside the zero level set; meshes are extracted at that level so the mesh's
        silhouette and the rendered alpha agree."""
        return 0.1 * self.voxel

    @property
    def surface_level(self) -> float:
        """SDF value (canonical units) of the surface whose silhouette matches the rendered alpha."""
        return SILHOUETTE_LEVEL * self.beta

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.box_center) / self.box_half

    def _grid(self, vol: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        g = self.to_unit(x).view(1, -1, 1, 1, 3)
        out = F.grid_sample(vol, g, mode="bilinear", padding_mode="border", align_corners=True)
        return out.view(vol.shape[1], -1).t()

    def normal_at(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) the SDF's normal at canonical points, trilinear from the normals buffer (not re-normalised)."""
        return self._grid(self.normals, x)

    def sdf_at(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) signed distance, canonical units; outside the box it grows with the distance to the box."""
        d = self._grid(self.sdf, x)[:, 0]
        outside = (self.to_unit(x).abs() - 1.0).clamp(min=0).norm(dim=-1) * self.box_half
        return d + outside

    def density(self, x: torch.Tensor, beta: float | None = None) -> torch.Tensor:
        b = self.beta if beta is None else beta
        d = self.sdf_at(x)
        # Compact support: no density beyond 4 beta outside the surface (a long exponential tail would
        # fatten grazing silhouettes).
        return torch.where(d < 4.0 * b, torch.sigmoid(-d / b) / b, torch.zeros_like(d))

    # ----------------------------------------------------------------- colour
    def learned_colour(self, x: torch.Tensor) -> torch.Tensor:
        u = self.to_unit(x).clamp(-1, 1)
        xy = u[:, [0, 1]]
        coords = torch.stack([xy, xy, u[:, [0, 2]], u[:, [1, 2]]], 0).unsqueeze(2)  # (4, N, 1, 2)
        f = F.grid_sample(self.planes, coords, mode="bilinear", align_corners=True)[..., 0]  # (4, C, N)
        front = torch.sigmoid(x[:, 2] / (4.0 * self.voxel))  # canonical z > 0 is the face side
        f_xy = f[0] * front + f[1] * (1.0 - front)
        feats = torch.cat([f_xy, f[2], f[3]], 0).t()
        # Low-frequency position lets the decoder tell the front of the head from the back, which share
        # the xy-plane's features.
        enc = [u] + [f(u * (2.0**k) * torch.pi) for k in range(2) for f in (torch.sin, torch.cos)]
        return torch.sigmoid(self.mlp(torch.cat([feats] + enc, -1)))

    def to_cv(self, x: torch.Tensor) -> torch.Tensor:
        m = self.canon_from_cv
        s = m[:3, :3].det().abs().pow(1.0 / 3.0)
        rot = m[:3, :3] / s
        return ((x - m[:3, 3]) @ rot) / s

    def photo_term(self, x: torch.Tensor, view_dirs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Photo colour (N, 3) at the projection of canonical x (N, 3) and its visibility weight v (N,) in [0, 1].
        With extra views: each seeing view k weighs ``v_k * cos_k^8`` (cos_k between the normal and its ray),
        colours are blended by those weights and v = max_k v_k. With the photo alone (and ``mirror_fill``), the
        mirrored virtual view joins in on the face (module docstring); ``view_dirs`` (N, 3) are the unit
        canonical directions the points are seen along (None: along their inward normals)."""
        n = self._grid(self.normals, x)  # one lookup serves every view
        rgb, v, cos = _photo_sample(self, x, self.photo, self.photo_depth, self.photo_intr, self.canon_from_cv, n)
        v = v * self.photo_enabled
        if self.n_extra_views == 0:
            if self.mirror_fill and bool(self.photo_enabled > 0):
                return self._with_mirror(x, n, rgb, v, cos, view_dirs)
            return rgb, v
        ws, rgbs, vs = [v * cos.clamp(min=0.0) ** 8], [rgb], [v]
        for k in range(self.n_extra_views):
            rgb_k, v_k, cos_k = _photo_sample(
                self,
                x,
                self.extra_photo[k : k + 1],
                self.extra_photo_depth[k : k + 1],
                self.extra_photo_intr[k],
                self.extra_canon_from_cv[k],
                n,
            )
            v_k = v_k * self.extra_enabled[k]
            ws.append(v_k * cos_k.clamp(min=0.0) ** 8)
            rgbs.append(rgb_k)
            vs.append(v_k)
        w = torch.stack(ws)
        blend = (w[..., None] * torch.stack(rgbs)).sum(0) / w.sum(0).clamp(min=1e-8)[:, None]
        return blend, torch.stack(vs).max(0).values

    def _with_mirror(self, x, normals, rgb, v, cos, view_dirs):
        """The photo term blended with the mirrored virtual view (module docstring); only points on the face
        are looked at."""
        face = face_region(x)
        idx = torch.nonzero(face > 0)[:, 0]
        if idx.numel() == 0:
            return rgb, v
        xs, n, vs, coss = x[idx], normals[idx], v[idx], cos[idx]
        m = MIRROR.to(x)
        xm = xs * m
        rgb_m, v_m, cos_m = _photo_sample(
            self,
            xm,
            self.photo,
            self.photo_depth,
            self.photo_intr,
            self.canon_from_cv,
            normals=n * m,
            front_tol_vox=MIRROR_FRONT_TOL,
        )
        lo, hi = MIRROR_GAIN
        gain = ((cos_m - coss - lo) / (hi - lo)).clamp(0.0, 1.0)
        a_m = v_m * face[idx] * gain
        eye = self.canon_from_cv[:3, 3]
        ray = F.normalize(xs - eye, dim=-1)  # the photo's ray to x
        ray_m = F.normalize(xm - eye, dim=-1) * m  # the virtual camera's ray to x
        d = -n if view_dirs is None else view_dirs[idx]
        k = torch.exp(((d * ray).sum(-1) - 1.0) / MIRROR_TAU)
        k_m = torch.exp(((d * ray_m).sum(-1) - 1.0) / MIRROR_TAU) * (1.0 - k)
        # Each view also weighs how head-on it sees the surface (a grazing view's texels are stretched).
        w = vs * k * coss.clamp(min=0.0) ** MIRROR_HEAD_ON
        w_m = a_m * k_m * cos_m.clamp(min=0.0) ** MIRROR_HEAD_ON
        total = w + w_m
        share = torch.where(total > 1e-12, w_m / total.clamp(min=1e-12), torch.zeros_like(total))
        out, vis = rgb.clone(), v.clone()
        out[idx] = rgb[idx] + share[:, None] * (rgb_m - rgb[idx])
        vis[idx] = torch.maximum(vs, a_m)
        return out, vis

    def colour(
        self, x: torch.Tensor, learned_only: bool = False, view_dirs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Colour (N, 3) at canonical x (N, 3), seen along ``view_dirs`` (N, 3) unit canonical directions (only
        the mirrored virtual view depends on it; None: along the inward normals, as for a texture)."""
        learned = self.learned_colour(x)
        if learned_only:
            return learned
        rgb, v = self.photo_term(x, view_dirs)
        return v[:, None] * rgb + (1.0 - v[:, None]) * learned

    # ----------------------------------------------------------------- buffers
    @torch.no_grad()
    def refresh_normals(self) -> None:
        """Normals (unit, canonical) from the SDF grid's central differences."""
        s = self.sdf[0, 0]
        gz, gy, gx = torch.gradient(s)
        n = torch.stack([gx, gy, gz], 0)
        self.normals.copy_(F.normalize(n, dim=0)[None])

    @torch.no_grad()
    def set_photo_depth(self, depth_m: np.ndarray, view: int = 0) -> None:
        """A view's z-depth (H, W) in metres (0 where empty), seen by its camera; enables that view in the photo
        term. ``view`` 0 is the reference photo, k >= 1 the k-th extra view."""
        d = torch.as_tensor(np.asarray(depth_m, dtype=np.float32), device=self.photo_depth.device)
        if view == 0:
            self.photo_depth.copy_(d[None, None])
            self.photo_enabled.fill_(1.0)
        else:
            self.extra_photo_depth[view - 1].copy_(d[None])
            self.extra_enabled[view - 1] = 1.0

    @torch.no_grad()
    def set_extra_view(self, k: int, photo: np.ndarray, intr_px: tuple, canon_from_cv: np.ndarray) -> None:
        """Fill extra slot ``k`` (0-based): work crop (H, W, 3) in [0, 1], its (fx, fy, cx, cy) in pixels and
        4x4 cv -> canonical similarity. The slot stays disabled until :meth:`set_photo_depth` gives its depth."""
        dev = self.extra_photo.device
        self.extra_photo[k].copy_(torch.as_tensor(np.asarray(photo, np.float32), device=dev).permute(2, 0, 1))
        self.extra_photo_intr[k].copy_(torch.tensor([float(c) for c in intr_px], device=dev))
        self.extra_canon_from_cv[k].copy_(torch.as_tensor(np.asarray(canon_from_cv), dtype=torch.float32, device=dev))


def _photo_sample(field: RadianceField, x, photo, photo_depth, photo_intr, canon_from_cv, normals, front_tol_vox=None):
    """One view's photo colour (N, 3) at canonical x (N, 3), its visibility (N,) (depth test against the view's
    z-depth ``photo_depth`` (1, 1, H, W) in metres, damped at grazing angles, 0 outside the image) and the
    cosine (N,) between the surface normal ``normals`` (N, 3) and the ray toward the camera. ``front_tol_vox``
    also fails points more than that many voxels in front of the seen surface (for points that need not lie on
    it)."""
    scale = canon_from_cv[:3, :3].det().abs().pow(1.0 / 3.0)
    rot = canon_from_cv[:3, :3] / scale
    pc = ((x - canon_from_cv[:3, 3]) @ rot) / scale
    fx, fy, cx, cy = photo_intr
    z = pc[:, 2].clamp(min=1e-4)
    h, w = photo.shape[-2:]
    gx = 2.0 * (fx * pc[:, 0] / z + cx) / w - 1.0
    gy = 2.0 * (fy * pc[:, 1] / z + cy) / h - 1.0
    grid = torch.stack([gx, gy], -1).view(1, -1, 1, 2)
    rgb = F.grid_sample(photo, grid, mode="bilinear", align_corners=False).view(3, -1).t()
    depth = F.grid_sample(photo_depth, grid, mode="nearest", align_corners=False).view(-1)
    vox_m = field.voxel / scale
    vis = torch.sigmoid((depth + 1.5 * vox_m - pc[:, 2]) / (0.5 * vox_m))
    if front_tol_vox is not None:
        vis = vis * torch.sigmoid((pc[:, 2] - depth + front_tol_vox * vox_m) / (0.5 * vox_m))
    view = F.normalize(pc, dim=-1) @ (canon_from_cv[:3, :3] / scale).t()
    cos = -(normals * view).sum(-1)
    graze = ((cos - 0.1) / 0.25).clamp(0.0, 1.0)
    inside = (gx.abs() < 1) & (gy.abs() < 1) & (depth > 0)
    return rgb, vis * graze * inside.float(), cos
