"""The asset's hair part (engine/asset/hair.py, docs/ASSET.md "Hair"): on an analytic skull with and without a cap
of hair, then on the session's draft bundle's asset (outside the skin, no morph targets, bound to the head, UVs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from prior_support import prepared_prior

from engine.asset.hair import HairConfig, hair_shell, surface_distance_fn
from engine.asset.measure import uv_signed_area, weld, winding_numbers
from engine.extract.mesh import marching_cubes
from engine.rig.pose import NeckBlend

SKULL_M, CAP_M, CAP_FROM_M = 0.09, 0.1, 0.02
"""The analytic head: a sphere skull; the hair a shell to CAP_M over it above y = CAP_FROM_M."""


def _field_surface(cap: bool, res: int = 72) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the skull (and the cap) SDF on a lattice over +-0.13 m: vertices (V, 3), faces."""
    ax = np.linspace(-0.13, 0.13, res)
    p = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1)
    r = np.linalg.norm(p, axis=-1)
    sdf = r - SKULL_M
    if cap:
        sdf = np.minimum(sdf, np.maximum(r - CAP_M, CAP_FROM_M - p[..., 1]))
    return marching_cubes(sdf, 0.0, np.full(3, -0.13), np.full(3, 0.13))


def _skull_skin() -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=4, radius=SKULL_M)
    return np.asarray(s.vertices), np.asarray(s.faces)


def _cut(cap: bool):
    v, f = _field_surface(cap)
    sv, sf = _skull_skin()
    return hair_shell(v, f, surface_distance_fn(sv, sf), lambda p: p[:, 1] > -0.06, lambda p: p, HairConfig())


def test_signed_distance_to_a_mesh():
    sv, sf = _skull_skin()
    d, n = surface_distance_fn(sv, sf)(np.array([[0.0, 0.12, 0.0], [0.0, 0.0, -0.05], [0.09, 0.0, 0.0]]))
    assert np.allclose(d, [0.03, -0.04, 0.0], atol=3e-4)
    assert n[0] @ [0, 1, 0] > 0.99 and n[1] @ [0, 0, -1] > 0.99  # outward


