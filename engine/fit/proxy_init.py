"""``proxy-init``: density from the head proxy's occupancy, colour by projecting the photo with a mirror fill,
then the photo fit (engine.fit.photofit). The engine's default method."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from engine.config import BuildConfig
from engine.field.model import RadianceField
from engine.fit.base import FitReport, FitState, tick
from engine.fit.data import FitData, FitView, similarity_scale, view_depth_m
from engine.fit.losses import tv2
from engine.fit.photofit import PhotoFitConfig, fit_to_photo
from engine.proxy.head import HeadProxy, matte_covers_cv


@dataclass(frozen=True)
class ProxyInitConfig(PhotoFitConfig):
    """The photo fit's numbers (inherited) and the colour initialisation's."""

    init_lr_planes: float = 0.03
    """Adam learning rate of the triplanes while distilling the projected colour."""
    init_lr_mlp: float = 0.01
    """Adam learning rate of the decoder while distilling."""
    init_batch: int = 16384
    """Colour targets per distillation step."""
    init_tv_planes: float = 1e-2
    """Total variation of the triplanes while distilling."""
    init_plane_noise: float = 0.01
    """Standard deviation of the triplanes' random start."""
    surface_band_voxels: float = 1.5
    """Colour targets are drawn within this many voxels of the proxy's surface."""
    min_view_cos: float = 0.25
    """A view colours a point only when it sees its surface at least this head-on (cosine)."""
    unseen_prior_gain: float = 1.0
    """The fit's colour-prior term weighs the points no view (nor its mirror) sees this many times more than the
    seen ones: the photo's outline rays graze the head's sides and otherwise drag the outline's colours back
    along them (horizontal streaks between the face and the ears at +-90 deg). 10 keeps the strip clean but cost
    0.26 dB over Lee Perry-Smith's full circle and 2 dB at the draft demo's input view (docs/FIDELITY.md, "The side
    strip"), so 1 stays."""


def grid_points(field: RadianceField) -> np.ndarray:
    """Canonical coordinates (G^3, 3) of the field's grid points, in the grid's [z, y, x] order."""
    g = field.sdf.shape[-1]
    lin = np.linspace(-1.0, 1.0, g)
    zz, yy, xx = np.meshgrid(lin, lin, lin, indexing="ij")
    return np.stack([xx, yy, zz], -1).reshape(-1, 3) * float(field.box_half) + field.box_center.cpu().numpy()


def proxy_occupancy(
    proxy: HeadProxy, field: RadianceField, canon_to_cv: np.ndarray, carve: tuple[FitView, ...] = ()
) -> np.ndarray:
    """The proxy's occupancy (G, G, G) bool on the field's grid, indexed [z, y, x]; with ``carve`` views, cut to
    their mattes too (a visual hull: occupied only where every view's matte is)."""
    g = field.sdf.shape[-1]
    pts = grid_points(field)
    pc = pts @ canon_to_cv[:3, :3].T + canon_to_cv[:3, 3]
    occ = proxy.occupancy_cv(pc)
    for view in carve:
        to_cv = np.linalg.inv(view.cv_to_canon)
        occ &= matte_covers_cv(pts @ to_cv[:3, :3].T + to_cv[:3, 3], view.matte, view.intr)
    return occ.reshape(g, g, g)


def occupancy_sdf(occ: np.ndarray, voxel: float) -> np.ndarray:
    """Signed distance (canonical units; negative inside) of an occupancy grid, opened once, its largest part
    kept, lightly smoothed."""
    occ = ndi.binary_opening(occ, iterations=1)
    lab, n = ndi.label(occ)
    if n > 1:
        sizes = ndi.sum(occ, lab, range(1, n + 1))
        occ = lab == (1 + int(np.argmax(sizes)))
    dist_out = ndi.distance_transform_edt(~occ)
    dist_in = ndi.distance_transform_edt(occ)
    sdf = (dist_out - dist_in + np.where(occ, 0.5, -0.5)) * voxel
    return ndi.gaussian_filter(sdf, 0.8).astype(np.float32)


def proxy_sdf_grid(
    proxy: HeadProxy, field: RadianceField, canon_to_cv: np.ndarray, carve: tuple[FitView, ...] = ()
) -> np.ndarray:
    """Signed distance (canonical units) of the proxy on the field's grid, indexed [z, y, x] (see
    :func:`proxy_occupancy`)."""
    return occupancy_sdf(proxy_occupancy(proxy, field, canon_to_cv, carve), field.voxel)


