"""The harness all the way round (issue 13 item 5): the full-circle camera grid, the turntable defect score on
synthetic turntables the test paints itself (a radial fan, vertical streaks, a flat wall, front colours on the
back vs a smooth head), and the dlib identity distance on real photos (skipped without the dev extra or
../shared)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from conftest import SHARED  # noqa: E402

PORTRAITS = SHARED / "portraits"


# ------------------------------------------------------------------------------------------------ the full grid
def test_full_grid_cameras():
    from harness import groundtruth as gt
    from make_groundtruth import _views, parse_args

    views = _views(parse_args(["--grid", "full", "-o", "/tmp/unused"]))
    names = [n for n, _, _ in views]
    assert names[0] == "input" and len(names) == len(set(names)) == 14
    got = {(y, p) for _, y, p in views[1:]}
    want = {(y, 0.0) for y in (30, -30, 60, -60, 90, -90, 120, -120, 150, -150, 180)} | {(0.0, 20.0), (0.0, -20.0)}
    assert got == want  # yaw 0 / pitch 0 is the input view, 180 appears once
    assert "yaw+180_pitch+00" in names and "yaw-150_pitch+00" in names
    # Buckets fold |yaw| into [0, 180].
    assert [gt.yaw_bucket(y) for y in (0, -30, 150, -150, 180, -180, 210)] == [0, 30, 150, 150, 180, 180, 150]
    # Cameras orbit the head: yaw 180 looks at the back from -Z, yaw +90 from the subject's left (+X).
    for yaw, pos in ((180.0, (0, 0, -1)), (90.0, (1, 0, 0)), (-90.0, (-1, 0, 0))):
        c2w = gt.camera(yaw, 0.0, 0.85)
        assert np.allclose(c2w[:3, 3], 0.85 * np.array(pos), atol=1e-9)
        assert np.allclose(c2w[:3, :3] @ np.array([0, 0, -1.0]), -np.array(pos), atol=1e-9)  # looks at the centre
    # The default grid is unchanged (yaw +-45 in 15 deg steps x pitch -20/0/20, input excluded).
    default = _views(parse_args(["-o", "/tmp/unused"]))
    assert len(default) == 1 + 7 * 3 - 1
    tt = _views(parse_args(["--grid", "turntable", "--frames", "8", "-o", "/tmp/unused"]))
    assert [round(y) for _, y, _ in tt[1:]] == [0, 45, 90, 135, 180, -135, -90, -45]


def test_buckets_fold_and_mean():
    from harness.scoring import yaw_buckets

    rows = [
        {"yaw_deg": y, "pitch_deg": 0.0, "psnr_db": float(p), "iou": 0.5}
        for y, p in ((150, 10), (-150, 20), (180, 30), (0, 40))
    ]
    b = {r["bucket"]: r for r in yaw_buckets(rows)}
    assert list(b) == ["|yaw| = 0", "|yaw| = 150", "|yaw| = 180"]
    assert b["|yaw| = 150"]["views"] == 2 and b["|yaw| = 150"]["psnr_db"] == 15.0
    assert b["|yaw| = 180"]["depth_mm"] is None  # absent keys stay None


# ------------------------------------------------------------------------------------------------ defect score
N, S = 36, 160  # frames, side


def _turntable(fan=False, streaks=False, wall=False, smear=False, seed=0):
    """A painted head turning round: an ellipse silhouette whose width follows a real head's (or a box's, with
    ``wall``), hair-brown with fine isotropic texture, a skin face and blue clothing at the front."""
    from harness.defects import Turntable
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64)
    cx, cy = S / 2, S * 0.42
    a_half, c_half, hh = 0.23 * S, 0.29 * S, 0.33 * S  # half breadth, half depth, half height (px)
    hair, skin, cloth = np.array([0.30, 0.20, 0.12]), np.array([0.85, 0.65, 0.55]), np.array([0.15, 0.25, 0.55])
    rgb = np.zeros((N, S, S, 3), np.float32)
    alpha = np.zeros((N, S, S), np.float32)
    for i in range(N):
        t = np.radians(360.0 * i / N)
        if wall:
            half = a_half * abs(np.cos(t)) + c_half * abs(np.sin(t))  # a box: kinks where a side is edge-on
        else:
            half = np.sqrt((a_half * np.cos(t)) ** 2 + (c_half * np.sin(t)) ** 2)
        head = ((xx - cx) / half) ** 2 + ((yy - cy) / hh) ** 2 <= 1.0
        body = (yy > cy + 0.8 * hh) & (np.abs(xx - cx) < 0.45 * S)
        tex = gaussian_filter(rng.normal(0, 1, (S, S)), 1.0) * 0.05
        img = hair[None, None] * (1.0 + tex[..., None])
        front = np.cos(t)  # how much of the face is toward the camera
        if front > 0.2:
            face = ((xx - cx - 0.5 * half * np.sin(t)) / (0.6 * half)) ** 2 + ((yy - cy - 0.2 * hh) / (0.7 * hh)) ** 2
            img = np.where((face <= 1.0)[..., None], skin, img)
        img = np.where(body[..., None], cloth, img)
        back = abs(360.0 * i / N - 180.0) <= 20.0
        if back and fan:  # radial stripes around a point in the middle of the back of the head
            ang = np.arctan2(yy - cy, xx - cx)
            img = img * (1.0 + 0.6 * np.sign(np.sin(12 * ang)))[..., None]
        if back and streaks:  # light and dark columns down the whole back
            img = img * (1.0 + 0.3 * np.sign(np.sin(xx * 2 * np.pi / 9.0)))[..., None]
        if back and smear:  # the face's skin copied through onto the back of the head
            patch = ((xx - cx) / (0.6 * half)) ** 2 + ((yy - cy - 0.1 * hh) / (0.6 * hh)) ** 2 <= 1.0
            img = np.where(patch[..., None], skin, img)
        rgb[i] = np.clip(img, 0, 1)
        alpha[i] = head | body
    return Turntable(np.arange(N) * 360.0 / N, rgb, alpha, "painted")


@pytest.fixture(scope="module")
def smooth_report():
    from harness.defects import score_turntable

    return score_turntable(_turntable())


def test_smooth_turntable_passes(smooth_report):
    from harness.defects import THRESHOLDS

    s = smooth_report.scores
    assert smooth_report.ok, s
    assert all(s[k] < 0.5 * THRESHOLDS[k] for k in ("fan", "streaks", "smear")), s
    assert s["walls"] < THRESHOLDS["walls"]  # an ellipse: pixel rounding only


@pytest.mark.parametrize("defect", ["fan", "streaks", "walls", "smear"])
def test_painted_defect_is_flagged(defect, smooth_report):
    from harness.defects import score_turntable

    r = score_turntable(_turntable(**{{"walls": "wall"}.get(defect, defect): True}))
    assert not r.passed[defect], (defect, r.scores)
    assert r.scores[defect] > smooth_report.scores[defect]


def test_defect_cli_reads_a_frame_folder(tmp_path):
    from PIL import Image
    from turntable_defects import main

    tt = _turntable(fan=True)
    for i in range(N):
        rgba = np.concatenate([tt.rgb[i], tt.alpha[i][..., None]], -1)
        Image.fromarray((rgba * 255 + 0.5).astype(np.uint8)).save(tmp_path / f"frame_{i:03d}.png")
    assert main([str(tmp_path), "--json", str(tmp_path / "d.json")]) == 1  # flagged
    assert main([str(tmp_path / "nothing")]) == 2


# ------------------------------------------------------------------------------------------------ identity
def _photo(name: str) -> np.ndarray:
    from PIL import Image

    im = Image.open(PORTRAITS / name).convert("RGB")
    im.thumbnail((800, 800))
    return np.asarray(im)


def test_identity_on_real_photos():
    from harness import identity

    ok, why = identity.available()
    if not ok:
        pytest.skip(why)
    if not (PORTRAITS / "maxrec_Chris.jpeg").is_file():
        pytest.skip("../shared/portraits absent")
    chris, woman = _photo("maxrec_Chris.jpeg"), _photo("singnet_woman_portrait.jpg")
    a = identity.describe(chris)
    assert a is not None and a.vector.shape == (128,) and a.detector == "hog"
    mirrored = identity.descriptor(np.ascontiguousarray(chris[:, ::-1]))
    other = identity.descriptor(woman)
    assert identity.distance(a, mirrored) < 0.3  # the same photo mirrored: the same person
    assert identity.distance(a, other) > identity.SAME_PERSON  # two different people
    assert identity.distance(a, None) is None
    # Nothing to find in a flat grey image.
    assert identity.describe(np.full((200, 200, 3), 128, np.uint8)) is None


def test_identity_script_without_dev_extra(monkeypatch, capsys):
    import identity as script
    from harness import identity

    monkeypatch.setattr(identity, "available", lambda: (False, "identity distance unavailable: dlib-bin missing"))
    assert script.main(["out/demo"]) == 2
    assert capsys.readouterr().out.strip().count("\n") == 0


# ------------------------------------------------------------------------------------------------ template heads
def _template(name: str, tex_size: int = 256):
    from harness.template_heads import template_head
    from prior_support import prepared_prior

    prior = prepared_prior()
    return prior, template_head(name, tex_size=tex_size, prior=prior)


def _texel(part, uv: np.ndarray) -> np.ndarray:
    h, w = part.texture.shape[:2]
    x = np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
    y = np.clip(((1.0 - uv[:, 1]) * h).astype(int), 0, h - 1)
    return part.texture[y, x].astype(np.float64) / 255.0


def test_template_subjects_are_whole_varied_heads():
    """The subjects made from the prior: the same head every time, different heads for different names, each with
    a skull behind the ears, ears and a neck; hair only on the scalp and over it, a bald subject without it."""
    from harness.template_heads import SUBJECTS, hair_weight

    prior, a = _template("template-a")
    _, a2 = _template("template-a")
    assert [p.name for p in a] == ["template", "hair", "shoulders"]
    assert np.array_equal(a[0].verts, a2[0].verts) and np.array_equal(a[0].texture, a2[0].texture)
    skin = prior.part == 0
    heads = {n: _template(n)[1] for n in SUBJECTS}
    for n, parts in heads.items():
        v = parts[0].verts[skin]
        assert v[:, 2].min() < -0.08 and v[:, 2].max() > 0.09, n  # the back of the skull and the nose
        assert (np.abs(v[:, 0]) > 0.07).sum() > 50, n  # the ears stand out of the skull
        assert v[:, 1].min() < -0.12, n  # a neck below the jaw
        assert ("hair" in [p.name for p in parts]) == (SUBJECTS[n].volume_m > 0 and not SUBJECTS[n].bald), n
    names = list(SUBJECTS)
    for i, m in enumerate(names):
        for n in names[i + 1 :]:
            rms = np.sqrt(((heads[m][0].verts[skin] - heads[n][0].verts[skin]) ** 2).sum(1).mean())
            assert rms > 0.002, (m, n, rms)  # varied shapes and expressions, millimetres apart
    # Hair: none on the face or the ears, all of it over the crown and the back of the skull.
    s = SUBJECTS["template-a"]
    w = hair_weight(prior.landmarks(), s)
    assert w[:468].max() < 0.05
    ear = skin & (np.abs(prior.vertices[:, 0]) > 0.076)  # the ears stand out beyond the skull
    assert hair_weight(prior.vertices[ear], s).max() < 0.3
    top = skin & (prior.vertices[:, 1] > prior.vertices[skin, 1].max() - 0.01)
    back = skin & (prior.vertices[:, 2] < prior.vertices[skin, 2].min() + 0.01) & (np.abs(prior.vertices[:, 1]) < 0.03)
    assert hair_weight(prior.vertices[top], s).min() > 0.95 and hair_weight(prior.vertices[back], s).min() > 0.95
    # The shell stands off the scalp by up to the subject's volume, never inside it.
    from scipy.spatial import cKDTree

    d, _ = cKDTree(a[0].verts[skin]).query(a[1].verts)
    assert 0.5 * s.volume_m < d.max() <= s.volume_m + 1e-6


def test_template_texture_paints_the_features():
    """Skin at the nose and cheeks, red lips, darker brows, hair on the crown, the iris in front of each eyeball:
    sampled at the template's landmarks through its UVs."""
    from harness.template_heads import LIPS_OUTER, SUBJECTS

    prior, parts = _template("template-c", tex_size=512)
    s, head = SUBJECTS["template-c"], parts[0]
    tri_uv = np.concatenate([prior.quad_uv[:, [0, 1, 2]], prior.quad_uv[:, [0, 2, 3]]])
    lm_uv = (prior.landmark_bary[:, :, None] * prior.uv[tri_uv[prior.landmark_tri]]).sum(1)
    col = _texel(head, lm_uv)
    skin = np.asarray(s.skin)
    assert np.abs(col[[1, 4, 50, 280]] - skin).max() < 0.08  # nose tip, nose bridge, cheeks
    lips = col[LIPS_OUTER].mean(0)
    assert lips[0] - lips[1] > skin[0] - skin[1] + 0.05  # redder than the skin
    mid = 0.5 * (lm_uv[[52, 65, 282, 295]] + lm_uv[[105, 66, 334, 296]])  # between the brows' lower and upper lines
    brow = _texel(head, mid).mean(0)
    assert brow.mean() < skin.mean() - 0.15, (brow, skin)  # brows darker than the skin
    crown = (prior.part == 0) & (prior.vertices[:, 1] > prior.vertices[prior.part == 0, 1].max() - 0.005)
    vi = np.nonzero(crown)[0]
    corner = np.isin(prior.quads, vi)
    crown_uv = prior.uv[prior.quad_uv[corner]]
    assert np.abs(np.median(_texel(head, crown_uv), 0) - np.asarray(s.hair)).max() < 0.08
    # The eyeballs: the iris (the subject's colour) where they look (+Z), sclera at their side.
    for k in (1, 2):
        vi = np.nonzero(prior.part == k)[0]
        c = prior.vertices[vi].mean(0)
        d = prior.vertices[vi] - c
        front = vi[np.argmax(d[:, 2])]
        side = vi[np.argmax(np.abs(d[:, 0]))]
        q_front = prior.quad_uv[np.isin(prior.quads, [front])]
        q_side = prior.quad_uv[np.isin(prior.quads, [side])]
        assert _texel(head, prior.uv[q_side]).mean() > 0.75  # sclera
        front_rgb = _texel(head, prior.uv[q_front]).mean(0)
        assert front_rgb.mean() < 0.1 or front_rgb[2] > front_rgb[0] + 0.1  # the pupil or template-c's blue iris


