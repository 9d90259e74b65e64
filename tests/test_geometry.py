"""Pure geometry: Umeyama, conventions, rasteriser, marching cubes on an analytic sphere, UV unwrap."""

from __future__ import annotations

import numpy as np
import torch

from engine.conventions import (
    Intrinsics,
    blender_to_engine_matrix,
    cam2world_cv_to_gl,
    cam2world_gl_to_cv,
    engine_to_blender_matrix,
    orbit_camera_gl,
    project_points,
)
from engine.extract.mesh import clean_mesh, marching_cubes, sample_grid
from engine.extract.raster import rasterize
from engine.extract.uv import spherical_unwrap
from engine.proxy.canonical import Similarity, umeyama


def _rot(axis, deg):
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    x, y, z = axis / np.linalg.norm(axis)
    return np.array(
        [
            [c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
            [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
            [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)],
        ]
    )


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    true = Similarity(1.7, _rot(np.array([1.0, 2.0, 0.5]), 40.0), np.array([0.3, -2.0, 5.0]))
    fit = umeyama(src, true.apply(src))
    assert abs(fit.scale - 1.7) < 1e-9
    assert np.allclose(fit.rotation, true.rotation, atol=1e-9)
    assert np.allclose(fit.inverse().apply(true.apply(src)), src, atol=1e-9)


def test_camera_conventions_round_trip():
    c2w = orbit_camera_gl(30.0, 10.0, 1.2)
    assert np.allclose(cam2world_cv_to_gl(cam2world_gl_to_cv(c2w)), c2w)
    assert np.allclose(engine_to_blender_matrix() @ blender_to_engine_matrix(), np.eye(4))
    # The camera looks at the origin: it projects to the principal point, in front of the camera.
    intr = Intrinsics.from_fov(30.0, 200, 100)
    uv, z = project_points(np.zeros((1, 3)), c2w, intr)
    assert np.allclose(uv[0], [100.0, 50.0]) and abs(z[0] - 1.2) < 1e-9
    # yaw +30 moves the camera toward the subject's left (+X); the head faces +Z -> Blender -Y.
    assert c2w[0, 3] > 0 and c2w[2, 3] > 0
    assert np.allclose(engine_to_blender_matrix()[:3, :3] @ [0, 0, 1], [0, -1, 0])


def test_rasterizer_covers_triangle_area():
    xy = np.array([[10.0, 10.0], [90.0, 10.0], [10.0, 90.0], [90.0, 90.0]])
    fid, bary = rasterize(xy, np.zeros(4), np.array([[0, 1, 2], [1, 3, 2]]), 100, 100)
    assert abs((fid >= 0).sum() - 80 * 80) <= 2 * 80
    assert np.allclose(bary[fid >= 0].sum(1), 1.0, atol=1e-5)


def test_rasterizer_depth_test():
    xy = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]] * 2)
    z = np.array([2.0, 2.0, 2.0, 1.0, 1.0, 1.0])
    fid, _ = rasterize(xy, z, np.array([[0, 1, 2], [3, 4, 5]]), 50, 50)
    assert set(np.unique(fid[fid >= 0])) == {1}


def test_marching_cubes_sphere_area():
    r = 0.5
    lo, hi = np.array([-1.0] * 3), np.array([1.0] * 3)
    vals = sample_grid(lambda p: p.norm(dim=-1) - r, lo, hi, 96)
    v, f = marching_cubes(vals, 0.0, lo, hi)
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
    assert abs(area - 4 * np.pi * r**2) / (4 * np.pi * r**2) < 0.01
    # Outward winding: the signed volume is positive.
    vol = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0
    assert abs(vol - 4 / 3 * np.pi * r**3) / (4 / 3 * np.pi * r**3) < 0.02
    v2, f2 = clean_mesh(v, f, max_faces=5000)
    assert len(f2) <= 5000 and np.abs(np.linalg.norm(v2, axis=1) - r).max() < 0.02


