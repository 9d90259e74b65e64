"""The 52 ARKit blendshapes, authored by Likeness on the face proxy (no third-party face model).

Each shape is a displacement field on the proxy's vertices (world metres), built from *handles*: a few named
landmarks with a displacement each (sized by the subject's own face: mouth width, eye width, eye aperture, face
height), spread over the mesh by Shepard interpolation in *geodesic* distance (so the mouth and eye holes keep the
upper lip from dragging the lower one) and faded to zero with a smooth falloff. The jaw is a rotation about a
hinge, weighted by a jaw mask that is 1 on the lower lip and chin and 0 above the mouth.

Left shapes are authored once; each Right shape is the Left rule applied to the mirror image of the face and
mirrored back, so the two sides are exact mirror images of one procedure. "Left" is the subject's left (+X)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from engine.face.mesh import FLIP_X
from engine.rig import topology as T
from engine.rig.arkit import ARKIT_NAMES, INDEX, N_SHAPES

JAW_OPEN_DEG = 25.0
"""Jaw rotation at jawOpen = 1, degrees, about the hinge's x axis (chin down and back)."""
BLINK_UPPER_SHARE = 0.8
BLINK_RADIUS = 0.9
BLINK_FOLD = 0.95
"""Share of the lid edge's travel the first ring of lid skin above it follows in a blink: the lash and crease band
between them folds away, as a real upper lid's skin unfolds over the eye."""
JAW_FORWARD = 0.035
"""jawForward = 1 moves the jaw forward (+Z) by this fraction of the face height."""
JAW_SIDE = 0.05
"""jawLeft = 1 moves the jaw toward the subject's left (+X) by this fraction of the face height."""
X, Y, Z = np.eye(3)


@dataclass(frozen=True)
class Measures:
    """Sizes of one face, metres, from its proxy vertices."""

    face_height: float
    mouth_width: float
    eye_width: float
    aperture: float
    hinge: np.ndarray

    @staticmethod
    def of(v: np.ndarray) -> Measures:
        h = float(np.linalg.norm(v[T.FOREHEAD] - v[T.CHIN]))
        mw = float(np.linalg.norm(v[T.MOUTH_CORNER["left"]] - v[T.MOUTH_CORNER["right"]]))
        ew = 0.5 * sum(float(np.linalg.norm(v[T.EYE_OUTER[s]] - v[T.EYE_INNER[s]])) for s in ("left", "right"))
        c = T.contours()
        ap = np.mean([_aperture(v, c[f"eye_{s}_upper"], c[f"eye_{s}_lower"]) for s in ("left", "right")])
        ears = 0.5 * (v[T.FACE_EDGE["left"]] + v[T.FACE_EDGE["right"]])
        # The jaw hinge (temporomandibular joint): on the midline, just below and in front of the ear landmarks.
        hinge = np.array([0.0, ears[1] - 0.06 * h, ears[2] - 0.03 * h])
        return Measures(h, mw, ew, float(max(ap, 0.15 * ew)), hinge)


def _aperture(v, upper, lower) -> float:
    """Mean lid-to-lid distance over the middle of the eye."""
    u = v[upper[2:-2]]
    lo = v[lower[2:-2]]
    return float(np.abs(u[:, 1].mean() - lo[:, 1].mean()))