def _silhouette_colour(photo: np.ndarray, matte: np.ndarray, centre_uv: np.ndarray, res: int = 128) -> np.ndarray:
    """Per pixel, the colour found where the ray from the head's centre through that pixel leaves the matte
    (hair above, ears and hair at the sides, clothes below), sampled a little inside the edge and blurred:
    what the unseen back of the head is filled with before fitting. (H, W, 3)."""
    h, w = matte.shape
    k = res / max(h, w)
    sm = ndi.zoom(matte, k, order=1) > 0.5
    sh, sw = sm.shape
    blur = np.stack([ndi.gaussian_filter(photo[..., c], 0.02 * max(h, w)) for c in range(3)], -1)
    gy, gx = np.mgrid[0:sh, 0:sw].astype(np.float64) + 0.5
    c = np.asarray(centre_uv, np.float64) * k
    d = np.stack([gx - c[0], gy - c[1]], -1)
    n = np.linalg.norm(d, axis=-1, keepdims=True)
    d = np.where(n > 1e-6, d / np.maximum(n, 1e-6), np.array([0.0, -1.0]))
    px, py = gx.copy(), gy.copy()
    start_in = sm[np.clip(py.astype(int), 0, sh - 1), np.clip(px.astype(int), 0, sw - 1)]
    step = np.where(start_in[..., None], d, -d)  # outward from inside, inward from outside
    last = np.stack([px, py], -1)
    active = np.ones(sm.shape, bool)
    for _ in range(2 * max(sh, sw)):
        nx, ny = px + step[..., 0], py + step[..., 1]
        ix, iy = nx.astype(int), ny.astype(int)
        inb = (ix >= 0) & (iy >= 0) & (ix < sw) & (iy < sh)
        now_in = np.zeros_like(active)
        now_in[inb] = sm[iy[inb], ix[inb]]
        stop = active & ((now_in != start_in) | ~inb)
        hit = stop & ~start_in & now_in  # marched in from outside: the first inside pixel
        last[hit] = np.stack([nx, ny], -1)[hit]
        active &= ~stop
        cont = active
        last[cont & start_in] = np.stack([nx, ny], -1)[cont & start_in]
        px, py = np.where(cont, nx, px), np.where(cont, ny, py)
        if not active.any():
            break
    inset = 0.02 * max(sh, sw)
    sample = last - d * inset
    su = np.clip(sample[..., 0] / k, 0, w - 1).astype(int)
    sv = np.clip(sample[..., 1] / k, 0, h - 1).astype(int)
    small = blur[sv, su]
    return np.stack([ndi.zoom(small[..., i], (h / sh, w / sw), order=1)[:h, :w] for i in range(3)], -1)