def test_spherical_unwrap_splits_the_back_seam():
    lo, hi = np.array([-1.0] * 3), np.array([1.0] * 3)
    vals = sample_grid(lambda p: p.norm(dim=-1) - 0.5, lo, hi, 48)
    v, f = marching_cubes(vals, 0.0, lo, hi)
    v2, f2, uv, src = spherical_unwrap(v, f)
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    assert len(v2) > len(v)  # seam vertices were split
    span = uv[f2][:, :, 0].max(1) - uv[f2][:, :, 0].min(1)
    assert span.max() < 0.5  # no triangle wraps around the map
    # The face (+Z) sits in the middle of the map.
    front = np.argmax(v2[:, 2])
    assert abs(uv[front, 0] - 0.5) < 0.05
    assert torch.is_tensor(torch.as_tensor(uv))
    assert np.array_equal(np.unique(f2), np.arange(len(v2)))  # no loose vertex
    np.testing.assert_allclose(v2, v[src])


def test_spherical_unwrap_leaves_no_loose_vertex_at_the_seam():
    # a boundary vertex at the back (phi just below -pi... +pi, x < 0) in a fan whose other corners all have x > 0:
    # every triangle of it crosses the seam, so it is duplicated past +pi in all of them, and the original, now in
    # no triangle, must be dropped
    ring = [(0.3 * np.sin(a) + 0.001, 0.3 * np.cos(a), -1.0) for a in np.linspace(0, np.pi, 5)]
    v = np.array([(-0.001, 0.0, -1.0), *ring, (0.0, 0.0, 1.0), (0.1, 0.0, 1.0)])
    f = np.array([[0, 1 + k, 2 + k] for k in range(4)] + [[6, 7, 1]])
    v2, f2, uv, src = spherical_unwrap(v, f)
    assert np.array_equal(np.unique(f2), np.arange(len(v2)))
    np.testing.assert_allclose(v2[f2], v[f])  # the same triangles in space
    assert (uv[f2][:, :, 0].max(1) - uv[f2][:, :, 0].min(1)).max() < 0.5


def test_zbuffer_keeps_the_nearest_triangle():
    from engine.face.mesh import zbuffer_depth

    uv = np.array([[0, 0], [20, 0], [0, 20], [0, 0], [20, 0], [0, 20]], float)
    z = np.array([1.0, 1.0, 1.0, 0.5, 0.5, 2.0])  # the second triangle tilts: nearer at the top, farther below
    d = zbuffer_depth(uv, z, np.array([[0, 1, 2], [3, 4, 5]]), (24, 24))
    assert np.isnan(d[22, 22]) and np.isnan(d[19, 19])  # outside both triangles
    assert abs(d[0, 0] - 0.5 - 1.5 * 0.5 / 20) < 1e-9  # top: the tilted triangle is in front
    assert abs(d[15, 2] - 1.0) < 1e-9  # lower down the flat one is
    ys, xs = np.nonzero(np.isfinite(d))
    assert ((xs + 0.5) + (ys + 0.5) <= 20 + 1e-9).all()


def test_turned_face_depth_is_the_visible_surface():
    """A face turned 50 degrees: the proxy's face depth is the mesh's front surface, never averaged with the far
    cheek folded behind the nose (what interpolating over the landmarks' 2D layout did)."""
    from engine.config import preset
    from engine.face.analysis import analyse
    from engine.face.mesh import mesh_triangles, zbuffer_depth
    from engine.io.images import demo_photo
    from engine.proxy.head import face_depth

    an = analyse(demo_photo(), preset("draft"))
    lm = an.pose.landmarks_cv - an.pose.landmarks_cv.mean(0)
    turned = lm @ _rot(np.array([0.0, 1.0, 0.0]), 50).T + np.array([0.0, 0.0, 0.6])
    f = 600.0
    uv = turned[:, :2] / turned[:, 2:] * f + 128.0
    d = face_depth(uv, turned[:, 2], (256, 256))
    ref = zbuffer_depth(uv[:468], turned[:468, 2], mesh_triangles(), (256, 256))
    both = np.isfinite(ref)
    assert np.allclose(d[both], ref[both])
    # Nothing is open inside the face outline (eyes and mouth filled).
    import scipy.ndimage as ndi

    face = np.isfinite(d)
    assert (ndi.binary_fill_holes(face) == face).all()
    # No landmark lies in front of the surface (interpolating the folded 2D layout put it up to 14 mm behind
    # the nose and brow here; the 3x3 minimum allows for a landmark next to a depth step).
    near = ndi.minimum_filter(np.nan_to_num(d, nan=9.0), 3)
    iu = uv[:468].astype(int)
    assert (near[iu[:, 1], iu[:, 0]] - turned[:468, 2]).max() < 0.006


