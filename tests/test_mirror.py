"""The mirrored virtual view of the photo term (engine.field.model) on an analytic face: a sphere of radius 9 cm
at the canonical origin seen by a photo camera turned 40 degrees toward the subject's left (+x). The photo shows
skin on the side it sees head-on (x > 0) and hair over the far side (x < 0), as when hair falls across the far
cheek of a turned head."""

from __future__ import annotations

import numpy as np
import torch

from engine.field.model import RadianceField, face_region

RES, F_PX, DIST, RADIUS, YAW = 96, 220.0, 0.6, 0.09, np.radians(40.0)
SKIN, HAIR = np.array([0.9, 0.6, 0.5], np.float32), np.array([0.1, 0.08, 0.06], np.float32)


def _camera(yaw: float) -> np.ndarray:
    """canon_from_cv (4, 4) of a cv camera at distance DIST and ``yaw`` (about +y) looking at the origin."""
    c = DIST * np.array([np.sin(yaw), 0.0, np.cos(yaw)])
    z = -c / np.linalg.norm(c)
    y = np.array([0.0, -1.0, 0.0])
    x = np.cross(y, z)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, y, z], 1)
    m[:3, 3] = c
    return m


def _photo_and_depth(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the sphere from the camera: photo (RES, RES, 3) and z-depth (RES, RES) in metres (0: miss)."""
    j, i = np.mgrid[0:RES, 0:RES] + 0.5
    d = np.stack([(i - RES / 2) / F_PX, (j - RES / 2) / F_PX, np.ones_like(i)], -1)  # z-depth 1 per unit t
    dc = d @ m[:3, :3].T
    o = m[:3, 3]
    a = (dc**2).sum(-1)
    b = 2.0 * dc @ o
    disc = b**2 - 4.0 * a * (o @ o - RADIUS**2)
    t = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a), 0.0)
    hit = o + dc * t[..., None]
    photo = np.where((hit[..., 0] > -0.01)[..., None], SKIN, HAIR).astype(np.float32)
    return np.where((disc > 0)[..., None], photo, 1.0).astype(np.float32), t.astype(np.float32)


def _field() -> RadianceField:
    m = _camera(YAW)
    photo, depth = _photo_and_depth(m)
    f = RadianceField(np.zeros(3), 0.15, 48, 16, 4, photo, F_PX, F_PX, RES / 2, RES / 2, m)
    g = f.sdf.shape[-1]
    lin = torch.linspace(-0.15, 0.15, g)
    zz, yy, xx = torch.meshgrid(lin, lin, lin, indexing="ij")
    with torch.no_grad():
        f.sdf.copy_((torch.sqrt(xx**2 + yy**2 + zz**2) - RADIUS)[None, None])
    f.refresh_normals()
    f.set_photo_depth(depth)
    return f


def _ray_from(yaw: float, p: np.ndarray) -> torch.Tensor:
    """Unit direction from a camera at ``yaw`` toward canonical point ``p``."""
    d = p - _camera(yaw)[:3, 3]
    return torch.tensor(d / np.linalg.norm(d), dtype=torch.float32)[None]


# A far-cheek point (x < 0, 20 degrees off the face's axis): the photo sees it 60 degrees off head-on, through
# the "hair"; its mirror image (x > 0) the photo sees almost head-on.
FAR = RADIUS * np.array([-np.sin(np.radians(20.0)), 0.0, np.cos(np.radians(20.0))])
NEAR = FAR * np.array([-1.0, 1.0, 1.0])


def _colour(field: RadianceField, p: np.ndarray, view_dirs) -> np.ndarray:
    with torch.no_grad():
        rgb, v = field.photo_term(torch.tensor(p[None], dtype=torch.float32), view_dirs)
    assert float(v[0]) > 0.9
    return rgb[0].numpy()


def test_far_cheek_seen_from_the_far_side_is_the_mirrored_skin():
    field = _field()
    assert np.allclose(_colour(field, FAR, _ray_from(-YAW, FAR)), SKIN, atol=0.02)
    # Without a viewing direction (the texture bake) the point is seen along its normal: the mirror wins too.
    assert np.allclose(_colour(field, FAR, None), SKIN, atol=0.05)


def test_photo_camera_still_sees_the_photo():
    field = _field()
    # From the photo's own camera the far cheek is exactly the photo's pixel (the input view is unchanged) ...
    assert np.allclose(_colour(field, FAR, _ray_from(YAW, FAR)), HAIR, atol=1e-3)
    # ... and the side the photo sees head-on never takes the mirror's colour, from anywhere.
    for yaw in (YAW, 0.0, -YAW):
        assert np.allclose(_colour(field, NEAR, _ray_from(yaw, NEAR)), SKIN, atol=1e-3)


def test_mirror_fill_off_is_the_plain_photo_term():
    field = _field()
    field.mirror_fill = False
    assert np.allclose(_colour(field, FAR, _ray_from(-YAW, FAR)), HAIR, atol=1e-3)


def test_face_region_is_the_front_of_the_face():
    pts = torch.tensor([[0.0, -0.03, 0.11], [0.05, 0.01, 0.07], [0.0, 0.0, -0.09], [0.11, 0.0, 0.0], [0.0, 0.2, 0.05]])
    r = face_region(pts)
    assert r[0] == 1.0 and r[1] == 1.0
    assert r[2] == 0.0 and r[3] == 0.0 and r[4] == 0.0