class ProxyInitFit:
    """Density from the proxy's occupancy, colour by projecting the photo with a mirror fill, then fitting."""

    name = "proxy-init"
    Config = ProxyInitConfig

    def __init__(self, cfg: BuildConfig, options: ProxyInitConfig | None = None) -> None:
        self.cfg = cfg
        self.options = options or ProxyInitConfig()
        self._unseen: np.ndarray | None = None  # which colour targets no view sees (``unseen_prior_gain``)

    def check(self, field: RadianceField, data: FitData) -> None:
        """Any analysed photo will do: the proxy always exists."""

    def initial_sdf(self, field: RadianceField, data: FitData, canon_to_cv: np.ndarray) -> np.ndarray:
        """The SDF grid the field starts from: the head proxy's."""
        return proxy_sdf_grid(data.proxy, field, canon_to_cv, data.extra)

    def init(self, field: RadianceField, data: FitData, progress=None, cancel=None) -> FitState:
        o = self.options
        t0 = time.perf_counter()
        canon_to_cv = np.linalg.inv(data.cv_to_canon)
        sdf = self.initial_sdf(field, data, canon_to_cv)
        with torch.no_grad():
            field.sdf.copy_(torch.from_numpy(sdf)[None, None].to(field.sdf.device))
        field.refresh_normals()
        pts, target = self._colour_targets(field, data, canon_to_cv, sdf)
        gen = torch.Generator().manual_seed(self.cfg.seed)
        with torch.no_grad():
            field.planes.copy_(torch.randn(field.planes.shape, generator=gen) * o.init_plane_noise)
        opt = torch.optim.Adam(
            [
                {"params": [field.planes], "lr": o.init_lr_planes},
                {"params": field.mlp.parameters(), "lr": o.init_lr_mlp},
            ]
        )
        steps = self.cfg.init_steps
        loss = torch.zeros(())
        dev = field.sdf.device
        pts_t, tgt_t = torch.from_numpy(pts).to(dev), torch.from_numpy(target).to(dev)
        for i in range(steps):
            idx = torch.randint(0, len(pts_t), (min(o.init_batch, len(pts_t)),), generator=gen).to(dev)
            loss = F.mse_loss(field.learned_colour(pts_t[idx]), tgt_t[idx]) + o.init_tv_planes * tv2(field.planes)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tick(progress, cancel, "init", (i + 1) / steps)
        info = {"init_s": time.perf_counter() - t0, "init_colour_mse": float(loss.detach())}
        weight = None
        if o.unseen_prior_gain != 1.0 and self._unseen is not None:
            weight = torch.from_numpy(np.where(self._unseen, o.unseen_prior_gain, 1.0).astype(np.float32)).to(dev)
        return FitState(field, data, colour_prior=(pts_t, tgt_t), colour_prior_weight=weight, info=info)

    def _colour_targets(self, field, data: FitData, canon_to_cv: np.ndarray, sdf: np.ndarray):
        """Near-surface canonical points and their initial colour: the photo of the view that sees the point
        most head-on, else of the view that sees the mirrored point, else the reference matte's edge colour."""
        vox = field.voxel
        zi, yi, xi = np.nonzero(np.abs(sdf) < self.options.surface_band_voxels * vox)
        rng = np.random.default_rng(self.cfg.seed)
        g = sdf.shape[0]
        lin = lambda i: -1.0 + 2.0 * i / (g - 1)  # noqa: E731
        base = np.stack([lin(xi), lin(yi), lin(zi)], -1) * float(field.box_half) + field.box_center.cpu().numpy()
        pts = (base + rng.uniform(-0.5, 0.5, base.shape) * vox).astype(np.float32)
        centre = canon_to_cv[:3, 3]
        centre_uv = np.array(
            [data.intr.fx * centre[0] / centre[2] + data.intr.cx, data.intr.fy * centre[1] / centre[2] + data.intr.cy]
        )
        edge = _silhouette_colour(data.photo, data.matte, centre_uv)
        fronts = [data.proxy.front_m] + [view_depth_m(field, v, self.cfg) for v in data.extra]
        target, seen = self._project_views(pts, data, fronts, edge, field)
        mirror = pts * np.array([-1.0, 1.0, 1.0], np.float32)
        mtarget, mseen = self._project_views(mirror, data, fronts, edge, field)
        use_mirror = ~seen & mseen
        target[use_mirror] = mtarget[use_mirror]
        unseen = ~seen & ~mseen
        self._unseen = unseen
        if unseen.any():
            target[unseen] = self.unseen_colour(pts[unseen], target[unseen], data, canon_to_cv)
        return pts, target.astype(np.float32)

    def unseen_colour(self, pts: np.ndarray, edge_colour: np.ndarray, data: FitData, canon_to_cv) -> np.ndarray:
        """The initial colour (N, 3) of canonical points (N, 3) neither the photo nor its mirror sees; here the
        matte-edge colour found along the ray from the head's centre (``edge_colour``)."""
        return edge_colour

    def _project_views(self, pts, data: FitData, fronts: list[np.ndarray], edge, field):
        """Colour (N, 3) and seen (N,) over all views: the seeing view with the largest cosine wins; points no
        view sees get the reference view's edge colour."""
        found = [self._project(pts, v, front, field) for v, front in zip(data.views(), fronts, strict=True)]
        ref_colour, ref_seen, _, ref_pix = found[0]
        edge_colour = edge[ref_pix]
        if len(found) == 1:
            return np.where(ref_seen[:, None], ref_colour, edge_colour), ref_seen
        cos = np.stack([np.where(f[1], f[2], -np.inf) for f in found])
        best = np.argmax(cos, axis=0)
        seen = np.isfinite(cos.max(axis=0))
        colour = np.stack([f[0] for f in found])[best, np.arange(len(pts))]
        return np.where(seen[:, None], colour, edge_colour), seen

    def _project(self, pts, view: FitView, front_m: np.ndarray, field):
        """Photo colour (N, 3) of one view at canonical points (N, 3), whether the view sees them (N,) against
        its z-depth map ``front_m`` (S, S) in metres, the cosine between normal and view ray (N,), and the pixel
        (iv, iu) each point falls in."""
        canon_to_cv = np.linalg.inv(view.cv_to_canon)
        pc = pts @ canon_to_cv[:3, :3].T + canon_to_cv[:3, 3]
        intr = view.intr
        u = intr.fx * pc[:, 0] / pc[:, 2] + intr.cx
        v = intr.fy * pc[:, 1] / pc[:, 2] + intr.cy
        h, w = view.matte.shape
        iu = np.clip(u.astype(np.int64), 0, w - 1)
        iv = np.clip(v.astype(np.int64), 0, h - 1)
        s = similarity_scale(view.cv_to_canon)
        tol = 2.0 * field.voxel / s
        front = front_m[iv, iu]
        seen = (view.matte[iv, iu] > 0.5) & (np.abs(pc[:, 2] - front) < tol) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        # Foreshortened surfaces take the photo only when they face the camera enough.
        n = F.normalize(field.normal_at(torch.from_numpy(pts).to(field.sdf.device)), dim=-1).cpu().numpy()
        ray = pc / np.linalg.norm(pc, axis=1, keepdims=True)
        ray_c = ray @ (view.cv_to_canon[:3, :3] / s).T
        cos = -(n * ray_c).sum(-1)
        seen &= cos > self.options.min_view_cos
        return view.photo[iv, iu], seen, cos, (iv, iu)

    def fit(self, state: FitState, progress=None, cancel=None) -> FitReport:
        return fit_to_photo(state, self.cfg, self.options, progress, cancel)
