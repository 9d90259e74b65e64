"""The asset's UV layout (engine/asset/unwrap.py, engine/asset/uvpack.py, docs/ASSET.md "The UV layout"): the
re-unwrap's pieces on analytic inputs, then the layout of the prepared template: stretch and texel density over
the face, no flipped or overlapping UVs, atlas use, the same bytes every time, the cache file."""

from __future__ import annotations

import numpy as np
import pytest
from prior_support import prepared_prior

from engine.asset.measure import uv_coverage, uv_signed_area, uv_stretch
from engine.asset.unwrap import (
    Energy,
    UnwrapWeights,
    boundary_crossings,
    ear_clip,
    gradient_operator,
    hole_fill,
    unwrap,
)


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n*n, 2) points of the unit square and its (2 (n-1)^2, 3) counter-clockwise triangles."""
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")
    uv = np.stack([u.ravel(), v.ravel()], 1)
    i = np.arange(n * n).reshape(n, n)
    a, b, c, d = i[:-1, :-1].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel(), i[:-1, 1:].ravel()
    return uv, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def _quantiles(x: np.ndarray, w: np.ndarray, qs) -> list[float]:
    """Area-weighted quantiles, as engine/asset/stats.py takes them."""
    o = np.argsort(x)
    cum = np.cumsum(w[o]) / w.sum()
    return [float(x[o][np.searchsorted(cum, q)]) for q in qs]


def _weighted(r: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Area-weighted mean and 95th percentile."""
    return float((r * w).sum() / w.sum()), _quantiles(r, w, [0.95])[0]


def test_unwrap_flattens_a_cylinder_isometrically():
    # a quarter of a cylinder (radius 5 cm, 8 cm long) is developable: the flattening has stretch 1 everywhere;
    # start from its angle-and-height map squashed 3:1 (flip-free, stretch 3)
    uv0, tris = _grid(12)
    theta, h = uv0[:, 0] * np.pi / 2, uv0[:, 1] * 0.08
    pos = np.stack([0.05 * np.sin(theta), h, 0.05 * np.cos(theta)], 1)
    start = uv0 * [0.3, 0.1]
    assert _weighted(*uv_stretch(pos, start, tris))[0] > 2.0
    w = UnwrapWeights(np.ones(len(tris)), np.full(len(tris), 0.1), np.ones(len(tris)))
    uv, steps = unwrap(pos, start, tris, w)
    ratio, area = uv_stretch(pos, uv, tris)
    assert ratio.max() < 1.001 and steps < 30, (ratio.max(), steps)
    assert np.allclose(np.abs(uv_signed_area(uv, tris)), area, rtol=1e-3)  # at the target scale: an isometry
    assert (uv_signed_area(uv, tris) > 0).all()


def _cup(n_around: int = 24, n_down: int = 12, depth: float = 0.04, radius: float = 0.01):
    """A deep cup as quads: a tube of ``radius`` and ``depth`` closed by a fan of quads at the bottom (one
    vertex there), its rim at the top; UVs a disc (the polar map: rim at radius 1, bottom at the centre)."""
    ring = np.arange(n_around)
    theta = 2 * np.pi * ring / n_around
    pos, uv = [], []
    for k in range(n_down):  # ring k at height -depth * k / n_down, the last ring nearer the bottom point
        r = radius if k < n_down - 1 else 0.5 * radius
        pos += [np.stack([r * np.cos(theta), r * np.sin(theta), np.full(n_around, -depth * k / n_down)], 1)]
        uv += [np.stack(np.array([np.cos(theta), np.sin(theta)]) * (1 - k / n_down), 1)]
    pos, uv = np.concatenate(pos + [[[0.0, 0.0, -depth]]]), np.concatenate(uv + [[[0.0, 0.0]]])
    quads = []
    for k in range(n_down - 1):  # counter-clockwise in the disc: rim ring outside
        a, b = k * n_around + ring, k * n_around + (ring + 1) % n_around
        quads.append(np.stack([a, b, b + n_around, a + n_around], 1))
    bottom, last = n_down * n_around, (n_down - 1) * n_around
    for j in range(0, n_around, 2):  # the bottom cap: quads of two ring edges and the centre
        quads.append([last + j, last + j + 1, last + (j + 2) % n_around, bottom])
    return pos, uv, np.concatenate([np.asarray(q).reshape(-1, 4) for q in quads]).astype(np.int64)