def _by_x(points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o = np.argsort(points[:, 0])
    return points[o, 0], values[o]


def smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class Author:
    """Shape authoring on one face geometry ``v`` (N_PROXY, 3), world metres."""

    def __init__(self, v: np.ndarray, ref: np.ndarray | None = None) -> None:
        """``ref`` (default ``v``) is the geometry that decides which vertices belong to a region (jaw line, the
        skin under an eye): fixed while a rig's neutral face is iterated, so the shapes depend smoothly on it."""
        self.v = np.asarray(v, dtype=np.float64)
        self.ref = self.v if ref is None else np.asarray(ref, dtype=np.float64)
        self.m = Measures.of(self.v)
        self.c = T.contours()
        self.geo = _geodesics(self.v)  # (468, 468) geodesic distances along mesh edges, metres
        self.geo_ref = self.geo if ref is None else _geodesics_cached(self.ref.tobytes())
        self._jaw = None

    # ------------------------------------------------------------------ building blocks
    def spread(self, seeds, disp, radius: float, anchors=()) -> np.ndarray:
        """(N_MESH, 3) displacement: Shepard interpolation (geodesic, power 2) of ``disp`` (k, 3) given at
        ``seeds`` and of zero at ``anchors``, faded to 0 at geodesic ``radius`` from the moving seeds."""
        seeds = list(seeds)
        disp = np.broadcast_to(np.asarray(disp, dtype=np.float64), (len(seeds), 3))
        anchors = [a for a in anchors if a not in seeds]
        idx = seeds + anchors
        vals = np.concatenate([disp, np.zeros((len(anchors), 3))])
        d = self.geo[idx]  # (k, N)
        k = 1.0 / np.maximum(d, 1e-4) ** 2
        interp = (k[:, :, None] * vals[:, None, :]).sum(0) / k.sum(0)[:, None]
        dist = self.geo[seeds].min(0)
        fall = smoothstep(1.0 - dist / radius)
        out = interp * fall[:, None]
        out[idx] = vals
        return out

    def lid_meet(self, side: str, upper_share: float):
        """Per lid vertex, where it meets the other lid when the eye closes: the meeting line lies
        ``1 - upper_share`` of the way from the lower lid to the upper one. Returns (index list, targets)."""
        up, lo = self.c[f"eye_{side}_upper"], self.c[f"eye_{side}_lower"]
        v = self.v
        a, b = v[T.EYE_OUTER[side]], v[T.EYE_INNER[side]]
        axis = (b - a) / np.linalg.norm(b - a)

        def param(idx):
            return (v[idx] - a) @ axis

        pu, pl = param(up), param(lo)
        ou, ol = np.argsort(pu), np.argsort(pl)
        idx, tgt = [], []
        for own, other, po, pot, share in ((up, lo, pu, pl[ol], upper_share), (lo, up, pl, pu[ou], 1.0 - upper_share)):
            ov = v[other][ol if other is lo else ou]
            for i, p in zip(own[1:-1], po[1:-1], strict=True):
                opp = np.array([np.interp(p, pot, ov[:, d]) for d in range(3)])
                idx.append(i)
                tgt.append(v[i] + share * (opp - v[i]))
        return idx, np.array(tgt)

    def lid_ring(self, side: str) -> list[int]:
        """The mesh vertices next to the upper lid's edge, above it: the first ring of lid skin."""
        inner, loop = set(self.c[f"eye_{side}_upper"][1:-1]), set(self.c[f"eye_{side}_loop"])
        ring = set()
        for a, b in T.proxy_edges():
            if a in inner and b not in loop:
                ring.add(int(b))
            if b in inner and a not in loop:
                ring.add(int(a))
        return sorted(ring)

    def jaw_weight(self) -> np.ndarray:
        """(N_MESH,) 1 on the lower lip, chin and jaw line, 0 on the upper lip, nose and above, smooth between
        (ratio of geodesic distances; the mouth hole makes the lips meet only at the corners)."""
        if self._jaw is not None:
            return self._jaw
        v, c = self.ref, self.c
        fh = float(np.linalg.norm(v[T.FOREHEAD] - v[T.CHIN]))
        corners_y = 0.5 * (v[T.MOUTH_CORNER["left"], 1] + v[T.MOUTH_CORNER["right"], 1])
        oval = np.array(c["oval"])
        lower = set(c["lip_outer_lower"][1:-1] + c["lip_inner_lower"][1:-1]) | {T.CHIN}
        lower |= set(oval[v[oval, 1] < corners_y - 0.12 * fh].tolist())
        upper = set(c["lip_outer_upper"][1:-1] + c["lip_inner_upper"][1:-1]) | {T.SUBNASALE, T.NOSE_TIP}
        upper |= set(oval[v[oval, 1] > corners_y + 0.08 * fh].tolist())
        upper |= set(np.nonzero(v[: T.N_MESH, 1] > v[T.SUBNASALE, 1])[0].tolist())
        d_lo = self.geo[sorted(lower)].min(0)
        d_up = self.geo[sorted(upper)].min(0)
        w = d_up / np.maximum(d_up + d_lo, 1e-9)
        self._jaw = smoothstep(w)
        return self._jaw

    def jaw_motion(self, rot_deg: float = 0.0, shift=(0.0, 0.0, 0.0)) -> np.ndarray:
        """(N_MESH, 3) jaw displacement: rotate about the hinge's x axis by ``rot_deg`` and translate by
        ``shift`` (metres), weighted by the jaw mask."""
        v = self.v[: T.N_MESH]
        t = np.radians(rot_deg)
        r = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(t), -np.sin(t)], [0.0, np.sin(t), np.cos(t)]])
        h = self.m.hinge
        moved = (v - h) @ r.T + h + np.asarray(shift)
        return self.jaw_weight()[:, None] * (moved - v)

    def side_ramp(self, idx, side_sign: float) -> np.ndarray:
        """Per lip vertex: 1 at the ``side`` corner, 0.5 on the midline, 0 at the other corner."""
        v = self.v
        xc = 0.5 * (v[T.MOUTH_CORNER["left"], 0] + v[T.MOUTH_CORNER["right"], 0])
        return np.clip(0.5 + side_sign * (v[idx, 0] - xc) / self.m.mouth_width, 0.0, 1.0)

    def centre_profile(self, idx) -> np.ndarray:
        """Per lip vertex: 1 on the midline, 0 at the corners (cosine)."""
        v = self.v
        xc = 0.5 * (v[T.MOUTH_CORNER["left"], 0] + v[T.MOUTH_CORNER["right"], 0])
        t = np.clip(np.abs(v[idx, 0] - xc) / (0.5 * self.m.mouth_width), 0.0, 1.0)
        return np.cos(0.5 * np.pi * t)

    # ------------------------------------------------------------------ the eye discs
    def with_discs(self, d_mesh: np.ndarray, gaze: dict | None = None) -> np.ndarray:
        """(N_PROXY, 3): mesh displacements plus the eye discs, then the iris (centre + ring) slid by
        ``gaze[side]`` metres. A disc vertex a fraction f of the way from the lower lid up to the upper lid (at its
        place along the eye) moves by ``f * upper-lid motion + (1 - f) * lower-lid motion``, so a closing eye
        collapses its disc onto the line where the lids meet."""
        out = np.zeros((T.N_PROXY, 3))
        out[: T.N_MESH] = d_mesh
        for side in ("left", "right"):
            up, lo = self.c[f"eye_{side}_upper"], self.c[f"eye_{side}_lower"]
            disc = [T.IRIS_CENTRE[side]] + list(range(T.RING_START[side], T.RING_START[side] + 16))
            a = self.v[T.EYE_OUTER[side]]
            axis = self.v[T.EYE_INNER[side]] - a
            axis /= np.linalg.norm(axis)
            t_up, t_lo, t_d = (self.v[up] - a) @ axis, (self.v[lo] - a) @ axis, (self.v[disc] - a) @ axis
            o_up, o_lo = np.argsort(t_up), np.argsort(t_lo)

            def along(vals, t, order, tq):
                return np.stack([np.interp(tq, t[order], vals[order, k]) for k in range(3)], 1)

            p_up, p_lo = along(self.v[up], t_up, o_up, t_d), along(self.v[lo], t_lo, o_lo, t_d)
            ap = np.maximum(p_up[:, 1] - p_lo[:, 1], 1e-6)
            f = np.clip((self.v[disc, 1] - p_lo[:, 1]) / ap, 0.0, 1.0)[:, None]
            m_up, m_lo = along(d_mesh[up], t_up, o_up, t_d), along(d_mesh[lo], t_lo, o_lo, t_d)
            out[disc] = f * m_up + (1.0 - f) * m_lo
            # as the lids close, the disc also gives up its depth offset from the lids, so a closed eye's disc
            # lies on the line where the lids meet instead of a sliver of eye behind it
            closure = np.clip((m_lo[:, 1] - m_up[:, 1]) / ap, -1.0, 1.0)[:, None]
            offset = self.v[disc] - (f * p_up + (1.0 - f) * p_lo)
            out[disc] -= closure * offset
            if gaze and side in gaze:
                out[disc] += gaze[side]
        return out

    # ------------------------------------------------------------------ the shapes
    def left_shapes(self) -> dict[str, np.ndarray]:
        """The Left member of each Left/Right pair, (N_PROXY, 3) each."""
        v, m, c = self.v, self.m, self.c
        mw, ew, ap, fh = m.mouth_width, m.eye_width, m.aperture, m.face_height
        side = "left"
        up, lo = c["eye_left_upper"], c["eye_left_lower"]
        corners = [T.EYE_OUTER[side], T.EYE_INNER[side]]
        brow = c["brow_left_upper"] + c["brow_left_lower"]
        mouth_c = [T.MOUTH_CORNER[side], T.MOUTH_INNER_CORNER[side]]
        centre_lips = [T.UPPER_LIP_TOP, T.UPPER_LIP_INNER, T.LOWER_LIP_INNER, T.LOWER_LIP_BOTTOM]
        s: dict[str, np.ndarray] = {}

        # --- eyes
        idx, tgt = self.lid_meet(side, upper_share=BLINK_UPPER_SHARE)
        disp = tgt - v[idx]
        mid = np.array([np.sin(np.pi * np.clip((v[i] - v[corners[0]]) @ X / (v[corners[1]] - v[corners[0]]) @ X, 0, 1))
                        for i in idx])  # fmt: skip
        disp = disp + 0.06 * ew * mid[:, None] * Z  # a closed lid rounds over the eyeball
        ring = self.lid_ring(side)
        n_up = len(up) - 2
        ring_disp = np.stack([np.interp(v[ring, 0], *_by_x(v[idx[:n_up]], disp[:n_up, k])) for k in range(3)], 1)
        s["eyeBlinkLeft"] = self.with_discs(
            self.spread(
                idx + ring,
                np.concatenate([disp, BLINK_FOLD * ring_disp]),
                BLINK_RADIUS * ew,
                corners + c["brow_left_lower"],
            )  # fmt: skip
        )
        s["eyeSquintLeft"] = self.with_discs(
            self.spread(lo[1:-1], 0.35 * ap * Y + 0.02 * ew * Z, 1.1 * ew, corners)
            + self.spread(up[1:-1], -0.1 * ap * Y, 0.5 * ew, corners)
        )
        s["eyeWideLeft"] = self.with_discs(
            self.spread(up[1:-1], 0.35 * ap * Y + 0.02 * ew * Z, 0.8 * ew, corners + c["brow_left_lower"])
            + self.spread(lo[1:-1], -0.06 * ap * Y, 0.5 * ew, corners)
        )
        gx, gy = 0.2 * ew, 0.22 * ap
        s["eyeLookOutLeft"] = self.with_discs(np.zeros((T.N_MESH, 3)), {side: gx * X})
        s["eyeLookInLeft"] = self.with_discs(np.zeros((T.N_MESH, 3)), {side: -gx * X})
        s["eyeLookUpLeft"] = self.with_discs(
            self.spread(up[1:-1], 0.15 * ap * Y, 0.6 * ew, corners), {side: gy * Y + 0.1 * gy * Z}
        )
        s["eyeLookDownLeft"] = self.with_discs(
            self.spread(up[1:-1], -0.3 * ap * Y, 0.6 * ew, corners) + self.spread(lo[1:-1], -0.1 * ap * Y, 0.5 * ew),
            {side: -gy * Y},
        )

        # --- brows and cheeks
        inner_out = np.linspace(1.0, 0.6, 5)
        bd = np.concatenate([inner_out, inner_out])[:, None] * (-0.05 * fh * Y) + np.concatenate(
            [inner_out - 0.6, inner_out - 0.6]
        )[:, None] * (-0.04 * fh * X)
        s["browDownLeft"] = self.with_discs(self.spread(brow, bd, 1.0 * ew, up))
        outer = c["brow_left_upper"][2:] + c["brow_left_lower"][2:]
        s["browOuterUpLeft"] = self.with_discs(self.spread(outer, 0.05 * fh * Y, 0.9 * ew, up + [T.NASION]))
        r, ew_r = self.ref, float(np.linalg.norm(self.ref[T.EYE_OUTER[side]] - self.ref[T.EYE_INNER[side]]))
        d_lo = self.geo_ref[lo].min(0)
        below = (d_lo > 0.25 * ew_r) & (d_lo < 0.6 * ew_r) & (r[: T.N_MESH, 1] < r[lo, 1].min())
        lid_ring = np.nonzero(below & (r[: T.N_MESH, 0] > r[T.EYE_INNER[side], 0] - 0.1 * ew_r))[0].tolist()
        s["cheekSquintLeft"] = self.with_discs(
            self.spread(lid_ring, 0.1 * ew * Y + 0.04 * ew * Z, 0.7 * ew, [T.NOSE_TIP])
            + self.spread(lo[1:-1], 0.12 * ap * Y, 0.4 * ew, corners)
        )
        s["noseSneerLeft"] = self.with_discs(
            self.spread([T.NOSE_ALA[side]], 0.08 * mw * Y + 0.02 * mw * Z, 0.45 * mw, [T.NOSE_TIP, T.UPPER_LIP_TOP])
            + self.spread([T.MOUTH_CORNER[side]], 0.02 * mw * Y, 0.3 * mw, centre_lips)
        )

        # --- mouth corners
        def corner(d, radius, extra_anchors=()):
            return self.with_discs(self.spread(mouth_c, d, radius * mw, centre_lips + list(extra_anchors)))

        s["mouthSmileLeft"] = corner(0.14 * mw * X + 0.22 * mw * Y - 0.06 * mw * Z, 0.9, [T.NOSE_TIP] + lo)
        s["mouthFrownLeft"] = corner(0.03 * mw * X - 0.18 * mw * Y, 0.8)
        s["mouthDimpleLeft"] = corner(0.07 * mw * X + 0.02 * mw * Y - 0.1 * mw * Z, 0.6)
        s["mouthStretchLeft"] = corner(0.16 * mw * X - 0.08 * mw * Y - 0.03 * mw * Z, 0.8)

        lips_up = c["lip_outer_upper"][1:-1] + c["lip_inner_upper"][1:-1]
        lips_lo = c["lip_outer_lower"][1:-1] + c["lip_inner_lower"][1:-1]
        r_up, r_lo = self.side_ramp(lips_up, 1.0), self.side_ramp(lips_lo, 1.0)
        s["mouthUpperUpLeft"] = self.with_discs(
            self.spread(lips_up, (0.12 * mw * r_up)[:, None] * Y, 0.45 * mw, [T.NOSE_TIP] + lips_lo)
        )
        s["mouthLowerDownLeft"] = self.with_discs(
            self.spread(lips_lo, (0.14 * mw * r_lo)[:, None] * -Y, 0.45 * mw, [T.CHIN] + lips_up)
        )
        o_up, i_up = c["lip_outer_upper"][1:-1], c["lip_inner_upper"][1:-1]
        o_lo, i_lo = c["lip_outer_lower"][1:-1], c["lip_inner_lower"][1:-1]
        press_idx = o_up + i_up + o_lo + i_lo
        press_d = np.concatenate([
            -0.05 * mw * self.side_ramp(o_up, 1.0), -0.015 * mw * self.side_ramp(i_up, 1.0),
            0.05 * mw * self.side_ramp(o_lo, 1.0), 0.015 * mw * self.side_ramp(i_lo, 1.0),
        ])[:, None] * Y  # fmt: skip
        press_d = press_d * smoothstep((self.side_ramp(press_idx, 1.0) - 0.3) / 0.1)[:, None]
        s["mouthPressLeft"] = self.with_discs(
            self.spread(press_idx, press_d, 0.3 * mw, [T.NOSE_TIP, T.CHIN])
            + self.spread(mouth_c, 0.03 * mw * X, 0.3 * mw, centre_lips)
        )
        all_lips = sorted(
            set(c["lip_outer_upper"] + c["lip_outer_lower"] + c["lip_inner_upper"] + c["lip_inner_lower"])
        )
        s["mouthLeft"] = self.with_discs(self.spread(all_lips, 0.22 * mw * X, 0.7 * mw, [T.NOSE_TIP, T.CHIN]))
        s["jawLeft"] = self.with_discs(self.jaw_motion(shift=JAW_SIDE * fh * X))
        return s

    def unsided_shapes(self) -> dict[str, np.ndarray]:
        v, m, c = self.v, self.m, self.c
        mw, ew, fh = m.mouth_width, m.eye_width, m.face_height
        s: dict[str, np.ndarray] = {}
        jaw_open = self.jaw_motion(JAW_OPEN_DEG)
        s["jawOpen"] = self.with_discs(jaw_open)
        s["jawForward"] = self.with_discs(self.jaw_motion(shift=JAW_FORWARD * fh * Z))
        o_up, i_up = c["lip_outer_upper"][1:-1], c["lip_inner_upper"][1:-1]
        o_lo, i_lo = c["lip_outer_lower"][1:-1], c["lip_inner_lower"][1:-1]
        lips_up, lips_lo = o_up + i_up, o_lo + i_lo
        corners = [T.MOUTH_CORNER["left"], T.MOUTH_CORNER["right"], T.MOUTH_INNER_CORNER["left"],
                   T.MOUTH_INNER_CORNER["right"]]  # fmt: skip
        anchors = [T.NOSE_TIP, T.CHIN, T.SUBNASALE]
        # mouthClose: the lips meet halfway across the gap jawOpen opens (it is meant to be used with jawOpen).
        gap = jaw_open[T.LOWER_LIP_INNER] - jaw_open[T.UPPER_LIP_INNER]
        p_up, p_lo = self.centre_profile(lips_up), self.centre_profile(lips_lo)
        close = np.concatenate([0.5 * p_up[:, None] * gap, -0.5 * p_lo[:, None] * gap])
        s["mouthClose"] = self.with_discs(self.spread(lips_up + lips_lo, close, 0.35 * mw, anchors + corners))

        def toward_centre(idx, amount):
            xc = 0.5 * (v[T.MOUTH_CORNER["left"], 0] + v[T.MOUTH_CORNER["right"], 0])
            return -np.sign(v[idx, 0] - xc)[:, None] * amount * X

        seeds = lips_up + lips_lo + corners
        fwd_p = np.concatenate([p_up, p_lo, np.zeros(4)])[:, None]
        funnel = (
            0.12 * mw * Z * (0.4 + 0.6 * fwd_p)
            + toward_centre(seeds, 0.18 * mw) * np.concatenate([np.full(len(seeds) - 4, 0.5), np.ones(4)])[:, None]
        )
        funnel[: len(o_up)] += 0.04 * mw * Y * p_up[: len(o_up), None]
        funnel[len(o_up) : len(lips_up)] += 0.06 * mw * Y * p_up[len(o_up) :, None]
        funnel[len(lips_up) : len(lips_up) + len(o_lo)] -= 0.04 * mw * Y * p_lo[: len(o_lo), None]
        funnel[len(lips_up) + len(o_lo) : len(lips_up) + len(lips_lo)] -= 0.06 * mw * Y * p_lo[len(o_lo) :, None]
        s["mouthFunnel"] = self.with_discs(self.spread(seeds, funnel, 0.6 * mw, anchors))
        pucker = (
            0.14 * mw * Z * (0.4 + 0.6 * fwd_p)
            + toward_centre(seeds, 0.25 * mw) * np.concatenate([np.full(len(seeds) - 4, 0.55), np.ones(4)])[:, None]
        )
        s["mouthPucker"] = self.with_discs(self.spread(seeds, pucker, 0.6 * mw, anchors))
        s["mouthRollLower"] = self.with_discs(
            self.spread(o_lo + i_lo, np.concatenate([np.tile(-0.08 * mw * Z + 0.05 * mw * Y, (len(o_lo), 1)),
                                                     np.tile(-0.06 * mw * Z - 0.01 * mw * Y, (len(i_lo), 1))])
                        * p_lo[:, None] ** 0.5, 0.3 * mw, anchors + corners + lips_up)
        )  # fmt: skip
        s["mouthRollUpper"] = self.with_discs(
            self.spread(o_up + i_up, np.concatenate([np.tile(-0.08 * mw * Z - 0.05 * mw * Y, (len(o_up), 1)),
                                                     np.tile(-0.06 * mw * Z + 0.01 * mw * Y, (len(i_up), 1))])
                        * p_up[:, None] ** 0.5, 0.3 * mw, anchors + corners + lips_lo)
        )  # fmt: skip
        s["mouthShrugLower"] = self.with_discs(
            self.spread(lips_lo + [T.CHIN], 0.08 * mw * Y + 0.04 * mw * Z, 0.7 * mw, [T.NOSE_TIP] + corners)
        )
        s["mouthShrugUpper"] = self.with_discs(
            self.spread(lips_up, 0.06 * mw * Y + 0.03 * mw * Z, 0.35 * mw, [T.NOSE_TIP, T.SUBNASALE] + corners)
        )
        brows = {s_: c[f"brow_{s_}_upper"][:3] + c[f"brow_{s_}_lower"][:3] for s_ in ("left", "right")}
        lids = c["eye_left_upper"] + c["eye_right_upper"]
        s["browInnerUp"] = self.with_discs(
            self.spread(brows["left"] + brows["right"], 0.06 * fh * Y, 1.0 * ew, lids + [T.NOSE_TIP])
        )
        puff = []
        for side in ("left", "right"):
            n = self._normals()[T.CHEEK_CENTRE[side]]
            puff.append(self.spread([T.CHEEK_CENTRE[side]], 0.06 * fh * n, 0.9 * mw, [T.NOSE_TIP] + corners))
        puff.append(self.spread(lips_up + lips_lo, 0.02 * mw * Z, 0.3 * mw, anchors))
        s["cheekPuff"] = self.with_discs(sum(puff))
        # tongueOut: the field holds no tongue; the lower lip is pushed down and forward as a tongue would,
        # the jaw drops a little and the mouth cavity shows between the lips (see docs/RIG.md).
        s["tongueOut"] = self.with_discs(
            self.jaw_motion(0.3 * JAW_OPEN_DEG)
            + self.spread(lips_lo, (-0.1 * mw * Y + 0.1 * mw * Z) * p_lo[:, None], 0.35 * mw, [T.CHIN] + corners)
        )
        return s

    def _normals(self) -> np.ndarray:
        v = self.v
        t = T.oriented_triangles(v)
        fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
        n = np.zeros_like(v)
        for k in range(3):
            np.add.at(n, t[:, k], fn)
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def jaw_weights(v: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """(N_PROXY,) the jaw mask on proxy ``v`` (eye discs 0); ``ref`` as in :class:`Author`."""
    out = np.zeros(T.N_PROXY)
    out[: T.N_MESH] = Author(v, ref).jaw_weight()
    return out


@lru_cache(maxsize=8)
def _geodesics_cached(v_bytes: bytes) -> np.ndarray:
    return _geodesics(np.frombuffer(v_bytes, dtype=np.float64).reshape(T.N_PROXY, 3))


def _geodesics(v: np.ndarray) -> np.ndarray:
    e = T.proxy_edges()
    w = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1) + 1e-9
    g = sp.coo_matrix((w, (e[:, 0], e[:, 1])), shape=(T.N_MESH, T.N_MESH)).tocsr()
    return dijkstra(g, directed=False)


