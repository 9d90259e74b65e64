"""ProxyInitFit: initialise the field from the head proxy, then fit it to the photo.

A *method* is an object with ``init(field, data)`` and ``fit(field, data, progress, cancel)``; learned
initialisations from the papers (meta-learned priors, a feed-forward triplane encoder) slot in beside this one
by replacing ``init``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from engine.config import BuildConfig
from engine.conventions import Intrinsics, cam2world_cv_to_gl
from engine.errors import Cancelled
from engine.field.model import RadianceField
from engine.proxy.head import HeadProxy, matte_covers_cv
from engine.render.rays import camera_rays_world
from engine.render.renderer import RenderOptions, render_image, render_rays


@dataclass(frozen=True)
class FitView:
    """One training view: ``photo`` (S, S, 3) and ``matte`` (S, S) in [0, 1], ``intr`` its work camera,
    ``cv_to_canon`` 4x4 similarity from its cv camera (metres) to the canonical frame."""

    photo: np.ndarray
    matte: np.ndarray
    intr: Intrinsics
    cv_to_canon: np.ndarray


@dataclass
class FitData:
    """The training views. The reference view (``photo``, ``matte``, ``intr``, ``cv_to_canon`` as in
    :class:`FitView`) defines the canonical frame and carries the ``proxy`` (in its work camera); ``extra``
    holds further views with known cameras (empty for the single-photo build)."""

    photo: np.ndarray
    matte: np.ndarray
    proxy: HeadProxy
    intr: Intrinsics
    cv_to_canon: np.ndarray
    extra: tuple[FitView, ...] = ()

    def views(self) -> list[FitView]:
        """All views, the reference first."""
        return [FitView(self.photo, self.matte, self.intr, self.cv_to_canon), *self.extra]


def similarity_scale(m: np.ndarray) -> float:
    """The uniform scale s of a 4x4 similarity ``s R x + t``."""
    return float(np.cbrt(abs(np.linalg.det(np.asarray(m, np.float64)[:3, :3]))))


def view_cam2world_gl(view: FitView) -> np.ndarray:
    """gl cam2world (4, 4) of a view in the world frame (world = canonical / scale, metres)."""
    m = np.asarray(view.cv_to_canon, np.float64)
    s = similarity_scale(m)
    world_from_cv = np.eye(4)
    world_from_cv[:3, :3] = m[:3, :3] / s
    world_from_cv[:3, 3] = m[:3, 3] / s
    return cam2world_cv_to_gl(world_from_cv)


def view_depth_m(field: RadianceField, view: FitView, cfg: BuildConfig) -> np.ndarray:
    """The field's z-depth (S, S) in metres (0 where empty) seen from a view's work camera (learned colour
    only: depth does not depend on colour)."""
    m = np.asarray(view.cv_to_canon, np.float64)
    s = similarity_scale(m)
    opts = RenderOptions(cfg.n_coarse, cfg.n_fine, learned_only=True)
    with torch.no_grad():
        return render_image(field, view_cam2world_gl(view), view.intr, opts, s)["depth_m"]


def _canon_rays(data: FitData | FitView) -> tuple[np.ndarray, np.ndarray]:
    """Canonical origins and unit directions (S*S, 3) of every work-camera pixel of one view."""
    eye = np.eye(4)
    o, d, _ = camera_rays_world(np.diag([1.0, -1.0, -1.0, 1.0]) @ eye, data.intr)  # cv camera == 'world' here
    m = data.cv_to_canon
    s = similarity_scale(m)
    oc = o @ m[:3, :3].T + m[:3, 3]
    dc = d @ (m[:3, :3] / s).T
    return oc, dc


def _ray_table(data: FitData) -> tuple[np.ndarray, ...]:
    """Every work-camera pixel of every view, concatenated (reference first), float32 unless noted: canonical
    origins and unit directions (R, 3), photo (R, 3), matte (R,), the proxy's front as canonical ray distance
    (R,; NaN outside the reference view), near-matte (R,) bool (the matte dilated by 4 pixels) and the matte's
    edge band (R,) bool (3 pixels either side of its 0.5 contour)."""
    cols: list[list[np.ndarray]] = [[] for _ in range(7)]
    for k, view in enumerate(data.views()):
        oc, dc = _canon_rays(view)
        if k == 0:
            s = similarity_scale(view.cv_to_canon)
            _, _, zpt = camera_rays_world(np.diag([1.0, -1.0, -1.0, 1.0]), view.intr)
            proxy = (data.proxy.front_m.reshape(-1) / zpt * s).astype(np.float32)
        else:
            proxy = np.full(view.matte.size, np.nan, np.float32)
        inside = view.matte > 0.5
        near = ndi.binary_dilation(inside, iterations=4).reshape(-1)
        core = ndi.binary_erosion(inside, iterations=3).reshape(-1)
        edge = ndi.binary_dilation(inside, iterations=3).reshape(-1) & ~core
        parts = (oc, dc, view.photo.reshape(-1, 3), view.matte.reshape(-1), proxy, near, edge)
        for col, part in zip(cols, parts, strict=True):
            col.append(part)
    out = [np.concatenate(c).astype(np.float32) for c in cols[:5]]
    return (*out, np.concatenate(cols[5]), np.concatenate(cols[6]))


def proxy_sdf_grid(
    proxy: HeadProxy, field: RadianceField, canon_to_cv: np.ndarray, carve: tuple[FitView, ...] = ()
) -> np.ndarray:
    """Signed distance (canonical units) of the proxy on the field's grid, indexed [z, y, x]; with ``carve``
    views, the proxy is cut to their mattes too (a visual hull: occupied only where every view's matte is)."""
    g = field.sdf.shape[-1]
    lin = np.linspace(-1.0, 1.0, g)
    zz, yy, xx = np.meshgrid(lin, lin, lin, indexing="ij")
    pts = np.stack([xx, yy, zz], -1).reshape(-1, 3) * float(field.box_half) + field.box_center.cpu().numpy()
    pc = pts @ canon_to_cv[:3, :3].T + canon_to_cv[:3, 3]
    occ = proxy.occupancy_cv(pc)
    for view in carve:
        to_cv = np.linalg.inv(view.cv_to_canon)
        occ &= matte_covers_cv(pts @ to_cv[:3, :3].T + to_cv[:3, 3], view.matte, view.intr)
    occ = occ.reshape(g, g, g)
    occ = ndi.binary_opening(occ, iterations=1)
    lab, n = ndi.label(occ)
    if n > 1:
        sizes = ndi.sum(occ, lab, range(1, n + 1))
        occ = lab == (1 + int(np.argmax(sizes)))
    vox = field.voxel
    dist_out = ndi.distance_transform_edt(~occ)
    dist_in = ndi.distance_transform_edt(occ)
    sdf = (dist_out - dist_in + np.where(occ, 0.5, -0.5)) * vox
    return ndi.gaussian_filter(sdf, 0.8).astype(np.float32)


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

    name = "proxy-init-fit"

    def __init__(self, cfg: BuildConfig) -> None:
        self.cfg = cfg

    # ------------------------------------------------------------------ init
    def init(self, field: RadianceField, data: FitData, progress=None, cancel=None) -> dict:
        t0 = time.perf_counter()
        canon_to_cv = np.linalg.inv(data.cv_to_canon)
        sdf = proxy_sdf_grid(data.proxy, field, canon_to_cv, data.extra)
        with torch.no_grad():
            field.sdf.copy_(torch.from_numpy(sdf)[None, None].to(field.sdf.device))
        field.refresh_normals()
        pts, target = self._colour_targets(field, data, canon_to_cv, sdf)
        gen = torch.Generator().manual_seed(self.cfg.seed)
        with torch.no_grad():
            field.planes.copy_(torch.randn(field.planes.shape, generator=gen) * 0.01)
        opt = torch.optim.Adam([{"params": [field.planes], "lr": 0.03}, {"params": field.mlp.parameters(), "lr": 0.01}])
        steps = self.cfg.init_steps
        loss = torch.zeros(())
        dev = field.sdf.device
        pts_t, tgt_t = torch.from_numpy(pts).to(dev), torch.from_numpy(target).to(dev)
        self._prior = (pts_t, tgt_t)
        for i in range(steps):
            idx = torch.randint(0, len(pts_t), (min(16384, len(pts_t)),), generator=gen).to(dev)
            loss = F.mse_loss(field.learned_colour(pts_t[idx]), tgt_t[idx]) + 1e-2 * _tv2(field.planes)
            opt.zero_grad()
            loss.backward()
            opt.step()
            _tick(progress, cancel, "init", (i + 1) / steps)
        return {"init_s": time.perf_counter() - t0, "init_colour_mse": float(loss.detach())}

    def _colour_targets(self, field, data: FitData, canon_to_cv: np.ndarray, sdf: np.ndarray):
        """Near-surface canonical points and their initial colour: the photo of the view that sees the point
        most head-on, else of the view that sees the mirrored point, else the reference matte's edge colour."""
        vox = field.voxel
        zi, yi, xi = np.nonzero(np.abs(sdf) < 1.5 * vox)
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
        return pts, target.astype(np.float32)

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
        n = F.normalize(field._grid(field.normals, torch.from_numpy(pts).to(field.sdf.device)), dim=-1).cpu().numpy()
        ray = pc / np.linalg.norm(pc, axis=1, keepdims=True)
        ray_c = ray @ (view.cv_to_canon[:3, :3] / s).T
        cos = -(n * ray_c).sum(-1)
        seen &= cos > 0.25
        return view.photo[iv, iu], seen, cos, (iv, iu)

    # ------------------------------------------------------------------ fit
    def fit(self, field: RadianceField, data: FitData, progress=None, cancel=None) -> dict:
        cfg = self.cfg
        t0 = time.perf_counter()
        dev = field.sdf.device
        oc_t, dc_t, photo, matte, proxy_t, near_matte, edge = (torch.from_numpy(a).to(dev) for a in _ray_table(data))
        has_proxy = torch.isfinite(proxy_t)
        fg_idx = torch.nonzero(near_matte)[:, 0]
        edge_idx = torch.nonzero(edge)[:, 0]
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        opts = RenderOptions(n_coarse=cfg.n_coarse, n_fine=cfg.n_fine, learned_only=True)
        opt = torch.optim.Adam(
            [
                {"params": [field.sdf], "lr": 0.02 * field.voxel},
                {"params": [field.planes], "lr": 0.01},
                {"params": field.mlp.parameters(), "lr": 0.003},
            ]
        )
        n_edge = int(cfg.rays_per_step * cfg.edge_ray_frac) if len(edge_idx) else 0
        n_fg = int(cfg.rays_per_step * 0.8) - n_edge
        sym_pts = self._surface_points(field, 20000, gen)
        prior_pts, prior_rgb = self._prior
        history = []
        for i in range(cfg.iterations):
            idx = torch.cat(
                [
                    fg_idx[torch.randint(0, len(fg_idx), (n_fg,), generator=gen).to(dev)],
                    edge_idx[torch.randint(0, max(1, len(edge_idx)), (n_edge,), generator=gen).to(dev)],
                    torch.randint(0, len(photo), (cfg.rays_per_step - n_fg,), generator=gen).to(dev),
                ]
            )
            rgb, alpha, tdep = render_rays(field, oc_t[idx], dc_t[idx], opts, jitter=True)
            m = matte[idx]
            fg = m > 0.5
            # Colour against the photo where the person is (alpha is fitted to the matte separately, so a
            # soft matte edge does not darken the colours).
            l_rgb = F.mse_loss(rgb[fg], photo[idx][fg] * alpha[fg, None].detach()) if fg.any() else rgb.sum() * 0
            l_alpha = F.binary_cross_entropy(alpha.clamp(1e-4, 1 - 1e-4), alpha_target(m))
            fd = fg & has_proxy[idx]  # the proxy's depth is known in the reference view only
            l_depth = ((tdep[fd] - proxy_t[idx][fd]).abs() / field.voxel).clamp(max=10).mean() if fd.any() else 0.0
            sp = sym_pts[torch.randint(0, len(sym_pts), (4096,), generator=gen).to(dev)]
            mir = sp * torch.tensor([-1.0, 1.0, 1.0], device=dev)
            l_sym = (field.learned_colour(sp) - field.learned_colour(mir)).abs().mean()
            pi = torch.randint(0, len(prior_pts), (4096,), generator=gen).to(dev)
            l_prior = (field.learned_colour(prior_pts[pi]) - prior_rgb[pi]).abs().mean()
            l_tv = 1e-2 * _tv2(field.planes) + 1e-2 * _tv3(field.sdf / field.voxel)
            loss = l_rgb + 0.1 * l_alpha + 0.01 * l_depth + 0.02 * l_sym + 0.02 * l_prior + l_tv
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i % 25 == 0 or i == cfg.iterations - 1:
                history.append({"step": i, "loss": float(loss.detach()), "rgb_mse": float(l_rgb.detach())})
            _tick(progress, cancel, "fit", (i + 1) / max(1, cfg.iterations))
        field.refresh_normals()
        return {"fit_s": time.perf_counter() - t0, "history": history}

    def _surface_points(self, field, n, gen):
        with torch.no_grad():
            g = field.sdf.shape[-1]
            sdf = field.sdf[0, 0]
            idx = torch.nonzero(sdf.abs() < 1.5 * field.voxel)
            pick = idx[torch.randint(0, len(idx), (n,), generator=gen).to(idx.device)].float()
            unit = -1.0 + 2.0 * pick[:, [2, 1, 0]] / (g - 1)
            return unit * field.box_half + field.box_center


# The selfie matte is soft over several pixels (0.7-0.9 a few pixels inside hair, a faint tail outside). Fitted
# as is, cross-entropy balances the alpha's total against the matte's (a logistic fit's optimum), and the
# deficit inside pulls the outline 1-3 px inside the matte's 0.5 contour all round (singnet_woman_portrait: 2.9 px,
# input-view PSNR 29.7 dB). The target is the matte steepened about 0.5 by this factor, which centres the outline
# on the contour (0.8 px) and keeps a soft edge (32.8 dB); steeper (6) fits no better. scripts/outline.py measures it.
MATTE_STEEPEN = 3.0


def alpha_target(matte: torch.Tensor) -> torch.Tensor:
    """The alpha the fit aims for at a pixel whose matte is ``matte`` (above)."""
    return ((matte - 0.5) * MATTE_STEEPEN + 0.5).clamp(0.0, 1.0)


def _tv2(p: torch.Tensor) -> torch.Tensor:
    return (p[..., 1:, :] - p[..., :-1, :]).pow(2).mean() + (p[..., :, 1:] - p[..., :, :-1]).pow(2).mean()


def _tv3(v: torch.Tensor) -> torch.Tensor:
    return sum((v.diff(dim=d)).pow(2).mean() for d in (2, 3, 4))


def _tick(progress, cancel, stage: str, frac: float) -> None:
    if cancel is not None and cancel():
        raise Cancelled("the build was cancelled")
    if progress is not None:
        progress(stage, frac)
