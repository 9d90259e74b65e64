"""Multi-view fitting on an analytic scene: a sphere (radius 0.1 m) 1 m in front of the reference camera, whose
one-view proxy is a cylinder 0.3 m deep; a second camera looking from the side (+x) sees the sphere's disc and
so carves the cylinder's ends, which the reference view cannot."""

from __future__ import annotations

import numpy as np
import torch

from engine.config import BuildConfig
from engine.conventions import Intrinsics
from engine.field.model import RadianceField
from engine.fit.data import FitData, FitView, view_depth_m
from engine.fit.proxy_init import ProxyInitFit
from engine.fit.views import ref_cv_from_cam_cv, triangulate_depth
from engine.proxy.head import HeadProxy

RES, F_PX, DEPTH_M, RADIUS_M = 48, 150.0, 1.0, 0.1
CFG = BuildConfig(
    quality="draft", device="cpu", work_res=RES, grid_res=32, plane_res=16, init_steps=10, iterations=20,
    rays_per_step=512, n_coarse=24, n_fine=6,
)  # fmt: skip
INTR = Intrinsics(F_PX, F_PX, RES / 2, RES / 2, RES, RES)


def _disc(offset_m=(0.0, 0.0)) -> np.ndarray:
    """Matte (RES, RES) of the sphere seen from 1 m: a disc of radius f r / d pixels."""
    j, i = np.mgrid[0:RES, 0:RES] + 0.5
    u0, v0 = RES / 2 + F_PX * offset_m[0], RES / 2 + F_PX * offset_m[1]
    return ((i - u0) ** 2 + (j - v0) ** 2 <= (F_PX * RADIUS_M / DEPTH_M) ** 2).astype(np.float32)


def _scene():
    """Reference view (cv camera = canonical shifted by 1 m), the side view at canonical +x looking at the
    origin, and the cylinder proxy of the reference matte."""
    ref_to_canon = np.eye(4)
    ref_to_canon[2, 3] = -DEPTH_M
    side_to_canon = np.eye(4)
    side_to_canon[:3, :3] = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # cv z -> canon -x
    side_to_canon[:3, 3] = [DEPTH_M, 0.0, 0.0]
    matte = _disc()
    front = np.where(matte > 0.5, DEPTH_M - 0.15, DEPTH_M).astype(np.float32)
    back = np.where(matte > 0.5, DEPTH_M + 0.15, DEPTH_M).astype(np.float32)
    proxy = HeadProxy(front, back, matte > 0.5, INTR, DEPTH_M)
    blue = np.broadcast_to(np.array([0.1, 0.2, 0.9], np.float32), (RES, RES, 3)).copy()
    red = np.broadcast_to(np.array([0.9, 0.1, 0.1], np.float32), (RES, RES, 3)).copy()
    side = FitView(red, _disc(), INTR, side_to_canon)
    return FitData(blue, matte, proxy, INTR, ref_to_canon), side


def _field(extra_views: int = 0) -> RadianceField:
    data, _ = _scene()
    return RadianceField(
        np.zeros(3), 0.2, CFG.grid_res, CFG.plane_res, CFG.plane_channels, data.photo, F_PX, F_PX, RES / 2, RES / 2,
        data.cv_to_canon, extra_views=extra_views,
    )  # fmt: skip


def _fitted(two_views: bool, fit: bool = False) -> tuple[RadianceField, FitData, FitView]:
    """The field initialised (and with ``fit``, fitted) from the reference view alone or with the side view."""
    torch.manual_seed(0)
    data, side = _scene()
    if two_views:
        data.extra = (side,)
    field = _field()
    method = ProxyInitFit(CFG)
    state = method.init(field, data)
    if fit:
        method.fit(state)
    return field, data, side


def _sdf(field: RadianceField, p) -> float:
    with torch.no_grad():
        return float(field.sdf_at(torch.tensor([p], dtype=torch.float32))[0])


def test_second_view_matte_carves_the_proxy():
    one, _, _ = _fitted(False)
    two, _, _ = _fitted(True)
    # Inside the cylinder, outside the sphere's side silhouette: only the side view can remove it.
    for p in ((0.0, 0.0, 0.13), (0.0, 0.0, -0.13)):
        assert _sdf(one, p) < 0.0 < _sdf(two, p)
    assert _sdf(one, (0.0, 0.0, 0.0)) < 0.0 and _sdf(two, (0.0, 0.0, 0.0)) < 0.0


def test_two_view_fit_matches_the_side_silhouette():
    ious = []
    for two_views in (False, True):
        field, _, side = _fitted(two_views, fit=True)
        seen = view_depth_m(field, side, CFG) > 0
        truth = side.matte > 0.5
        ious.append((seen & truth).sum() / (seen | truth).sum())
    assert ious[1] > 0.75 and ious[1] > ious[0] + 0.2, ious


def test_photo_term_takes_the_view_that_sees_the_point():
    field, data, side = _fitted(True)
    two = _field(extra_views=1)
    two.load_state_dict({**two.state_dict(), "sdf": field.sdf.detach(), "normals": field.normals})
    two.set_extra_view(0, side.photo, (F_PX, F_PX, RES / 2, RES / 2), side.cv_to_canon)
    two.set_photo_depth(view_depth_m(two, data.views()[0], CFG), view=0)
    two.set_photo_depth(view_depth_m(two, side, CFG), view=1)
    with torch.no_grad():
        rgb, v = two.photo_term(torch.tensor([[0.095, 0.0, 0.0], [0.0, 0.0, -0.095]]))
    # The side of the sphere (+x) faces the side camera (red); its pole toward the reference camera
    # (canonical -z, the reference cv camera looks down +z from z = -1) shows the reference photo (blue).
    assert v[0] > 0.5 and rgb[0, 0] > 0.8 and rgb[0, 2] < 0.2
    assert v[1] > 0.5 and rgb[1, 2] > 0.8 and rgb[1, 0] < 0.2


def test_single_view_path_is_unchanged():
    field = _field()
    assert not any(k.startswith("extra") for k in field.state_dict()) and field.n_extra_views == 0
    data, _ = _scene()
    assert data.extra == () and len(data.views()) == 1
    # The single-view photo term is the reference photo's, visibility-weighted, and nothing else.
    field.set_photo_depth(np.full((RES, RES), DEPTH_M - RADIUS_M, np.float32))
    with torch.no_grad():
        rgb, _ = field.photo_term(torch.tensor([[0.0, 0.0, -0.1]]))
    assert torch.allclose(rgb[0], torch.tensor([0.1, 0.2, 0.9]), atol=1e-6)


def test_relative_camera_and_triangulation():
    # A camera 0.3 m to the right of the reference, turned 15 degrees back toward the axis; a point 1 m ahead.
    a = np.radians(15.0)
    rel_gl = np.eye(4)
    rel_gl[:3, :3] = [[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]]
    rel_gl[:3, 3] = [0.3, 0.0, 0.0]
    m = ref_cv_from_cam_cv(rel_gl)
    point = np.array([[0.02, -0.01, 1.0]])
    in_cam = (point - m[:3, 3]) @ m[:3, :3]  # reference cv -> extra cv
    d1 = (in_cam / in_cam[:, 2:]) @ m[:3, :3].T
    assert np.allclose(triangulate_depth(point / point[:, 2:], d1, m[:3, 3]), [1.0])
    assert np.allclose(ref_cv_from_cam_cv(rel_gl, 2.0)[:3, 3], 2.0 * m[:3, 3])