def test_a_deep_cup_is_cut_into_pieces_that_lie_flat():
    from engine.asset.parts import Part
    from engine.asset.seams import CUP_PIECES, cup_cuts, split_along
    from engine.asset.uvpack import island_triangles

    pos, uv, quads = _cup()
    tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    assert (uv_signed_area(uv, tris) > 0).all()
    cuts = cup_cuts(pos, uv, quads)
    ends = np.bincount(np.asarray(cuts).ravel(), minlength=len(pos))
    assert ends[len(pos) - 1] == CUP_PIECES  # every cut ends at the bottom
    assert (ends[:24] == 1).sum() == CUP_PIECES  # ... and starts at the rim
    new_quads, source = split_along(quads, cuts, len(pos))
    part = Part("cup", np.r_[np.arange(len(pos)), source], np.r_[uv, uv[source]], new_quads, quads)
    assert np.array_equal(new_quads[np.isin(quads, source, invert=True)], quads[np.isin(quads, source, invert=True)])
    pieces = island_triangles(part)
    assert len(pieces) == CUP_PIECES
    whole = UnwrapWeights(np.ones(len(tris)), np.full(len(tris), 0.1), np.ones(len(tris)))
    one, _ = unwrap(pos, uv * 0.01, tris, whole)
    p95_whole = _weighted(*uv_stretch(pos, one, tris))[1]
    for verts, t in pieces:
        w = UnwrapWeights(np.ones(len(t)), np.full(len(t), 0.1), np.ones(len(t)))
        flat, _ = unwrap(pos[part.template_vertex[verts]], part.uv[verts] * 0.01, t, w)
        p95 = _weighted(*uv_stretch(pos[part.template_vertex[verts]], flat, t))[1]
        assert p95 < 0.8 * p95_whole and boundary_crossings(flat, t) == 0, (p95, p95_whole)
    # a shallow bowl is left alone
    assert cup_cuts(pos * [1, 1, 0.1], uv, quads) == []


def test_the_template_eye_sockets_get_the_cuts(layout):
    from engine.asset.seams import CUP_PIECES
    from engine.asset.uvpack import island_triangles

    prior, parts, _, _ = layout
    skin = parts["skin"]
    sel = prior.part[prior.quads[:, 0]] == 0  # the template's own seams only, as before the cuts
    pairs = np.stack([prior.quads[sel].reshape(-1), prior.quad_uv[sel].reshape(-1)], 1)
    uniq = np.unique(pairs, axis=0)
    n = len(uniq)
    assert np.array_equal(skin.template_vertex[:n], uniq[:, 0])  # the vertices before the copies keep their order
    assert np.allclose(skin.uv[:n], prior.uv[uniq[:, 1]])
    copies = skin.template_vertex[n:]
    assert 20 <= len(copies) <= 100, len(copies)  # 84: three paths of about 14 vertices per socket
    for v, uv in zip(copies, skin.uv[n:], strict=True):  # a copy has the UV of one of its vertex's originals
        assert np.isclose(skin.uv[:n][skin.template_vertex[:n] == v], uv).all(1).any()
    islands = island_triangles(skin)
    assert len(islands) == 3 + 2 * CUP_PIECES  # the head, the mouth, under the chin; each socket in pieces
    z = prior.vertices[copies][:, 2]
    assert (z > 0.05).all()  # every cut is in the eye sockets, in front


def test_energy_derivatives_match_finite_differences():
    pos = np.array([[0, 0, 0], [1, 0, 0.1], [0.2, 1, 0.3], [-0.8, 0.5, -0.1]], float)
    tris = np.array([[0, 1, 2], [0, 2, 3]])
    uv = pos[:, :2] * [1.1, 0.9] + [[0, 0], [0.05, 0], [0, 0.1], [0.02, 0]]
    grad, area = gradient_operator(pos, tris)
    w = UnwrapWeights(np.array([1.0, 2.0]), np.array([0.3, 0.1]), np.array([1.0, 0.8]))
    en = Energy(4, tris, grad, area, w)
    f, g, h = en.derivatives(uv.ravel())
    assert f == pytest.approx(en.value(uv.ravel()))
    u, eps = uv.ravel(), 1e-6
    steps = np.eye(len(u)) * eps
    g_fd = np.array([(en.value(u + s) - en.value(u - s)) / (2 * eps) for s in steps])
    assert np.allclose(g, g_fd, atol=1e-7)
    # near the identity each triangle's energy is convex: the projection leaves the Hessian as it is
    h_fd = np.array([(en.derivatives(u + s)[1] - en.derivatives(u - s)[1]) / (2 * eps) for s in steps])
    assert np.allclose(h.toarray(), h_fd, atol=1e-6)
    # a step toward a flip is cut short of it
    d = np.zeros_like(uv)
    d[2] = uv[0] - uv[2] + [0.5, -2.0]
    step = en.max_step(u, d.ravel())
    assert 0 < step < 1 and np.isfinite(en.value(u + step * d.ravel()))


