"""The asset's levels of detail and maps on small analytic inputs (engine/asset/subdiv.py, lod.py, maps.py,
docs/ASSET.md): Catmull-Clark on a cube and an open grid against the slow twin and known values, the seam-split
UV refinement, morph deltas through the same operator, tangent frames, and the normal map's encoding round trip
on a sphere. The real asset's levels and maps are checked in tests/test_asset.py."""

from __future__ import annotations

import numpy as np

from engine.asset.lod import base_level, refine, subdivide_deltas
from engine.asset.maps import FLAT_RGB, BakeMesh, metallic_roughness_rgb, normal_map, tangent_frames
from engine.asset.parts import Part
from engine.asset.subdiv import catmull_clark, catmull_clark_reference, linear_refinement


def _cube() -> tuple[np.ndarray, np.ndarray]:
    """The cube [-1, 1]^3: 8 vertices, 6 quads wound outward."""
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)

    def i(x, y, z):
        return (x > 0) * 4 + (y > 0) * 2 + (z > 0)

    q = [
        [i(1, -1, -1), i(1, 1, -1), i(1, 1, 1), i(1, -1, 1)],
        [i(-1, -1, -1), i(-1, -1, 1), i(-1, 1, 1), i(-1, 1, -1)],
        [i(-1, 1, -1), i(-1, 1, 1), i(1, 1, 1), i(1, 1, -1)],
        [i(-1, -1, -1), i(1, -1, -1), i(1, -1, 1), i(-1, -1, 1)],
        [i(-1, -1, 1), i(1, -1, 1), i(1, 1, 1), i(-1, 1, 1)],
        [i(-1, -1, -1), i(-1, 1, -1), i(1, 1, -1), i(1, -1, -1)],
    ]
    return v, np.array(q)