def test_input_view_score_ignores_the_photos_frame_edge():
    """A tight portrait cuts the head at the photo's edge: the render's rounded outline there is not a fitting
    error. Scores use the photo's pixels at least 3 px inside its frame; the crop's own border does not count."""
    from engine.metrics import input_view_scores

    s = 64
    photo = np.full((s, s, 3), 0.8)
    matte = np.zeros((s, s))
    matte[8:56, 0:40] = 1.0  # the head runs into the photo's left edge (column 0 is the first in-photo pixel)
    in_photo = np.ones((s, s), bool)
    alpha = matte.copy()
    alpha[:, 0:3] = 0.0  # the render rounds off where the photo cut the head
    render = {"rgb": photo * alpha[..., None], "alpha": alpha}
    assert input_view_scores(render, photo, matte)["psnr_db"] < 30.0  # the whole matte: the cut counts
    # the same scene with the photo's frame 10 px in from the crop's left edge: that band is padding
    matte2 = np.zeros((s, s))
    matte2[8:56, 10:50] = 1.0
    alpha2 = matte2.copy()
    alpha2[:, 10:13] = 0.0
    in_photo2 = np.zeros((s, s), bool)
    in_photo2[:, 10:] = True
    r2 = {"rgb": photo * alpha2[..., None], "alpha": alpha2}
    assert input_view_scores(r2, photo, matte2)["psnr_db"] < 30.0
    assert input_view_scores(r2, photo, matte2, in_photo2)["psnr_db"] == float("inf")
    # the crop's own border is not a frame edge: a photo covering the whole crop changes nothing
    assert (
        input_view_scores(render, photo, matte, in_photo)["psnr_db"]
        == input_view_scores(render, photo, matte)["psnr_db"]
    )


def test_unwrap_gives_the_body_its_own_chart():
    """A head on a neck on wide shoulders: from the head's centre the chin's underside, the neck and the shoulders'
    top lie on the same rays, so one spherical chart folds them over each other; with the body below the chin in
    its own cylindrical chart nothing folds, the charts do not overlap and every triangle is where it was."""

    def sdf(p):
        head = p.norm(dim=-1) - 0.1
        r = torch.sqrt(p[..., 0] ** 2 + p[..., 2] ** 2)
        neck = torch.maximum(r - 0.05, (p[..., 1] + 0.14).abs() - 0.06)
        q = (p - torch.tensor([0.0, -0.24, 0.0])) / torch.tensor([0.22, 0.07, 0.12])
        shoulders = (q.norm(dim=-1) - 1.0) * 0.07
        return torch.minimum(torch.minimum(head, neck), shoulders)

    lo, hi = np.array([-0.25, -0.33, -0.15]), np.array([0.25, 0.12, 0.15])
    v, f = marching_cubes(sample_grid(sdf, lo, hi, 64), 0.0, lo, hi)
    v, f = np.asarray(v, np.float64), np.asarray(f)

    from engine.extract.uv import folded_area as folded

    one = spherical_unwrap(v, f)
    two = spherical_unwrap(v, f, body_below=-0.09)
    assert folded(*one[:3]) > 0.05  # the shoulders' top and the neck fold over in one spherical chart
    v2, f2, uv, src = two
    assert folded(v2, f2, uv) < 0.005
    np.testing.assert_allclose(v2[f2], v[f])  # the same triangles, in the same order
    assert np.array_equal(np.unique(f2), np.arange(len(v2)))  # no loose vertex
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    body = v[f][:, :, 1].mean(1) < -0.09
    assert uv[f2[body]][:, :, 1].max() < uv[f2[~body]][:, :, 1].min()  # the body chart below the head's
