"""The fast renderer against its dense twin, on an analytic sphere and on a built avatar."""

from __future__ import annotations

import numpy as np
import torch

from engine.conventions import Intrinsics, orbit_camera_gl
from engine.field.model import RadianceField
from engine.render.renderer import RenderOptions, render_image


def sphere_field(radius=0.1, res=64) -> RadianceField:
    photo = np.full((32, 32, 3), 0.5, np.float32)
    f = RadianceField(np.zeros(3), 0.2, res, 32, 4, photo, 30.0, 30.0, 16.0, 16.0, np.eye(4))
    lin = torch.linspace(-0.2, 0.2, res)
    zz, yy, xx = torch.meshgrid(lin, lin, lin, indexing="ij")
    with torch.no_grad():
        f.sdf.copy_((torch.sqrt(xx**2 + yy**2 + zz**2) - radius)[None, None])
        f.planes.normal_(0, 0.5)
    f.refresh_normals()
    return f


def test_fast_path_matches_dense_twin_on_sphere():
    field = sphere_field()
    cam = orbit_camera_gl(20.0, 10.0, 0.6)
    intr = Intrinsics.from_fov(40.0, 64, 64)
    fast = render_image(field, cam, intr, RenderOptions(n_coarse=48, n_fine=16, learned_only=True))
    dense = render_image(field, cam, intr, RenderOptions(dense=True, n_dense=1024, learned_only=True))
    assert np.abs(fast["alpha"] - dense["alpha"]).mean() < 0.01
    both = (fast["alpha"] > 0.5) & (dense["alpha"] > 0.5)
    assert both.sum() > 500
    assert np.abs(fast["depth_m"] - dense["depth_m"])[both].max() < 0.004
    assert np.abs(fast["rgb"] - dense["rgb"])[both].mean() < 0.01
    # The silhouette is the sphere at the field's surface level (radius 0.1 + level) seen from 0.6 m.
    r = 0.1 + field.surface_level
    r_px = intr.fy * r / np.sqrt(0.6**2 - r**2)
    assert abs((dense["alpha"] > 0.5).sum() - np.pi * r_px**2) / (np.pi * r_px**2) < 0.03
    # z-depth of the nearest point is distance - radius.
    assert abs(dense["depth_m"][both].min() - 0.5) < 0.01


def test_gradients_flow_to_density_and_colour():
    from engine.render.renderer import render_rays

    field = sphere_field()
    o = torch.tensor([[0.0, 0.0, 0.6]]).repeat(8, 1)
    d = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, -1.0]]) + 0.05 * torch.randn(8, 3), dim=-1)
    rgb, alpha, t = render_rays(field, o, d, RenderOptions(learned_only=True))
    (rgb.sum() + alpha.sum() + t.sum()).backward()
    assert field.sdf.grad.abs().sum() > 0 and field.planes.grad.abs().sum() > 0


def test_bundle_fast_vs_dense(draft_bundle):
    from engine.avatar import load_avatar

    av = load_avatar(draft_bundle)
    cam, intr = av.orbit(20.0, 5.0, 96)
    fast = av.render(cam, intr)
    dense = av.render(cam, intr, RenderOptions(dense=True, n_dense=768))
    assert np.abs(fast["alpha"] - dense["alpha"]).mean() < 0.02
    both = (fast["alpha"] > 0.5) & (dense["alpha"] > 0.5)
    assert np.abs(fast["rgb"] - dense["rgb"])[both].mean() < 0.03