def _grid(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An open n x n vertex grid in the unit square (z = 0 on the boundary, random bumps inside), its quads and
    which vertices are on the boundary."""
    xy = np.stack(np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij"), -1).reshape(-1, 2)
    on_boundary = (xy == 0).any(1) | (xy == 1).any(1)
    z = np.where(on_boundary, 0.0, np.random.default_rng(seed).normal(0, 0.1, len(xy)))
    idx = np.arange(n * n).reshape(n, n)
    quads = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 4)
    return np.c_[xy, z], quads, on_boundary


def test_catmull_clark_cube_counts_and_known_points():
    v, q = _cube()
    r = catmull_clark(q, len(v))
    new = r.matrix @ v
    assert new.shape == (8 + 12 + 6, 3) and r.quads.shape == (24, 4)
    assert np.allclose(new[7], [5 / 9, 5 / 9, 5 / 9])  # vertex point of (1, 1, 1): (Q + 2R + (n - 3) S) / n, n = 3
    edge = new[8 : 8 + 12][np.all(r.edges == [6, 7], axis=1)][0]  # the edge (1, 1, -1)-(1, 1, 1)
    assert np.allclose(edge, [0.75, 0.75, 0.0])
    assert np.allclose(np.sort(np.abs(new[20:]).max(1)), 1.0) and np.allclose(np.abs(new[20:]).sum(1), 1.0)
    ref_v, ref_q = catmull_clark_reference(v, q)  # the slow, obvious twin
    assert np.allclose(new, ref_v, atol=1e-12) and np.array_equal(r.quads, ref_q)
    assert np.allclose(r.matrix.sum(1), 1.0)  # affine: every row sums to 1


def test_catmull_clark_limit_of_a_cube_is_inside_it():
    v, q = _cube()
    for _ in range(4):
        r = catmull_clark(q, len(v))
        v, q = r.matrix @ v, r.quads
    assert len(q) == 6 * 4**4
    radius = np.linalg.norm(v, axis=1)
    assert np.abs(v).max() < 1.0 and radius.min() > 0.8  # strictly inside the cube, not collapsed
    assert np.linalg.norm(v, axis=1).max() < np.sqrt(3) * 0.6  # the corners are rounded off (5/9 after one step)


def test_boundary_rule_keeps_the_boundary_on_its_curve():
    v, q, on_boundary = _grid(6)
    r = catmull_clark(q, len(v))
    new = r.matrix @ v
    ref_v, ref_q = catmull_clark_reference(v, q)
    assert np.allclose(new, ref_v, atol=1e-12) and np.array_equal(r.quads, ref_q)
    # the refined boundary: the old boundary's vertex points and its edges' points (on a grid, an edge between two
    # boundary vertices runs along a side)
    new_bnd = np.r_[on_boundary, on_boundary[r.edges].all(1), np.zeros(len(q), bool)]
    assert np.allclose(new[new_bnd, 2], 0.0)  # the boundary curve (z = 0, on the square's sides) is kept
    assert ((new[new_bnd, :2] == 0) | (new[new_bnd, :2] == 1)).any(1).all()
    corners = np.nonzero(((v[:, :2] == 0) | (v[:, :2] == 1)).all(1))[0]
    assert np.allclose(new[corners], v[corners])  # a corner (one face) stays put
    bumped = v.copy()
    bumped[~on_boundary, 2] += 0.3  # the interior does not move the boundary
    assert np.allclose((r.matrix @ bumped)[new_bnd], new[new_bnd])
    # along one side the boundary is refined as a cubic B-spline of the side alone: 1/8, 3/4, 1/8
    side = np.nonzero((v[:, 0] == 0) & ~np.isin(np.arange(len(v)), corners))[0]
    k = side[2]
    nb = [j for j in side if abs(v[j, 1] - v[k, 1]) < 0.21 and j != k]
    assert np.allclose(new[k], 0.75 * v[k] + 0.125 * v[nb].sum(0))


def test_morph_deltas_go_through_the_same_operator():
    v, q, _ = _grid(7, seed=1)
    rng = np.random.default_rng(2)
    d = np.zeros((3, len(v), 3))
    d[:, 10:14] = rng.normal(0, 0.01, (3, 4, 3))  # sparse: four vertices move
    m = catmull_clark(q, len(v)).matrix
    m2 = catmull_clark(catmull_clark(q, len(v)).quads, m.shape[0]).matrix @ m
    for op in (m, m2):
        sub = subdivide_deltas(op, d)
        for k in range(3):
            assert np.allclose(sub[k], op @ (v + d[k]) - op @ v, atol=1e-12)  # subdividing the displaced mesh
        moved = (sub != 0).any(2).any(0)
        assert 0 < moved.sum() < 0.5 * op.shape[0]  # still sparse: only the stencils of the moved vertices


def _two_quads_with_a_seam() -> tuple[Part, np.ndarray]:
    """Two quads sharing an edge (welded vertices 1, 4) split in UV along it: 6 template vertices, 8 UV vertices."""
    quads_t = np.array([[0, 1, 4, 3], [1, 2, 5, 4]])
    uv = np.array([[0, 0], [0.4, 0], [0.4, 0.4], [0, 0.4], [0.6, 0], [1, 0], [1, 0.4], [0.6, 0.4]], float)
    tv = np.array([0, 1, 4, 3, 1, 2, 5, 4])
    part = Part("skin", tv, uv, np.array([[0, 1, 2, 3], [4, 5, 6, 7]]), quads_t)
    return part, np.arange(6)


def test_uv_refinement_keeps_seams_and_interpolates_linearly():
    part, ids = _two_quads_with_a_seam()
    lv0 = base_level(part, ids)
    lv1 = refine(lv0)
    lv2 = refine(lv1)
    for lv in (lv1, lv2):
        assert np.array_equal(lv.split_vertex[lv.split_quads], lv.quads)  # one for one with the welded quads
        assert np.array_equal(lv.uv[: len(part.uv)], part.uv)  # level 0's vertices first, same UVs
        assert (lv.parent[: len(part.uv)] == part.template_vertex).all() and (lv.parent[len(part.uv) :] == -1).all()
    # the seam edge (welded 1-4) is one welded vertex with two UVs on each side
    seam_pts = np.nonzero(np.bincount(lv1.split_vertex, minlength=lv1.matrix.shape[0]) == 2)[0]
    assert len(seam_pts) == 3  # vertices 1 and 4 and the seam's edge point
    for w in seam_pts:
        u = lv1.uv[lv1.split_vertex == w]
        assert abs(u[0, 0] - u[1, 0]) > 0.1
    # a face point is the mean of its face's UVs; UVs stay inside each island
    lin = linear_refinement(part.quads, len(part.uv))
    assert np.allclose((lin.matrix @ part.uv)[-2:], [[0.2, 0.2], [0.8, 0.2]])
    assert ((lv2.uv[:, 0] <= 0.4 + 1e-12) | (lv2.uv[:, 0] >= 0.6 - 1e-12)).all()


def test_tangent_frames_follow_the_uvs():
    v, q, _ = _grid(5)
    v[:, 2] = 0.0
    tris = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    n = np.tile([0.0, 0.0, 1.0], (len(v), 1))
    if np.cross(v[tris[0, 1]] - v[tris[0, 0]], v[tris[0, 2]] - v[tris[0, 0]])[2] < 0:
        tris = tris[:, ::-1]
    t = tangent_frames(v, n, v[:, :2], tris)  # u along +x, v along +y
    assert np.allclose(t, [1.0, 0.0, 0.0, 1.0], atol=1e-9)
    t = tangent_frames(v, n, v[:, :2] * [-1.0, 1.0], tris)  # mirrored in u: T = -x, B = +y = -cross(N, T)
    assert np.allclose(t, [-1.0, 0.0, 0.0, -1.0], atol=1e-9)


def _uv_sphere(n: int, r: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    th, ph = np.meshgrid(np.linspace(0.15, np.pi - 0.15, n), np.linspace(0.0, 2 * np.pi, 2 * n), indexing="ij")
    pos = r * np.stack([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)], -1).reshape(-1, 3)
    uv = np.stack([ph / (2 * np.pi), 1.0 - th / np.pi], -1).reshape(-1, 2) * 0.9 + 0.05
    idx = np.arange(n * 2 * n).reshape(n, 2 * n)
    q = np.stack([idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:], idx[:-1, :-1]], -1).reshape(-1, 4)
    tris = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    return pos, uv, tris


def test_normal_map_round_trip_and_flat_away_from_the_weight():
    r = 0.1
    pos, uv, tris = _uv_sphere(40, r)
    n = pos / r
    from engine.extract.mesh import vertex_normals

    vn = vertex_normals(pos, tris)
    assert (vn * n).sum(1).min() > 0.99  # wound outward
    tan = tangent_frames(pos, vn, uv, tris)

    def sdf(p):
        x, y = p[:, 0], p[:, 1]
        return np.linalg.norm(p, axis=1) - r - 0.0008 * np.sin(x * 150) * np.sin(y * 150)

    def normal_fn(p):
        h = 1e-5
        g = np.stack([sdf(p + h * e) - sdf(p - h * e) for e in np.eye(3)], 1)
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    weight = np.clip((pos[:, 2] / r - 0.5) * 4.0, 0.0, 1.0)  # the front cap only
    mesh = BakeMesh(uv, tris, pos, vn, tan, weight, np.full(len(pos), 1.0))
    size = 256
    rgb, info = normal_map(mesh, sdf, normal_fn, np.array([0.0, 0.0, 1.0]), size)
    assert info["face_texels"] > 500 and 2.0 < info["face_mean_deg"] < 30.0
    # flat (exactly) on the back, where the weight is 0 and no drawn texel is near
    back = pos[:, 2] < -0.3 * r
    px = np.clip((np.c_[uv[back, 0], 1.0 - uv[back, 1]] * size).astype(int), 0, size - 1)
    assert (rgb[px[:, 1], px[:, 0]] == FLAT_RGB).all()
    # decoding as glTF does (normalize(x T + y B + z N), B = w cross(N, T)) gives back the field's normal
    front = np.nonzero(weight > 0.999)[0]
    tri = tris[np.all(weight[tris] > 0.999, axis=1)][::7]
    bary = np.array([0.4, 0.35, 0.25])
    p = (bary[None, :, None] * pos[tri]).sum(1)
    nl = (bary[None, :, None] * vn[tri]).sum(1)
    t = (bary[None, :, None] * tan[tri, :3]).sum(1)
    b = np.cross(nl, t) * tan[tri[:, 0], 3:]
    tuv = (bary[None, :, None] * uv[tri]).sum(1)
    c = rgb[((1.0 - tuv[:, 1]) * size).astype(int), (tuv[:, 0] * size).astype(int)].astype(float) / 255 * 2 - 1
    m = c[:, :1] * t + c[:, 1:2] * b + c[:, 2:3] * nl
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    from engine.asset.snap import find_surface

    off = find_surface(p, nl / np.linalg.norm(nl, axis=1, keepdims=True), sdf, 0.004)
    truth = normal_fn(p + off[:, None] * nl / np.linalg.norm(nl, axis=1, keepdims=True))
    err = np.degrees(np.arccos(np.clip((m * truth).sum(1), -1, 1)))
    plain = np.degrees(np.arccos(np.clip((nl / np.linalg.norm(nl, axis=1, keepdims=True) * truth).sum(1), -1, 1)))
    assert len(front) > 50 and np.median(err) < 2.0 and np.median(err) < 0.3 * np.median(plain)


def test_masked_blur_on_a_coarse_grid_matches_the_full_one():
    import scipy.ndimage as ndi

    from engine.asset.maps import _masked_blur

    rng = np.random.default_rng(0)
    mask = np.zeros((300, 260), bool)
    mask[20:280, 30:240] = True
    mask[120:150, 60:200] = False  # a hole: its texels do not count
    img = ndi.gaussian_filter(rng.normal(size=(300, 260, 3)), 2)
    m = mask.astype(float)
    for sigma in (3.0, 16.0, 24.0):
        ref = np.stack([ndi.gaussian_filter(img[..., k] * m, sigma) for k in range(3)], -1)
        ref /= np.maximum(ndi.gaussian_filter(m, sigma), 1e-9)[..., None]
        err = np.abs(_masked_blur(img, mask, sigma) - ref)[mask].max() / np.abs(ref[mask]).max()
        assert err < (1e-9 if sigma < 12 else 0.03), (sigma, err)


def test_metallic_roughness_packs_roughness_in_green():
    rough = np.array([[0.0, 0.5], [0.07, 1.0]])
    rgb = metallic_roughness_rgb(rough)
    assert rgb.dtype == np.uint8 and (rgb[..., 2] == 0).all() and (rgb[..., 0] == 255).all()
    assert np.array_equal(rgb[..., 1], [[0, 128], [18, 255]])


def test_asset_files_by_subdivision():
    from engine.asset.build import FILES, HAIR_FILES, asset_files
    from engine.io.manifest import OPTIONAL_FILES

    assert asset_files(2, hair=True) == FILES
    assert not set(HAIR_FILES) & set(asset_files(2))  # a bald head: no hair files listed
    assert all(OPTIONAL_FILES[f"asset_{k}"] == f"asset/{v}" for k, v in HAIR_FILES.items())  # the bundle knows them
    assert "subd2_glb" not in asset_files(1) and "subd1_glb" in asset_files(1)
    assert not any(k.startswith(("subd", "skin_subd")) for k in asset_files(0))
    assert {"normal", "roughness", "glb", "texture", "info"} <= set(asset_files(0))