def test_ear_clip_and_hole_fill():
    poly = np.array([[0, 0], [4, 0], [4, 3], [2, 1], [0, 3]], float)  # concave, counter-clockwise
    tri = ear_clip(poly)
    area = uv_signed_area(poly, tri)
    assert len(tri) == 3 and (area > 0).all() and area.sum() == pytest.approx(8.0)
    # a 6 x 6 grid with its middle 2 x 2 cells removed: one hole, filled by triangles covering exactly it
    uv, tris = _grid(7)
    centre = uv[tris].mean(1)
    keep = ~((np.abs(centre - 0.5) < 1 / 6).all(1))
    tris = tris[keep]
    fill = hole_fill(uv, tris)
    assert len(fill) > 0 and (uv_signed_area(uv, fill) > 0).all()
    assert uv_signed_area(uv, fill).sum() == pytest.approx((2 / 6) ** 2)
    assert boundary_crossings(uv, tris) == 0
    folded = uv.copy()
    folded[2 * 7 + 3] = [0.9, 0.5]  # the hole's left rim dragged across its right rim
    assert boundary_crossings(folded, tris) > 0


@pytest.fixture(scope="module")
def layout():
    """The template, its parts and the packed layout (made on the typical fitted head), computed (not read from a
    cache)."""
    from engine.asset.parts import split_parts
    from engine.asset.uvpack import atlas_layout, layout_vertices

    prior = prepared_prior()
    parts = split_parts(prior)
    uv, report = atlas_layout(parts, layout_vertices(prior))
    return prior, parts, uv, report


def _face_stretch(pos: np.ndarray, uv: np.ndarray, tris: np.ndarray, face: np.ndarray) -> tuple[float, float]:
    return _weighted(*(x[face] for x in uv_stretch(pos, uv, tris)))


def test_template_layout_face_stretch_and_density(layout):
    from engine.asset.uvpack import layout_vertices

    prior, parts, uv, _ = layout
    skin = parts["skin"]
    pos = np.asarray(prior.vertices, np.float64)[skin.template_vertex]
    typical = layout_vertices(prior)[skin.template_vertex]
    tris = skin.triangles
    face = pos[tris].mean(1)[:, 2] > 0.02  # engine/asset/stats.py's face region (FACE_Z_M)
    # the template is no fitted head: on it the layout made for fitted heads is a little above 1.3 (1.312)
    assert _face_stretch(pos, uv["skin"], tris, face)[1] < 1.33
    for name, new in (("template", skin.uv), ("layout", uv["skin"])):
        if name == "layout":
            pos = typical
        ratio, area = uv_stretch(pos, new, tris)
        mean, p95 = _weighted(ratio[face], area[face])
        density = np.sqrt(np.abs(uv_signed_area(new, tris)) / area)
        lo, mid, hi = _quantiles(density[face], area[face], (0.05, 0.5, 0.95))
        if name == "template":  # what the re-unwrap replaces: 1.29 / 1.83, density p95 : p5 2.8 : 1
            assert mean > 1.28 and p95 > 1.8 and hi / lo > 2.5
            continue
        assert mean <= 1.15 and p95 <= 1.3, (mean, p95)  # measured 1.097 / 1.270 on the typical head
        assert hi / lo < 2.3, (lo, mid, hi)  # measured 2.1
        # the face stays the best-sampled region of the skin: median 1.16 x the rest's, 1.22 x the back's
        back = pos[tris].mean(1)[:, 2] < -0.03
        assert mid > 1.1 * _quantiles(density[~face], area[~face], [0.5])[0]
        assert mid > 1.15 * _quantiles(density[back], area[back], [0.5])[0]