def test_cap_of_hair_on_an_analytic_skull():
    shell, why = _cut(cap=True)
    assert shell is not None, why
    info = shell.info
    # the cap's outside (2 pi r h, h = 8 cm) and part of its ledge at y = 2 cm: 503 + up to 60 cm^2
    assert 480.0 < info["area_cm2"] < 580.0, info
    assert abs(info["max_outside_skull_mm"] - 1000 * (CAP_M - SKULL_M)) < 1.0
    assert info["components"] == 1 and info["flipped_uv_triangles"] == 0 and info["triangles"] <= 20000
    d, _ = surface_distance_fn(*_skull_skin())(shell.positions)
    assert d.min() >= -0.002  # tucked under the skin by 1 mm, never deeper
    e = np.sort(np.concatenate([shell.tris[:, [0, 1]], shell.tris[:, [1, 2]], shell.tris[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    rim = np.unique(uniq[counts == 1])
    assert len(rim) > 20 and np.abs(d[rim] + 0.001).max() < 3e-4  # the open boundary sits 1 mm inside the skin
    assert shell.positions[:, 1].min() > CAP_FROM_M - 0.005  # nothing of the bare skull below the cap
    assert (uv_signed_area(shell.uv, shell.tris) > 0).all() and shell.uv.min() >= 0.0 and shell.uv.max() <= 1.0
    out = (shell.normals * (shell.positions - 0.0)).sum(1)
    assert (out[d > 0.005] > 0).all()  # normals point away from the head


def test_bald_analytic_skull_has_no_hair():
    shell, why = _cut(cap=False)
    assert shell is None and "outside the skull" in why


@pytest.fixture(scope="module")
def hair_asset(bundle_dir, tmp_path_factory):
    prepared_prior()
    from engine.asset.build import write_asset
    from engine.avatar import load_avatar

    out = tmp_path_factory.mktemp("hair") / "asset"
    info = write_asset(load_avatar(bundle_dir, device="cpu"), out, texture_size=512, subdiv=1)
    return out, info


def _mesh(glb, name: str):
    from engine.rig.gltf import accessor_array, read_glb

    g, binary = read_glb(glb.read_bytes())
    k = next(i for i, m in enumerate(g["meshes"]) if m["name"] == name)
    prim = g["meshes"][k]["primitives"][0]
    attrs = {a: accessor_array(g, binary, i) for a, i in prim["attributes"].items()}
    attrs["indices"] = accessor_array(g, binary, prim["indices"]).astype(np.int64).reshape(-1, 3)
    node = next(n for n in g["nodes"] if n.get("mesh") == k)
    return g, g["meshes"][k], prim, attrs, node


@pytest.mark.slow
def test_draft_asset_has_a_hair_part(hair_asset):
    out, info = hair_asset
    assert info["hair"] is not None and "hair" in info["parts"], info.get("hair_skipped")
    assert json.loads((out / "asset.json").read_text())["hair"]["triangles"] == info["hair"]["triangles"]
    assert all((out / info["files"][k]).is_file() for k in ("hair_obj", "hair_texture"))
    for glb in ("head.glb", "head_subd1.glb"):
        g, mesh, prim, hair, node = _mesh(out / glb, "hair")
        assert "targets" not in prim and "weights" not in mesh  # brows (or any key) never move the hair
        joints = g["skins"][node["skin"]]["joints"]
        # skinned like the skin by the neck blend (engine.rig.pose): the head's above the throat, the neck's below
        names = np.array([g["nodes"][j]["name"] for j in joints])
        w = hair["WEIGHTS_0"]
        head = (w * (names[hair["JOINTS_0"].astype(int)] == "head")).sum(1)
        neck = (w * (names[hair["JOINTS_0"].astype(int)] == "neck")).sum(1)
        np.testing.assert_allclose(head + neck, 1.0, atol=1e-6)
        blend = NeckBlend.from_dict(g["skins"][0]["extras"]["likeness_neck_blend"])
        np.testing.assert_allclose(head, blend.weights(hair["POSITION"])[:, 2], atol=2e-4)
        assert (head > 0.999).mean() > 0.9
        mat = g["materials"][prim["material"]]
        assert mat["name"] == "likeness_hair" and g["textures"][mat["pbrMetallicRoughness"]["baseColorTexture"]
                                                                ["index"]]["source"] == 3  # fmt: skip
        assert len(hair["indices"]) == info["hair"]["triangles"] <= 20000
    _, _, _, skin, _ = _mesh(out / "head.glb", "skin")
    sv, idx = weld(skin["POSITION"].astype(np.float64))
    st = idx[skin["indices"]]
    c = sv.mean(0)
    if (np.cross(sv[st[:, 1]] - sv[st[:, 0]], sv[st[:, 2]] - sv[st[:, 0]]) * (sv[st].mean(1) - c)).sum() < 0:
        st = st[:, ::-1]
    hp = hair["POSITION"].astype(np.float64)
    d, _ = surface_distance_fn(sv, st)(hp)
    # behind the nearest skin plane is inside only where the winding number says so (beside an ear it is not)
    behind = d < 0
    d[behind] = np.where(winding_numbers(hp[behind], sv, st) > 0.5, d[behind], -d[behind])
    assert d.min() >= -0.002, d.min()  # outside the skin, the boundary tucked 1 mm under it
    assert info["hair"]["min_to_skin_mm"] >= -2.0
    assert np.median(d) > 0.005  # a shell over the skull, not the skin again
    uv = hair["TEXCOORD_0"].astype(np.float64)
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    area = uv_signed_area(np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1), hair["indices"])  # glTF's v runs down
    assert (area > 0).all()


def test_a_bald_head_gets_no_hair_part():
    from types import SimpleNamespace

    from engine.asset.build import hair

    shell, why = hair(None, SimpleNamespace(manifest={"prior": {"colours": {"bald": True, "hair_rgb": [0.8] * 3}}}))
    assert shell is None and "bald" in why  # decided by the build's own verdict, before the field is read


@pytest.mark.slow
def test_asset_views_paints_each_part_from_its_own_texture(hair_asset):
    """scripts/asset_views.py: the hair from hair.png (its material's baseColor), the other parts from the atlas."""
    import importlib.util
    from pathlib import Path

    from PIL import Image

    script = Path(__file__).resolve().parents[1] / "scripts" / "asset_views.py"
    spec = importlib.util.spec_from_file_location("asset_views", script)
    views = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(views)
    out, info = hair_asset
    parts, atlas = views.load_parts(out / "head.glb", posed=False)
    by_name = {p["name"]: p for p in parts}
    png = {k: np.asarray(Image.open(out / info["files"][k]).convert("RGB")) for k in ("texture", "hair_texture")}
    assert np.array_equal(by_name["hair"]["texture"], png["hair_texture"])
    assert all(np.array_equal(p["texture"], png["texture"]) for n, p in by_name.items() if n != "hair")
    red = dict(by_name["hair"], texture=np.zeros((4, 4, 3), np.uint8) + np.uint8([200, 0, 0]))
    img = views.render([red], 180.0, 96)
    drawn = (img != 60).any(-1)  # not the background
    assert drawn.sum() > 500 and (img[drawn][:, 1:] == 0).all() and (img[drawn][:, 0] > 0).all()


@pytest.mark.slow
def test_a_bald_asset_has_no_hair_files(hair_asset, bundle_dir, tmp_path):
    """A head the build found bald, written over an asset with hair: the six parts, the earlier hair files gone,
    none in asset.json's files nor among the files the build's manifest would list (engine/pipeline.py)."""
    import shutil
    from dataclasses import replace

    from engine.asset.build import HAIR_FILES, write_asset
    from engine.asset.parts import ASSET_PARTS
    from engine.avatar import load_avatar
    from engine.io.manifest import OPTIONAL_FILES
    from engine.rig.gltf import read_glb

    out = tmp_path / "asset"
    shutil.copytree(hair_asset[0], out)
    assert all((out / name).is_file() for name in HAIR_FILES.values())
    av = load_avatar(bundle_dir, device="cpu")
    bald = replace(av, manifest={**av.manifest, "prior": {"colours": {"bald": True}}})
    info = write_asset(bald, out, texture_size=256, subdiv=0)
    assert info["hair"] is None and "bald" in info["hair_skipped"] and info["parts"] == list(ASSET_PARTS)
    assert not set(HAIR_FILES) & set(info["files"]) and not any((out / n).exists() for n in HAIR_FILES.values())
    listed = {k for k, v in OPTIONAL_FILES.items() if k.startswith("asset_") and (tmp_path / v).is_file()}
    assert listed and not any(k.startswith("asset_hair") for k in listed)
    g, _ = read_glb((out / "head.glb").read_bytes())
    assert [m["name"] for m in g["meshes"]] == list(ASSET_PARTS)


def test_winding_numbers_tell_inside_from_beside_a_thin_part():
    """The inside test the hair's gaps are signed by: ~1 inside the skull, ~0 outside, and 0 beside a thin fin
    (an ear) where the nearest triangle's plane says "behind" -- the case the plane's sign gets wrong."""
    sv, sf = _skull_skin()
    fin_v = np.array([[SKULL_M - 0.002, 0.0, -0.02], [SKULL_M + 0.03, 0.0, -0.02], [SKULL_M - 0.002, 0.03, 0.02]])
    v = np.concatenate([sv, fin_v])
    n = len(sv)
    f = np.concatenate([sf, [[n, n + 1, n + 2], [n, n + 2, n + 1]]])  # a two-sided fin sticking out of the side
    w = winding_numbers(
        np.array([[0.0, 0.0, 0.0], [0.0, 0.05, 0.0], [0.2, 0.0, 0.0], [SKULL_M + 0.01, 0.012, 0.01]]), v, f
    )
    assert w[0] > 0.99 and w[1] > 0.99 and abs(w[2]) < 0.01 and abs(w[3]) < 0.05, w


@pytest.mark.slow
def test_a_builds_asset_has_the_hair_sides(bundle_dir):
    """The build's own asset stage reads the prior's hair and skin colours as ``likeness asset`` does (it was
    built without them before session 14, so a build's asset had no hair below the brows and no ear verdict)."""
    info_path = bundle_dir / "asset" / "asset.json"
    if not info_path.is_file():
        pytest.skip("the bundle has no asset (the head prior is not prepared)")
    hair = json.loads(info_path.read_text())["hair"]
    assert hair is not None and set(hair["ears_under_hair"]) == {"left", "right"}, hair
