"""The asset's ARKit morph targets: the template's own 52 deltas, made to move only what they name, and measured.

``clean_deltas`` (applied by engine.asset.build before the similarity to world): every key's skin delta fades
out below the chin (to 0 at the neck cut, so no key moves where the head meets a body), and each eyeLook* key
moves its eyeball by the rigid rotation that best fits the template's delta, about the eyeball's sphere centre
(the template's deltas also translate the eyeball's centre by ~1.9 mm and change its radius).

``rig_report`` measures a set of deltas on template-indexed vertices (scripts/asset_rig_check.py, the tests).
Pure functions of arrays; metres in, millimetres in the report. docs/ASSET.md."""

from __future__ import annotations

import numpy as np

from engine.asset.snap import smoothstep
from engine.prior.model import PARTS, HeadPrior
from engine.rig.pose import rotation_angle_deg

CHIN_LANDMARK = 152
"""mediapipe's chin (the lowest point of the face oval)."""
EYE_CORNERS = {"eye_R": (33, 133), "eye_L": (362, 263)}
"""mediapipe's eye-corner landmarks (outer, inner) of each eye (eye_L is the subject's left, +X)."""
NECK_FADE_M = (0.006, 0.026)
"""Below the chin, key deltas on the skin are kept whole down to the first depth and are 0 from the second on (the
template's neck cut is 3.1 cm below its chin)."""
HAIRLINE_Y_M = 0.07
"""Template skin above this height (the prior's frame: 0 at eye height) is the scalp (engine.asset.snap's face
region ends there)."""
FAR_BELOW_CHIN_M = 0.04
"""The issue's bar: skin further than this below the chin moves at most JAW_NECK_BAR_M under jawOpen."""
JAW_NECK_BAR_M = 0.002
CORNER_RADIUS_M = 0.005
"""Skin within this of an eye-corner landmark counts as the corner."""


def landmark_points(prior: HeadPrior, verts: np.ndarray, idx) -> np.ndarray:
    """(len(idx), 3) mediapipe landmarks ``idx`` on template-indexed vertices (V, 3) (or deltas (V, 3))."""
    tri = prior.triangles[prior.landmark_tri[np.asarray(idx)]]
    return (prior.landmark_bary[np.asarray(idx)][:, :, None] * np.asarray(verts)[tri]).sum(1)