def test_template_layout_no_flips_no_overlap_atlas_used(layout):
    from engine.asset.parts import ASSET_PARTS
    from engine.asset.uvpack import islands, layout_vertices

    prior, parts, uv, report = layout
    for name, p in parts.items():  # same vertices, same seams: only the UVs are new
        assert uv[name].shape == p.uv.shape and np.isfinite(uv[name]).all()
        assert (uv_signed_area(uv[name], p.triangles) > 0).all(), name
    offs = np.cumsum([0] + [len(uv[n]) for n in ASSET_PARTS])
    all_uv = np.concatenate([uv[n] for n in ASSET_PARTS])
    all_tris = np.concatenate([parts[n].triangles + o for n, o in zip(ASSET_PARTS, offs[:-1], strict=True)])
    cover = uv_coverage(all_uv, all_tris, 1024)
    assert (cover > 1).sum() == 0 and (cover > 0).mean() >= 0.70, (cover > 0).mean()  # measured 0.746
    assert all_uv.min() > 0.0 and all_uv.max() < 1.0
    for isl in islands(parts, layout_vertices(prior)):
        assert boundary_crossings(isl.uv, isl.triangles) == 0, isl.part
        if isl.part == "skin":
            continue
        # the eyes, teeth and tongue keep the template's UVs: each island a similarity of them (scale, shift, turn)
        a = parts[isl.part].uv[isl.vertices] - parts[isl.part].uv[isl.vertices].mean(0)
        b = uv[isl.part][isl.vertices] - uv[isl.part][isl.vertices].mean(0)
        fit, *_ = np.linalg.lstsq(a, b, rcond=None)
        assert np.allclose(a @ fit, b, atol=1e-9) and np.isclose(np.linalg.det(fit), (fit**2).sum() / 2), isl.part


def test_template_layout_is_the_same_bytes_every_time(layout):
    from engine.asset.uvpack import atlas_layout, layout_vertices

    prior, parts, uv, report = layout
    again, report2 = atlas_layout(parts, layout_vertices(prior))
    assert report2 == report
    assert all(again[n].tobytes() == uv[n].tobytes() for n in parts)


