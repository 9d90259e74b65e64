"""The photo's lighting and the albedo (engine/asset/delight.py): a synthetic check on the template's skin and
atlas layout -- a flat albedo lit by a known SH light is baked into the layout, the light estimated from the face
texels and divided out -- and the real asset's files (docs/ASSET.md, "Lighting and albedo")."""

from __future__ import annotations

import numpy as np
from prior_support import prepared_prior

from engine.asset.delight import delight, fit_sh, sh_basis, shading, texel_attributes, unit

TRUE_SH = np.array([2.6, 0.35, 0.9, -0.3, 0.05, 0.08, 0.12, -0.04, 0.06])
"""A key light up, in front and to the subject's right, over an ambient term."""


def test_fit_sh_recovers_a_light_on_a_sphere_cap():
    rng = np.random.default_rng(0)
    n = unit(rng.normal(size=(20000, 3)))
    n = n[n[:, 2] > 0.2]  # what the photo sees: the front
    lum = 0.6 * shading(TRUE_SH, n)
    c, used = fit_sh(lum, n, ridge=0.0)
    s = shading(TRUE_SH, n)
    assert np.allclose(c, TRUE_SH / s.mean(), atol=1e-6) and used.all()
    c_r, _ = fit_sh(lum, n, ridge=1e-3)  # a ridge biases it, a little
    assert 0.02 < np.abs(shading(c_r, n) / (s / s.mean()) - 1).max() < 0.2
    assert sh_basis(n).shape == (len(n), 9)


def test_delight_recovers_a_flat_albedo_on_the_template_atlas():
    from engine.asset.build import _outward, _skin
    from engine.asset.parts import split_parts
    from engine.asset.snap import face_weight, front_visible
    from engine.asset.uvpack import layout_vertices, packed_parts
    from engine.extract.mesh import vertex_normals

    prior = prepared_prior()
    parts, _ = packed_parts(split_parts(prior), layout_vertices(prior))
    ids, tris, _ = _skin(prior)
    v = prior.vertices.astype(np.float64)
    normals = np.zeros_like(v)
    normals[ids] = _outward(v[ids], tris) * vertex_normals(v[ids], tris)
    weight = np.zeros(len(v))
    weight[ids] = face_weight(v[ids]) * front_visible(v[ids], tris)
    skin = parts["skin"]
    size = 512
    attrs, on_skin = texel_attributes(skin.uv, skin.triangles, np.c_[normals[skin.template_vertex],
                                      weight[skin.template_vertex]], size)  # fmt: skip
    n = unit(attrs[..., :3])
    albedo = np.array([0.62, 0.45, 0.36])
    s_true = np.where(on_skin, np.clip(shading(TRUE_SH, n.reshape(-1, 3)).reshape(size, size), 0.0, None), 1.0)
    lit = np.clip(albedo * 0.45 * s_true[..., None], 0, 1)  # 0.45: the lit face stays below 1 (no clipping)
    texture = (lit * 255 + 0.5).astype(np.uint8)
    face = on_skin & (attrs[..., 3] > 0.5) & (n[..., 2] > 0.3)
    est, info = delight(texture, n, on_skin, face, on_skin)
    expect = albedo * 0.45 * s_true[face].mean()  # the albedo, up to the light's scale (mean shading 1 on the face)
    ratio = est[face].astype(np.float64) / (255 * expect)
    assert np.abs(np.median(ratio, 0) - 1).max() < 0.03, np.median(ratio, 0)  # 2.4 %: the ridge's bias
    assert np.percentile(np.abs(ratio - 1), 95) < 0.04
    lit_ratio = texture[face].astype(np.float64) / (255 * expect)
    assert np.percentile(np.abs(lit_ratio - 1), 95) > 0.15  # ... which the lit texture was far from
    assert info["face_texels_used"] > 0.8 * info["face_texels"] and len(info["coefficients"]) == 9