def rigid_fit(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares rotation R (3, 3) and translation t (3,) with q ~ p @ R.T + t (Kabsch), and the RMS residual."""
    cp, cq = p.mean(0), q.mean(0)
    u, _, vt = np.linalg.svd((p - cp).T @ (q - cq))
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    t = cq - cp @ rot.T
    return rot, t, float(np.sqrt(((p @ rot.T + t - q) ** 2).sum(1).mean()))


def sphere_fit(p: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere (centre (3,), radius) through points (N, 3)."""
    a = np.c_[2.0 * p, np.ones(len(p))]
    sol = np.linalg.lstsq(a, (p * p).sum(1), rcond=None)[0]
    c = sol[:3]
    return c, float(np.sqrt(max(sol[3] + c @ c, 0.0)))


def up_axis(prior: HeadPrior, verts: np.ndarray) -> np.ndarray:
    """The template's +Y (3,) in the frame of ``verts`` (V, 3): the rotation of a rigid fit of the skin."""
    skin = prior.part == PARTS.index("skin")
    rot, _, _ = rigid_fit(prior.vertices[skin].astype(np.float64), np.asarray(verts, np.float64)[skin])
    return rot[:, 1]


def neck_fade(prior: HeadPrior) -> np.ndarray:
    """(V,) 1 on the skin down to NECK_FADE_M[0] below the template's chin, 0 from NECK_FADE_M[1] below it (and on
    the neck cut), smooth between; 1 on the other parts."""
    v = prior.vertices.astype(np.float64)
    below = landmark_points(prior, v, [CHIN_LANDMARK])[0, 1] - v[:, 1]
    w = smoothstep(below, NECK_FADE_M[1], NECK_FADE_M[0])
    return np.where(prior.part == PARTS.index("skin"), w, 1.0)


def eyeball_rotation_delta(eye: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, dict]:
    """The rigid rotation that best fits ``eye + delta`` (N, 3), applied about the eye's sphere centre, as a delta
    (N, 3); and what it is (angle, the fit's residual, how far the template's delta moved the centre)."""
    rot, t, rms = rigid_fit(eye, eye + delta)
    c, _ = sphere_fit(eye)
    new = (eye - c) @ rot.T + c - eye
    return new, {
        "angle_deg": round(rotation_angle_deg(rot), 2),
        "template_rms_mm": round(1000 * rms, 3),
        "template_centre_shift_mm": round(1000 * float(np.linalg.norm(c @ rot.T + t - c)), 3),
    }


def clean_deltas(prior: HeadPrior, deltas: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """The template's ARKit deltas (52, V, 3) (prior frame, metres) made to move only what they name (module
    docstring), and a note of what changed."""
    d = np.array(prior.arkit_deltas if deltas is None else deltas, np.float64)
    fade = neck_fade(prior)
    before = np.linalg.norm(d, axis=2)
    d *= fade[None, :, None]
    eyes = {}
    for k, name in enumerate(prior.arkit_names):
        if not name.startswith("eyeLook"):
            continue
        part = "eye_L" if name.endswith("Left") else "eye_R"
        sel = prior.part == PARTS.index(part)
        d[k, sel], eyes[name] = eyeball_rotation_delta(prior.vertices[sel].astype(np.float64), d[k, sel])
    cut = (before * (1.0 - fade)[None]).max(1)
    note = {
        "neck_fade_below_chin_m": list(NECK_FADE_M),
        "neck_motion_removed_max_mm": {
            n: round(1000 * float(c), 2) for n, c in zip(prior.arkit_names, cut, strict=True) if c > 5e-4
        },
        "eyeball_rotation": eyes,
    }
    return d, note


def _boundary_vertices(prior: HeadPrior) -> np.ndarray:
    q = prior.quads[prior.part[prior.quads[:, 0]] == PARTS.index("skin")]
    e = np.sort(np.concatenate([q[:, [0, 1]], q[:, [1, 2]], q[:, [2, 3]], q[:, [3, 0]]]), axis=1)
    edges, counts = np.unique(e, axis=0, return_counts=True)
    return np.unique(edges[counts == 1])


def _mm(x) -> float:
    return round(1000.0 * float(x), 2)


def rig_report(prior: HeadPrior, verts: np.ndarray, deltas: np.ndarray, names: list[str] | None = None) -> dict:
    """Per key (``deltas`` (K, V, 3) metres on template-indexed ``verts`` (V, 3), the neutral): the largest motion
    per part; on the skin the share of motion below the chin, the largest motion > 2 cm and > 4 cm below it and on
    the neck cut, on the scalp; for jawOpen whether the lower teeth and tongue follow the chin; for eyeLook* the
    eyeball's rigid fit (angle, residual) and the eye corners' skin motion and gap to the eyeball."""
    v = np.asarray(verts, np.float64)
    names = list(prior.arkit_names if names is None else names)
    part = prior.part
    skin = part == PARTS.index("skin")
    up = up_axis(prior, v)
    chin = landmark_points(prior, v, [CHIN_LANDMARK])[0]
    below = (chin - v) @ up  # metres below the chin
    scalp = skin & (prior.vertices[:, 1] > HAIRLINE_Y_M)
    cut = _boundary_vertices(prior)
    far = skin & (below > FAR_BELOW_CHIN_M)
    keys = {}
    for k, name in enumerate(names):
        d = np.asarray(deltas[k], np.float64)
        m = np.linalg.norm(d, axis=1)
        ms = np.where(skin, m, 0.0)
        r: dict = {"max_mm": {p: _mm(m[part == i].max()) for i, p in enumerate(PARTS)}}
        r["skin_share_below_chin"] = round(float(ms[below > 0].sum() / max(ms.sum(), 1e-12)), 4)
        r["skin_max_2cm_below_chin_mm"] = _mm(ms[below > 0.02].max(initial=0.0))
        r["skin_max_neck_cut_mm"] = _mm(m[cut].max())
        r["scalp_max_mm"] = _mm(m[scalp].max())
        if name == "jawOpen":
            dchin = landmark_points(prior, d, [CHIN_LANDMARK])[0]
            r["chin_mm"] = _mm(np.linalg.norm(dchin))
            r["skin_max_4cm_below_chin_mm"] = _mm(ms[far].max()) if far.any() else None
            r["skin_vertices_4cm_below_chin"] = int(far.sum())
            for p in ("teeth_lower", "tongue"):
                sel = part == PARTS.index(p)
                mean = d[sel].mean(0)
                rot, _, rms = rigid_fit(v[sel], v[sel] + d[sel])
                cos = float(mean @ dchin / max(np.linalg.norm(mean) * np.linalg.norm(dchin), 1e-12))
                r[p] = {
                    "mean_mm": _mm(np.linalg.norm(mean)),
                    "of_chin": round(float(np.linalg.norm(mean) / max(np.linalg.norm(dchin), 1e-12)), 3),
                    "cos_to_chin": round(cos, 3),
                    "rotation_deg": round(rotation_angle_deg(rot), 2),
                    "rigid_rms_mm": round(1000 * rms, 3),
                    "moves_with_jaw": bool(cos > 0.7 and np.linalg.norm(mean) > 0.3 * np.linalg.norm(dchin)),
                }
        if name.startswith("eyeLook"):
            eye = "eye_L" if name.endswith("Left") else "eye_R"
            sel = part == PARTS.index(eye)
            rot, t, rms = rigid_fit(v[sel], v[sel] + d[sel])
            c0, r0 = sphere_fit(v[sel])
            c1, r1 = sphere_fit(v[sel] + d[sel])
            corners = landmark_points(prior, v, EYE_CORNERS[eye])
            dcorner = landmark_points(prior, d, EYE_CORNERS[eye])
            near = skin & (np.linalg.norm(v[:, None] - corners[None], axis=2).min(1) < CORNER_RADIUS_M)
            gap0 = np.linalg.norm(corners - c0, axis=1) - r0
            gap1 = np.linalg.norm(corners + dcorner - c1, axis=1) - r1
            r["eyeball"] = {
                "angle_deg": round(rotation_angle_deg(rot), 2),
                "rigid_rms_mm": round(1000 * rms, 3),
                "centre_shift_mm": _mm(np.linalg.norm(c1 - c0)),
                "radius_change_mm": _mm(r1 - r0),
            }
            r["corners"] = {
                "skin_max_mm": _mm(m[near].max(initial=0.0)),
                "landmark_mm": [_mm(x) for x in np.linalg.norm(dcorner, axis=1)],
                "gap_change_mm": [_mm(x) for x in gap1 - gap0],
            }
        keys[name] = r
    jaw = keys.get("jawOpen", {})
    far_max = jaw.get("skin_max_4cm_below_chin_mm")
    return {
        "neck_cut_below_chin_cm": [round(100 * float(below[cut].min()), 2), round(100 * float(below[cut].max()), 2)],
        "skin_vertices_4cm_below_chin": int(far.sum()),
        "bars": {
            "jawOpen_skin_4cm_below_chin_mm": {
                "bar": _mm(JAW_NECK_BAR_M),
                "value": far_max,
                "pass": None if far_max is None else far_max <= _mm(JAW_NECK_BAR_M),
            },
            "jawOpen_neck_cut_mm": jaw.get("skin_max_neck_cut_mm"),
            "jaw_parts_follow": all(jaw.get(p, {}).get("moves_with_jaw", False) for p in ("teeth_lower", "tongue")),
            "eyeLook_max_rigid_rms_mm": max(
                (r["eyeball"]["rigid_rms_mm"] for r in keys.values() if "eyeball" in r), default=None
            ),
        },
        "keys": keys,
    }