def jaw_transform(m: Measures, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The jaw's rigid motion from neutral at ARKit ``weights`` (52,): x -> L @ x + o (world metres)."""
    w = np.asarray(weights, dtype=np.float64)
    t = np.radians(JAW_OPEN_DEG * w[INDEX["jawOpen"]])
    rot = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(t), -np.sin(t)], [0.0, np.sin(t), np.cos(t)]])
    shift = m.face_height * (
        JAW_FORWARD * w[INDEX["jawForward"]] * Z + JAW_SIDE * (w[INDEX["jawLeft"]] - w[INDEX["jawRight"]]) * X
    )
    return rot, m.hinge - rot @ m.hinge + shift


def mirror_geometry(v: np.ndarray) -> np.ndarray:
    """The mirror image of proxy vertices: vertex i takes the x-flipped position of its mirror partner."""
    return v[T.mirror_proxy_index()] * FLIP_X


def author_shapes(v: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """(52, N_PROXY, 3) displacements (world metres) of the 52 ARKit shapes at weight 1, on proxy ``v``;
    ``ref`` as in :class:`Author`."""
    v = np.asarray(v, dtype=np.float64)
    ref = v if ref is None else np.asarray(ref, dtype=np.float64)
    a = Author(v, ref)
    left = a.left_shapes()
    mirrored = Author(mirror_geometry(v), mirror_geometry(ref)).left_shapes()
    mi = T.mirror_proxy_index()
    out = np.zeros((N_SHAPES, T.N_PROXY, 3))
    for name, d in left.items():
        out[INDEX[name]] = d
        right = name[:-4] + "Right"
        out[INDEX[right]] = mirrored[name][mi] * FLIP_X
    for name, d in a.unsided_shapes().items():
        out[INDEX[name]] = 0.5 * (d + d[mi] * FLIP_X)  # symmetric by construction (the mesh is not, quite)
    missing = [n for i, n in enumerate(ARKIT_NAMES) if not np.any(out[i])]
    if missing:
        raise RuntimeError(f"shapes without displacement: {missing}")
    return out