@pytest.mark.blender
def test_template_head_renders_a_face_all_the_way_round(tmp_path):
    """Rendered with bpy from the input camera mediapipe finds one face; seen from the side the ear stands out of
    the silhouette, from the back there is a whole head (no hole), and Blender's silhouettes match the exact
    rasterised ones at every camera."""
    pytest.importorskip("bpy")
    from make_groundtruth import make_groundtruth, parse_args
    from PIL import Image

    from engine.face.landmarks import detect_faces

    out = tmp_path / "gt"
    args = ["--head", "template-b", "-o", str(out), "--engine", "workbench", "--size", "256", "--tex-size", "512"]
    meta = make_groundtruth(parse_args([*args, "--views=90:0,180:0"]))
    if meta is None:
        pytest.skip("the head prior is not prepared")
    assert min(v["blender_vs_raster_iou"] for v in meta["views"].values()) > 0.99
    photo = np.asarray(Image.open(out / "input.png").convert("RGB"))
    assert len(detect_faces(photo)[0]) == 1
    back = np.asarray(Image.open(out / "yaw+180_pitch+00_mask.png")) > 127
    rows = np.nonzero(back.any(1))[0]
    head_rows = back[rows[0] : rows[0] + int(0.25 * (rows[-1] - rows[0]))]
    spans = [np.ptp(np.nonzero(r)[0]) + 1 for r in head_rows if r.any()]
    filled = np.array([r.sum() for r in head_rows if r.any()]) / np.array(spans)
    assert len(spans) > 20 and filled.min() > 0.98  # every row of the skull is solid from behind: no hole