def test_layout_cache_file_versioned_and_rebuilt(layout, tmp_path, monkeypatch):
    import engine.asset.uvpack as uvpack

    prior, parts, uv, report = layout
    monkeypatch.setenv("LIKENESS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(uvpack, "_LAYOUTS", {})
    computed = []
    monkeypatch.setattr(uvpack, "atlas_layout", lambda *a: computed.append(1) or (uv, report))
    first, _ = uvpack.packed_parts(parts, uvpack.layout_vertices(prior))
    (path,) = (tmp_path / "prior").glob("uvlayout-*.npz")
    assert path.name.startswith(f"uvlayout-v{uvpack.LAYOUT_VERSION}-") and uvpack.LAYOUT_VERSION >= 3
    assert all(np.array_equal(first[n].uv, uv[n]) for n in parts) and len(computed) == 1
    stale = tmp_path / "prior" / path.name.replace(f"-v{uvpack.LAYOUT_VERSION}-", "-v1-")
    path.rename(stale)  # an old version's file is not read: computed again
    uvpack._LAYOUTS.clear()
    uvpack.packed_parts(parts, uvpack.layout_vertices(prior))
    assert len(computed) == 2 and path.is_file()
    for damage in (b"not a zip", b""):  # corrupt or truncated: computed again and rewritten
        path.write_bytes(damage)
        uvpack._LAYOUTS.clear()
        again, _ = uvpack.packed_parts(parts, uvpack.layout_vertices(prior))
        assert all(np.array_equal(again[n].uv, uv[n]) for n in parts)
    assert len(computed) == 4 and uvpack._read_layout(path, parts) is not None
    uvpack._LAYOUTS.clear()  # intact: read, not computed
    uvpack.packed_parts(parts, uvpack.layout_vertices(prior))
    assert len(computed) == 4


@pytest.fixture(scope="module")
def fitted_subject(bundle_dir, layout):
    """The draft bundle's head (tests/conftest.py): its landmark fit's shape, and its asset geometry on the shared
    and on the subject layout (engine/asset/uvsubject.py)."""
    from engine.asset.build import assemble
    from engine.avatar import load_avatar, load_landmarks_world
    from engine.prior.fit import fit_to_landmarks

    prior = layout[0]
    avatar = load_avatar(bundle_dir, device="cpu")
    coeffs = fit_to_landmarks(prior, load_landmarks_world(avatar)).coeffs
    return prior, prior.shaped(coeffs), {m: assemble(avatar, prior, uv_layout=m) for m in ("shared", "subject")}


@pytest.mark.slow
def test_shared_layout_on_a_fitted_subject(layout, fitted_subject):
    from engine.asset.uvpack import atlas_layout

    prior, parts, uv, _ = layout
    _, shaped, _ = fitted_subject
    skin = parts["skin"]
    tris = skin.triangles
    face = prior.vertices[skin.template_vertex][tris].mean(1)[:, 2] > 0.02
    pos = shaped[skin.template_vertex]
    assert _face_stretch(pos, uv["skin"], tris, face)[1] <= 1.3  # measured 1.292 (the draft demo's fitted shape)
    # the layout v2 made on the template itself: 1.387 on the same head
    on_template, _ = atlas_layout(parts, prior.vertices)
    assert _face_stretch(pos, on_template["skin"], tris, face)[1] > 1.35


def _asset_layout_numbers(asset) -> tuple[tuple[float, float], float, int, int]:
    """Face stretch (mean, p95) on the asset's snapped skin (world z > 2 cm, engine/asset/stats.py), atlas use,
    flipped UV triangles, texels covered twice (1024 px)."""
    from engine.asset.parts import ASSET_PARTS

    skin = asset.parts["skin"]
    pos = asset.neutral[skin.template_vertex]
    face = pos[skin.triangles].mean(1)[:, 2] > 0.02
    stretch = _face_stretch(pos, skin.uv, skin.triangles, face)
    offs = np.cumsum([0] + [len(asset.parts[n].uv) for n in ASSET_PARTS])
    all_uv = np.concatenate([asset.parts[n].uv for n in ASSET_PARTS])
    all_tris = np.concatenate([asset.parts[n].triangles + o for n, o in zip(ASSET_PARTS, offs[:-1], strict=True)])
    cover = uv_coverage(all_uv, all_tris, 1024)
    flipped = int((uv_signed_area(all_uv, all_tris) <= 0).sum())
    return stretch, float((cover > 0).mean()), flipped, int((cover > 1).sum())


@pytest.mark.slow
def test_subject_layout_relaxes_the_shared_one_on_the_snapped_head(fitted_subject):
    from engine.asset.uvpack import island_triangles
    from engine.asset.uvsubject import outer_loop

    _, _, assets = fitted_subject
    shared, subject = assets["shared"], assets["subject"]
    (_, p95_shared), *_ = _asset_layout_numbers(shared)
    (mean, p95), use, flipped, overlap = _asset_layout_numbers(subject)
    assert p95_shared <= 1.3  # the shared layout on the snapped demo: 1.268 (v3, sockets uncut: 1.306)
    assert p95 <= p95_shared and mean < 1.11, (mean, p95)  # measured 1.099 / 1.276 (v3)
    assert flipped == 0 and overlap == 0 and use >= 0.70, (flipped, overlap, use)  # measured 0.749
    assert subject.info["uv_layout"]["mode"] == "subject" and shared.info["uv_layout"]["mode"] == "shared"
    assert all(i["relaxed"] for i in subject.info["uv_layout"]["subject"]["islands"])
    for name, part in shared.parts.items():  # same vertices in the same order, same triangles
        other = subject.parts[name]
        assert np.array_equal(other.template_vertex, part.template_vertex) and np.array_equal(other.quads, part.quads)
        assert other.uv.shape == part.uv.shape
        if name != "skin":
            assert np.array_equal(other.uv, part.uv), name
    skin_a, skin_b = shared.parts["skin"], subject.parts["skin"]
    assert not np.allclose(skin_a.uv, skin_b.uv)
    for verts, tris in island_triangles(skin_a):  # each island's outer boundary where the shared layout has it
        outer = outer_loop(skin_a.uv[verts], tris)
        assert np.array_equal(skin_b.uv[verts][outer], skin_a.uv[verts][outer])
    moved = np.linalg.norm(skin_b.uv - skin_a.uv, axis=1) * 2048  # px at 2048: the texture lands near its place
    assert np.median(moved) < 20.0, np.percentile(moved, [50, 95])
