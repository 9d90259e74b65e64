"""``head-prior`` (the default method): the field starts from the full-head prior fitted to the photo
(engine.prior), with what covers the skull in the photo as a layer over it, then the same colour initialisation
and photo fit as proxy-init. Without a prepared prior the build goes on from the proxy alone, as proxy-init,
with one warning in the manifest.

The starting solid, on the field's grid (template frame: origin between the ears at eye height, +z the face):
- in front of the ear plane (z >= 0) and above the chin the photo's head proxy as proxy-init has it: the face and
  hair exactly as the photo's silhouette and the landmark mesh have them;
- below the chin the template's neck, its cut's cross-section carried down as a column, and the torso prior (an
  elliptic cylinder per photo row of the matte), all carved by the matte;
- behind it the fitted template head (skull, ears, neck; closed at the neck cut) under a hair layer: the template
  dilated by the hair's thickness measured on the ear plane, where the photo's outline is, from the crown down to
  the nape; both carved by the photo's matte (the visual hull); below the nape the proxy's mirrored back (the
  shoulders and clothing, nearly symmetric front to back).
What the proxy put behind the ear plane (its mirrored back: an egg with clothes smeared up the neck) is not kept:
the back of the head is the template's skull under that layer, the back of the shoulders is cut at the ear
plane."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

from engine.field.model import RadianceField
from engine.fit.data import FitData, similarity_scale
from engine.fit.hair_texture import HairTexture, synthesise_hair
from engine.fit.proxy_init import ProxyInitConfig, ProxyInitFit, grid_points, occupancy_sdf, proxy_occupancy
from engine.prior import PriorMissing, load_prior
from engine.prior.fit import closed_skin, fit_to_landmarks, neck_cut_edges, occupancy_grid
from engine.proxy.head import matte_covers_cv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadPriorConfig(ProxyInitConfig):
    """proxy-init's numbers (inherited) and the prior's layering."""

    hair_quantile: float = 0.8
    """The hair layer's thickness: this quantile of the proxy's reach beyond the template above the brows."""
    max_hair_m: float = 0.05
    """Cap of the hair layer's thickness, template metres."""
    nape_m: float = -0.06
    """How far below eye height the hair layer reaches at the back, template metres."""
    brow_m: float = 0.03
    """Height above the eyes from which the proxy's reach beyond the template counts as hair, template metres."""
    hair_taper_m: float = 0.04
    """Over this height above the nape the hair layer thins to nothing (no shelf where it ends), template metres."""
    seam_m: float = 0.03
    """Behind the ear plane the unseen colour blends from the edge colour to the shaded hair colour over this
    depth, template metres."""
    torso_depth_ratio: float = 0.5
    """Below the chin the person's body as an elliptic cylinder per photo row: as wide as the matte's row, this
    fraction of its width deep, centred ``torso_centre_m`` behind the ear plane, added to the proxy's inflated
    torso (thinner than a real one at its sides); 0: off. Lee Perry-Smith's full circle: 20.55 -> 20.91 dB, IoU
    0.806 -> 0.869 (its bust at 90-120 deg)."""
    torso_centre_m: float = 0.06
    """How far behind the ear plane the torso's depth centre sits, template metres. Lee Perry-Smith's full circle
    (standard, session 8) at 0.03 / 0.06 / 0.08: 22.22 / 22.40 / 22.17 dB, IoU 0.913 / 0.917 / 0.893, whole-head
    input-view depth L1 0.105 / 0.057 / 0.067 (at 0.03 the chest stood 5 cm in front of the scan's, at 90 deg a lobe
    in front of the chest and too little behind the neck)."""
    torso_front: bool = True
    """Below the chin's photo row and nearer the camera than the ear plane's centre, the body is the template's
    neck, the neck column and the torso prior (which then fills the whole matte row, centred in depth along the
    camera's axis), not the proxy, along every photo ray the body covers: the proxy's inflated front of the chest
    sits almost level with the face (Lee Perry-Smith's chest 5 cm too far forward; with ``neck_column`` and
    ``layer_smooth``: whole-head input-view depth L1 0.173 -> 0.106, full circle 20.90 -> 21.48 dB, IoU 0.868 ->
    0.913; docs/FIDELITY.md, "The body below the chin"). Session 7 left it off because the mesh/render jawOpen
    test failed with it; the cause was a loose vertex in head.obj (engine/extract/uv.py) that shifted that test's
    faces, not the rig: with the OBJ fixed the two agree in profile at IoU 0.98, as they do with it off."""
    torso_front_reach: float = 1.0
    """How far below the chin ``torso_front`` replaces the proxy, in face heights (the landmarks' top to the chin
    in the photo): the neck and upper chest, where the proxy's depth is wrong; further down, clothing's detail
    fits the photo better on the proxy."""
    torso_front_max_yaw_deg: float = 20.0
    """``torso_front`` only for a head turned at most this far from the camera: how a turned head's body faces
    is not known (interfaces_040, turned 45 deg: its shirt lost 2.5 dB at the input view with the body prior)."""
    neck_column: bool = True
    """Below the template's neck cut, its cross-section carried straight down (an elliptic column fitted to the
    cut's loop, carved by the matte): the neck meets the torso without a waist or a ledge under the skull
    (after ``torso_front``: 21.32 -> 21.40 dB, IoU 0.903 -> 0.909, input-view depth L1 0.122 -> 0.112)."""
    layer_smooth: bool = True
    """The hair layer's thickness interpolated between its 1 cm height bins (not a step per bin: horizontal
    ridges round the skull)."""
    bald_delta_e: float = 10.0
    """A head whose photo "hair" (what covers the skull above the brows) is this close to its face's skin in
    CIELAB (lightness weighted by half, as the defect score's bald test), or the skin's hue lit brighter
    (:func:`_is_bald`), is bald: the skull behind the ear plane takes the face's skin colour, not the lit top of
    the forehead (Lee Perry-Smith's skull was pale from 90 deg round); 0: off."""
    shade_smooth_vox: float = 0.0
    """The unseen back's shading reads the starting solid's normals averaged over this many voxels either side
    along each axis (a voxel solid's normals step with its voxels); 0: the normal at the point. Off: 2 voxels
    measured +0.01 dB on Lee Perry-Smith's full circle and moved the draft demo's blink evidence 67 -> 59 %
    (mediapipe's noise on a 256 px render, the fit being joint), so there was nothing to gain."""
    template_sides: bool = False
    """In front of the ear plane, outside the face's oval as the photo sees it, add the fitted template to the
    proxy (the ears' front halves, the side of the skull and jaw). Off: on Lee Perry-Smith it changed nothing
    (the proxy already holds the template there), on the earless synthetic head it cost 1.4 dB at +-30 deg."""
    hair_texture: bool = False
    """Behind the ear plane the unseen hair takes a texture quilted from the photo's own visible hair, its strands
    flowing from the crown down the meridians (engine.fit.hair_texture), its low frequencies the one hair colour
    and its detail as strong as the photo's hair's; off: that one colour. A bald head keeps the skin. Off by default:
    on the draft demo the defect score did not move (fan 0.034 -> 0.035, streaks 0.009 -> 0.011, smear 0.001),
    interfaces_057's smear rose 0.361 -> 0.486, and the photo fit keeps about 40 % of the detail (RGB std 0.049 in
    the targets, 0.021 after the fit; docs/FIDELITY.md, "Hair texture behind the ear plane")."""
    hair_patch_m: float = 0.015
    """``hair_texture``'s patch side, template metres (the photo's hair pixels at the head's depth)."""
    side_colour: bool = False
    """In front of the ear plane, above the nape, the unseen sides (between the photo's outline and the ears)
    take the colour of what is there, not the outline's colour carried back along the ray from the head's centre
    (horizontal streaks down the side at +-90 deg): the hair's where the starting solid reaches beyond the template
    by more than ``side_hair_m`` (the hair layer), the face's skin elsewhere (cheek, jaw, in front of the ear),
    shaded as the back is, blended in from the outline's colour over ``side_blend_m`` behind the photo's front.
    Off: the photo fit drags the outline's colours back into the strip whatever it starts from; only with
    ``unseen_prior_gain`` does the strip stay clean, and then it measured worse (docs/FIDELITY.md, "The side
    strip")."""
    side_hair_m: float = 0.004
    """``side_colour``: beyond the template by this much the side is hair (blended in over as much again),
    template metres."""
    side_blend_m: float = 0.015
    """``side_colour``: how far behind the photo's front surface (along its pixel's ray) the outline's colour gives
    way to the region's, template metres."""


def _is_bald(hair: np.ndarray, skin: np.ndarray, delta_e: float) -> bool:
    """Is the photo's "hair" colour (RGB in [0, 1]) the skin's? Either close to it in CIELAB (lightness weighted
    by half), or the same hue (within 8 deg, both with some colour) and at least as light: the lit top of a bald
    scalp (Lee Perry-Smith: the hue within 1.2 deg, chroma 9.7 against 22.0, L 73 against 65, 13.0 apart).
    Hair that is grey or white has almost no chroma, blond another hue, red or brown is darker than the skin."""
    from skimage.color import rgb2lab

    if delta_e <= 0:
        return False
    lab = rgb2lab(np.clip(np.stack([hair, skin]), 0.0, 1.0).reshape(2, 1, 3).astype(np.float64)).reshape(2, 3)
    weighted = lab * [0.5, 1.0, 1.0]
    if float(np.linalg.norm(weighted[0] - weighted[1])) < delta_e:
        return True
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    hue = np.degrees(np.arctan2(lab[:, 2], lab[:, 1]))
    dh = abs((hue[0] - hue[1] + 180.0) % 360.0 - 180.0)
    return bool(dh < 8.0 and chroma.min() >= 6.0 and lab[0, 0] >= lab[1, 0])


def _inside_oval(pts_cv: np.ndarray, data: FitData) -> np.ndarray:
    """Whether cv-camera points (N, 3) project inside the face's oval (mediapipe's FACE_OVAL landmarks) in the
    reference photo."""
    from skimage.draw import polygon

    from engine.rig.topology import contours

    h, w = data.matte.shape
    mask = np.zeros((h, w), bool)
    ou, ov = data.intr.pixels(data.landmarks_cv[contours()["oval"]])
    rr, cc = polygon(ov, ou, (h, w))
    mask[rr, cc] = True
    u, v = (c.astype(np.int64) for c in data.intr.pixels(pts_cv))
    ok = (u >= 0) & (v >= 0) & (u < w) & (v < h) & (pts_cv[:, 2] > 1e-6)
    out = np.zeros(len(pts_cv), bool)
    out[ok] = mask[v[ok], u[ok]]
    return out


class HeadPriorFit(ProxyInitFit):
    """proxy-init with its starting solid from the fitted head prior (module docstring)."""

    name = "head-prior"
    Config = HeadPriorConfig

    def __init__(self, cfg, options: HeadPriorConfig | None = None) -> None:
        super().__init__(cfg, options or HeadPriorConfig())
        self.prior = None
        self.fitted = None
        self._light = self._sides = self._reach = None
        self._hair_tex: HairTexture | None = None
        self.report: dict = {}
        self.warnings: list[dict] = []

    def check(self, field: RadianceField, data: FitData) -> None:
        """Without a prepared prior (or the photo's landmarks) the build goes on from the photo's proxy alone, as
        proxy-init does, with one warning (``self.warnings``, the manifest's) saying why and what prepares it."""
        self.warnings = []
        try:
            self.prior = load_prior()
        except PriorMissing as exc:
            self.prior = None
            self._fallback("prior_missing", f"{exc.message}; {exc.hint}")
            return
        if data.landmarks_cv is None:
            self.prior = None
            self._fallback("prior_unfitted", "the photo's landmarks are unknown, so the head prior cannot be fitted")

    def _fallback(self, code: str, why: str) -> None:
        msg = f"{why}: the head was started from the photo's proxy alone (as proxy-init), without the full-head prior"
        log.warning(msg)
        self.warnings.append({"code": code, "message": msg})

    def initial_sdf(self, field: RadianceField, data: FitData, canon_to_cv: np.ndarray) -> np.ndarray:
        if self.prior is None:
            return super().initial_sdf(field, data, canon_to_cv)
        o, prior = self.options, self.prior
        fitted = fit_to_landmarks(prior, data.landmarks_cv)
        s, rot, t = fitted.similarity
        cv_to_canon = np.asarray(data.cv_to_canon, np.float64)
        g, vox = field.sdf.shape[-1], field.voxel
        to_template_m = 1.0 / (s * similarity_scale(cv_to_canon))  # canonical units -> template metres
        verts_cv, tris = closed_skin(prior, fitted.vertices)
        verts_canon = verts_cv @ cv_to_canon[:3, :3].T + cv_to_canon[:3, 3]
        lo = field.box_center.cpu().numpy().astype(np.float64) - float(field.box_half) - 0.5 * vox
        template = occupancy_grid(verts_canon, tris, lo, vox, (g, g, g))
        proxy = proxy_occupancy(data.proxy, field, canon_to_cv, data.extra)
        self._frame = (s, rot, t, canon_to_cv)
        self._field, self._light, self._sides = field, None, None
        pts_cv = grid_points(field) @ canon_to_cv[:3, :3].T + canon_to_cv[:3, 3]
        local = self._local_cv(pts_cv).reshape(g, g, g, 3)
        reach = ndi.distance_transform_edt(~template) * vox * to_template_m
        self._reach = reach  # template metres beyond the template, on the grid ([z, y, x]): ``side_colour``
        layer = self._layer(local, reach, proxy & ~template, vox * to_template_m)
        front = local[..., 2] >= 0.0
        hair = ~front & (local[..., 1] >= o.nape_m) & (reach <= layer)
        # The photo sees background where the template or the layer stick out of the person's outline (a
        # narrower head, a turned one): carve both by the photo's matte, as the visual hull allows. In front of
        # the ear plane the photo's proxy is kept as it is (the input view and everything near it stay what
        # proxy-init makes).
        covered = matte_covers_cv(pts_cv, data.matte, data.intr, margin_px=0).reshape(g, g, g)
        # Below the nape the proxy's mirrored back stays too: a torso is close to symmetric front to back, and
        # cutting the shoulders there thins the outline the photo sees at grazing rays.
        below_nape = local[..., 1] < o.nape_m
        keep_proxy = front | below_nape
        body = np.zeros_like(front)
        body_front = np.zeros_like(front)
        face_dir = rot[:, 2]  # the template's +z (out of the face) in the camera's frame
        yaw_deg = float(np.degrees(np.arctan2(face_dir[0], -face_dir[2])))
        body_prior = o.torso_front and o.torso_depth_ratio > 0 and abs(yaw_deg) <= o.torso_front_max_yaw_deg
        if o.torso_depth_ratio > 0:
            body |= self._torso(pts_cv, local, data, camera=body_prior).reshape(g, g, g) & covered
        if o.neck_column:
            body |= self._neck_column(verts_cv, local) & covered
        if body_prior:
            # Below the chin's photo row and nearer the camera than the ear plane's centre (the body faces the
            # camera whatever the head does), the proxy gives way to the template's neck and the body above --
            # only along the photo's rays that the body covers: where the body prior has nothing (a shirt the
            # frame cuts, an arm), the proxy stays.
            u_pts, v_pts = data.intr.pixels(pts_cv)
            v_chin = float(data.intr.pixels(data.landmarks_cv[[152]])[1][0])
            lm_v = data.intr.pixels(data.landmarks_cv)[1]
            reach_px = o.torso_front_reach * (v_chin - float(lm_v.min()))  # face heights below the chin
            rows = (v_pts > v_chin) & (v_pts <= v_chin + reach_px)
            # a photo row the frame cuts at either side keeps the proxy (``_torso``: no body there)
            m = data.matte > 0.5
            cut_row = m[:, 0] | m[:, -1]
            rows &= ~cut_row[np.clip(np.round(v_pts).astype(np.int64), 0, len(cut_row) - 1)]
            body_front = (rows & (pts_cv[:, 2] < self._frame[2][2])).reshape(g, g, g)
            body |= template & covered & body_front
            h, w = data.matte.shape
            iu = np.clip(np.round(u_pts).astype(np.int64), 0, w - 1)
            iv = np.clip(np.round(v_pts).astype(np.int64), 0, h - 1)
            seen = np.zeros((h, w), bool)
            seen[iv[body.ravel()], iu[body.ravel()]] = True
            seen = ndi.binary_closing(seen, iterations=4)  # the voxels project a few pixels apart
            keep_proxy &= ~(body_front & seen[iv, iu].reshape(g, g, g))
        occ = ((template | hair) & covered & ~front) | (proxy & keep_proxy) | body
        if o.template_sides:
            occ |= template & covered & front & ~_inside_oval(pts_cv, data).reshape(g, g, g)
        beyond = proxy & ~template & front & (local[..., 1] > o.brow_m)
        self._colours = self._photo_colours(field, data, beyond, canon_to_cv)
        self._hair_tex = None
        if o.hair_texture and not self.report_colours["bald"] and hair.any():
            radius_m = float(np.quantile(np.linalg.norm(local[hair & (local[..., 1] > 0)], axis=-1), 0.9))
            self._hair_tex = self.hair_appearance(data, self._hair_px, self._colours["hair"], radius_m, vox)
        self.report = {
            "prior": {
                "fit_rms_m": round(fitted.rms_m, 5),
                "head_yaw_deg": round(yaw_deg, 1),
                "body_prior_front": bool(body_front.any()),
                "colours": self.report_colours,
                "hair_layer_m": {"mean": round(float(layer[hair].mean()) if hair.any() else 0.0, 4)},
                "hair_texture": None if self._hair_tex is None else list(self._hair_tex.rgb.shape[:2]),
                "coeffs": {prior.shape_names[i]: round(float(c), 3) for i, c in enumerate(fitted.coeffs) if c > 0.01},
                "expression": {
                    prior.arkit_names[i]: round(float(c), 3) for i, c in enumerate(fitted.expression) if c > 0.01
                },
            }
        }
        self.fitted = fitted
        return occupancy_sdf(occ, vox)

    def _torso(self, pts_cv: np.ndarray, local: np.ndarray, data: FitData, camera: bool = False) -> np.ndarray:
        """(N,) bool: grid points inside the body below the chin, an elliptic cylinder per photo row (the matte's
        run through the point's column: its centre and half-width), ``torso_depth_ratio`` of the row's width
        deep, centred ``torso_centre_m`` behind the ear plane."""
        o = self.options
        loc = local.reshape(-1, 3)
        chin_y = float(self._local_cv(data.landmarks_cv[[152]])[0, 1])
        z = np.maximum(pts_cv[:, 2], 1e-6)
        u, v = data.intr.pixels(pts_cv)
        m = data.matte > 0.5
        h, w = m.shape
        any_row = m.any(1)
        left = np.where(any_row, np.argmax(m, 1), 0)
        right = np.where(any_row, w - 1 - np.argmax(m[:, ::-1], 1), 0)
        iv = np.clip(v.astype(np.int64), 0, h - 1)
        iu = np.clip(u.astype(np.int64), 0, w - 1)
        # well inside the person's own pixels only (3 px in from every contour, the gaps between an arm and the
        # body included): at the contour the proxy's outline stands, and a deep body there closes narrow gaps
        core = m if camera else ndi.binary_erosion(m, iterations=3)
        ok = (v >= 0) & (v < h) & (u >= 0) & (u < w) & any_row[iv] & core[iv, iu] & (loc[:, 1] < chin_y)
        centre = 0.5 * (left[iv] + right[iv])
        half_px = np.maximum(0.5 * (right[iv] - left[iv]), 1.0)
        r = (u - centre) / half_px
        s = self._frame[0]
        half_m = half_px * z / data.intr.fx / s  # the row's half-width at the point's depth, template metres
        b = o.torso_depth_ratio * half_m * np.sqrt(np.clip(1.0 - r**2, 0.0, 1.0))
        if camera:
            # the body's own frame (``torso_front``): photo rows below the chin, depth along the camera's axis (a
            # turned or tilted head does not turn the body with it); no body in a row the photo's frame cuts at
            # either side (how wide and deep the body is there is not known: on the demo's space suit a body
            # prior there covered the collar and left its right shoulder empty, -5 dB at the input view)
            v_chin = float(data.intr.pixels(data.landmarks_cv[[152]])[1][0])
            centre_z = float(self._frame[2][2]) + o.torso_centre_m * s
            cut = m[:, 0] | m[:, -1]
            ok = (v >= 0) & (v < h) & (u >= 0) & (u < w) & any_row[iv] & ~cut[iv] & core[iv, iu] & (v > v_chin)
            return ok & (np.abs(r) <= 1.0) & (np.abs(pts_cv[:, 2] - centre_z) <= b * s)
        return ok & (np.abs(r) <= 1.0) & (np.abs(loc[:, 2] + o.torso_centre_m) <= b)

    def _neck_column(self, verts_cv: np.ndarray, local: np.ndarray) -> np.ndarray:
        """Grid points (local's shape minus the last axis) inside the neck cut's cross-section carried down: an
        ellipse in the template's horizontal plane through the cut loop's centre, its semi-axes the loop's half
        extents in x and z, from the cut's highest point down."""
        loop = np.unique(neck_cut_edges(self.prior))
        if len(loop) < 6:
            return np.zeros(local.shape[:-1], bool)
        ring = self._local_cv(verts_cv[loop])
        c = 0.5 * (ring.min(0) + ring.max(0))
        half = np.maximum(0.5 * (ring.max(0) - ring.min(0)), 1e-3)
        x, y, z = local[..., 0], local[..., 1], local[..., 2]
        inside = ((x - c[0]) / half[0]) ** 2 + ((z - c[2]) / half[2]) ** 2 <= 1.0
        return inside & (y <= ring[:, 1].max())

    def _local(self, pts_canon: np.ndarray) -> np.ndarray:
        """Canonical points (N, 3) in the fitted template's own frame, template metres."""
        canon_to_cv = self._frame[3]
        return self._local_cv(pts_canon @ canon_to_cv[:3, :3].T + canon_to_cv[:3, 3])

    def _local_cv(self, pts_cv: np.ndarray) -> np.ndarray:
        """cv-camera points (N, 3) in the fitted template's own frame, template metres."""
        s, rot, t, _ = self._frame
        return ((pts_cv - t) @ rot) / s

    def _layer(self, local: np.ndarray, reach: np.ndarray, outside: np.ndarray, vox_m: float) -> np.ndarray:
        """The hair layer's thickness (template metres) at every grid point: measured per 1 cm of height and
        per side where the photo's outline is, on the ear plane (how far the proxy reaches beyond the template
        there), and carried round behind the head, blending into the two sides' mean at the back's midline."""
        o = self.options
        y, x, z = local[..., 1], local[..., 0], local[..., 2]
        bins = np.arange(o.nape_m, 0.25, 0.01)
        plane = outside & (np.abs(z) < 1.5 * vox_m)
        side = np.zeros((2, len(bins)))
        for k, sign in enumerate((1.0, -1.0)):
            sel = plane & (x * sign > 0)
            idx = np.clip(np.digitize(y[sel], bins) - 1, 0, len(bins) - 1)
            r = reach[sel]
            for b in range(len(bins)):
                rb = r[idx == b]
                side[k, b] = np.quantile(rb, o.hair_quantile) if len(rb) >= 3 else 0.0
        side = ndi.median_filter(np.clip(side, 0.0, o.max_hair_m), size=(1, 3), mode="nearest")
        if o.layer_smooth:
            centres = bins + 0.005
            d_side = np.where(x >= 0, np.interp(y, centres, side[0]), np.interp(y, centres, side[1]))
            d_mid = np.interp(y, centres, side.mean(0))
        else:
            row = np.clip(np.digitize(y, bins) - 1, 0, len(bins) - 1)
            d_side = np.where(x >= 0, side[0][row], side[1][row])
            d_mid = side.mean(0)[row]
        alpha = np.clip((np.pi - np.abs(np.arctan2(x, z))) / (np.pi / 2), 0.0, 1.0)
        taper = np.clip((y - o.nape_m) / o.hair_taper_m, 0.0, 1.0)
        return (alpha * d_side + (1.0 - alpha) * d_mid) * taper

    def _photo_colours(self, field, data: FitData, beyond: np.ndarray, canon_to_cv) -> dict:
        """The photo's hair colour (median where the proxy reaches beyond the template above the brows) and skin
        colour (median at the face landmarks); hair falls back to skin for a bald head."""

        h, w = data.matte.shape

        def pixels(pts_cv):
            u = data.intr.fx * pts_cv[:, 0] / pts_cv[:, 2] + data.intr.cx
            v = data.intr.fy * pts_cv[:, 1] / pts_cv[:, 2] + data.intr.cy
            ok = (u >= 0) & (v >= 0) & (u < w) & (v < h)
            iu, iv = u[ok].astype(int), v[ok].astype(int)
            keep = data.matte[iv, iu] > 0.5
            return iv[keep], iu[keep]

        skin = np.median(data.photo[pixels(data.landmarks_cv[:468])], axis=0)
        pts = grid_points(field)[beyond.reshape(-1)]
        hair_iv, hair_iu = pixels(pts @ canon_to_cv[:3, :3].T + canon_to_cv[:3, 3]) if len(pts) else ([], [])
        self._hair_px = np.zeros((h, w), bool)  # the photo's pixels known to be hair (``hair_appearance``)
        self._hair_px[hair_iv, hair_iu] = True
        hair_px = data.photo[hair_iv, hair_iu] if len(pts) else np.zeros((0, 3))
        hair = np.median(hair_px, axis=0) if len(hair_px) >= 20 else skin
        bald = len(hair_px) < 20 or _is_bald(hair, skin, self.options.bald_delta_e)
        self.report_colours = {
            "skin_rgb": [round(float(c), 3) for c in skin],
            "hair_rgb": [round(float(c), 3) for c in hair],
            "bald": bool(bald),
        }
        return {"skin": skin.astype(np.float32), "hair": (skin if bald else hair).astype(np.float32)}

    def hair_appearance(
        self, data: FitData, hair_px: np.ndarray, base_rgb: np.ndarray, radius_m: float, voxel: float
    ) -> HairTexture | None:
        """The unseen hair's colour round the head (template frame: azimuth from the face towards +x, angle from
        the crown +y about the origin), or None for the one colour ``base_rgb``. Here a texture quilted from the
        photo's hair (engine.fit.hair_texture): ``hair_px`` (H, W) marks the pixels the hair's voxels project to,
        a voxel's footprint apart, so they are closed over it and kept 2 px inside the matte. A method with a
        learned prior of hair overrides this. ``radius_m`` is the hair's outer radius, template metres."""
        s, _, t, canon_to_cv = self._frame
        o = self.options
        depth = float(t[2])  # the template's origin, cv metres from the camera
        m_per_px = depth / data.intr.fx / s  # template metres per photo pixel at the head
        vox_px = voxel * similarity_scale(canon_to_cv) * data.intr.fx / depth
        mask = ndi.binary_closing(hair_px, iterations=max(1, int(np.ceil(vox_px))))
        mask &= ndi.binary_erosion(data.matte > 0.5, iterations=2)
        theta_max = np.radians(150.0)
        shape = (
            int(np.clip(np.ceil(theta_max * radius_m / m_per_px), 16, 1024)),
            int(np.clip(np.ceil(2.0 * np.pi * radius_m / m_per_px), 32, 2048)),
        )
        tex = synthesise_hair(
            data.photo, mask, shape, int(round(o.hair_patch_m / m_per_px)), theta_max, base_rgb, self.cfg.seed
        )
        if tex is None:
            log.info("too little visible hair for a hair texture: the unseen hair keeps one colour")
        return tex

    def _lighting(self, field, data: FitData, canon_to_cv) -> np.ndarray:
        """The photo's light as a first-order spherical-harmonic shading ``a0 + a . n`` (4,), canonical normals,
        fitted to the luminance of the face's landmarks relative to its median (the face's skin is one albedo to
        first order); unit shading where too few landmarks are seen."""
        import torch

        lm = np.asarray(data.landmarks_cv[:468], np.float64)
        u, v = data.intr.pixels(lm)
        h, w = data.matte.shape
        ok = (u >= 0) & (v >= 0) & (u < w) & (v < h)
        iu, iv = u.astype(int).clip(0, w - 1), v.astype(int).clip(0, h - 1)
        ok &= data.matte[iv, iu] > 0.5
        if ok.sum() < 30:
            return np.array([1.0, 0.0, 0.0, 0.0])
        lum = data.photo[iv[ok], iu[ok]].mean(1)
        cv_to_canon = np.linalg.inv(canon_to_cv)
        pc = lm[ok] @ cv_to_canon[:3, :3].T + cv_to_canon[:3, 3]
        with torch.no_grad():
            n = field.normal_at(torch.from_numpy(pc.astype(np.float32)).to(field.sdf.device)).cpu().numpy()
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)
        a = np.column_stack([np.ones(len(n)), n])
        coef = np.linalg.lstsq(a, lum / max(float(np.median(lum)), 1e-3), rcond=None)[0]
        return coef

    def unseen_colour(self, pts: np.ndarray, edge_colour: np.ndarray, data: FitData, canon_to_cv) -> np.ndarray:
        """Behind the ear plane and above the nape the photo sees nothing of the head but its hair: the photo's
        hair colour there, shaded by the photo's light across the head (its left-right and up-down parts) on the
        starting solid's normals (no fans of edge colour, no clothing smeared up the back of the head), blended
        from the edge colour across the ear plane. Below the nape behind the ear plane, the colour of the
        person's sides at the same height (:meth:`_side_rows`). In front, proxy-init's edge colour (with
        ``side_colour``, above the nape: the hair's or the skin's, blended in behind the photo's front)."""
        import torch

        if self.prior is None:
            return super().unseen_colour(pts, edge_colour, data, canon_to_cv)
        o = self.options
        pts = np.asarray(pts, np.float32)
        local = self._local(pts.astype(np.float64))
        out = np.array(edge_colour, np.float32, copy=True)
        upper = local[:, 1] >= o.nape_m
        sel = (local[:, 2] < 0.0) & upper
        sides = (local[:, 2] >= 0.0) & upper if o.side_colour and self._reach is not None else np.zeros_like(sel)
        if not (sel.any() or sides.any()):
            return out
        if self._light is None:  # the starting solid's normals are refreshed by now (init's colour targets)
            self._light = self._lighting(self._field, data, canon_to_cv)
        step = o.shade_smooth_vox * float(self._field.voxel)
        offsets = np.vstack([np.zeros(3), step * np.eye(3), -step * np.eye(3)]) if step > 0 else np.zeros((1, 3))
        both = sel | sides
        with torch.no_grad():
            q = torch.from_numpy(pts[both]).to(self._field.sdf.device)
            n = sum(self._field.normal_at(q + torch.as_tensor(d, dtype=q.dtype, device=q.device)) for d in offsets)
            n = n.cpu().numpy()
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)
        # One photo says how the light falls across the face (left-right, up-down), not how it reaches the
        # back: the back keeps the seen hair's brightness, shaded only by the light's lateral and vertical parts.
        shade = np.clip(1.0 + n[:, 0] * self._light[1] + n[:, 1] * self._light[2], 0.5, 1.3)[:, None]
        loc = local[both]
        if self._hair_tex is not None:
            polar = np.arccos(np.clip(loc[:, 1] / np.maximum(np.linalg.norm(loc, axis=1), 1e-9), -1.0, 1.0))
            albedo = self._hair_tex.sample(np.arctan2(loc[:, 0], loc[:, 2]), polar)
        else:
            albedo = np.broadcast_to(self._colours["hair"][None], loc.shape)
        hair = np.clip(albedo * shade, 0.0, 1.0)
        if sides.any():
            # the sides' own colour: hair in the layer beyond the template, the face's skin on it
            on = sides[both]
            w_hair = np.clip(self._reach_at(pts[sides]) / o.side_hair_m - 1.0, 0.0, 1.0)[:, None]
            skin = np.clip(self._colours["skin"][None] * shade[on], 0.0, 1.0)
            region = w_hair * hair[on] + (1.0 - w_hair) * skin
            t = np.clip(self._behind_front_m(pts[sides], data, canon_to_cv) / o.side_blend_m, 0.0, 1.0)[:, None]
            out[sides] = (1.0 - t) * out[sides] + t * region
        hair = hair[sel[both]]
        t = np.clip(-local[sel, 2] / o.seam_m, 0.0, 1.0)[:, None]
        out[sel] = (1.0 - t) * out[sel] + t * hair
        below = (local[:, 2] < 0.0) & (local[:, 1] < o.nape_m)
        if below.any():
            pc = pts[below].astype(np.float64) @ canon_to_cv[:3, :3].T + canon_to_cv[:3, 3]
            row = data.intr.pixels(pc)[1]
            sides = self._side_rows(data)
            side = sides[np.clip(row.astype(np.int64), 0, len(sides) - 1)]
            t = np.clip(-local[below, 2] / o.seam_m, 0.0, 1.0)[:, None]
            out[below] = (1.0 - t) * out[below] + t * side
        return out

    def _reach_at(self, pts: np.ndarray) -> np.ndarray:
        """(N,) template metres beyond the fitted template at canonical points (N, 3): the nearest grid point's."""
        f, g = self._field, self._reach.shape[0]
        rel = (np.asarray(pts, np.float64) - f.box_center.cpu().numpy()) / float(f.box_half)
        i = np.clip(np.round((rel + 1.0) * 0.5 * (g - 1)).astype(np.int64), 0, g - 1)
        return self._reach[i[:, 2], i[:, 1], i[:, 0]]

    def _behind_front_m(self, pts: np.ndarray, data: FitData, canon_to_cv) -> np.ndarray:
        """(N,) template metres canonical points (N, 3) lie behind the photo's front surface along their pixel's
        ray (the proxy's front depth); at the outline this is 0, and a point outside the matte counts as far."""
        pc = np.asarray(pts, np.float64) @ canon_to_cv[:3, :3].T + canon_to_cv[:3, 3]
        u, v = data.intr.pixels(pc)
        h, w = data.proxy.inside.shape
        iu, iv = np.clip(u.astype(np.int64), 0, w - 1), np.clip(v.astype(np.int64), 0, h - 1)
        inside = data.proxy.inside[iv, iu] & (u >= 0) & (v >= 0) & (u < w) & (v < h)
        behind = np.where(inside, pc[:, 2] - data.proxy.front_m[iv, iu], np.inf)
        return np.maximum(behind, 0.0) / self._frame[0]

    def _side_rows(self, data: FitData) -> np.ndarray:
        """Per photo row (H, 3): the median colour of the person's outermost pixels in that row (the outer 15 % of
        the matte's extent on either side: the neck's skin, long hair, the shoulders' clothing), filled up and
        down where a row has no person and smoothed over 2 % of the height. Below the nape the back of the
        person takes the colour of its sides at the same height: no fan or stripe from the head's centre."""
        if self._sides is not None:
            return self._sides
        m = data.matte > 0.5
        h = m.shape[0]
        rows = np.full((h, 3), np.nan, np.float32)
        for v in range(h):
            cols = np.nonzero(m[v])[0]
            if len(cols) < 8:
                continue
            lo, hi = cols[0], cols[-1]
            band = max(2, int(0.15 * (hi - lo)))
            pick = np.r_[cols[cols <= lo + band], cols[cols >= hi - band]]
            rows[v] = np.median(data.photo[v, pick], axis=0)
        ok = np.isfinite(rows[:, 0])
        if not ok.any():
            self._sides = np.broadcast_to(self._colours["skin"], (h, 3)).astype(np.float32)
            return self._sides
        idx = np.arange(h)
        for c in range(3):
            rows[:, c] = np.interp(idx, idx[ok], rows[ok, c])
        self._sides = ndi.gaussian_filter1d(rows, max(1.0, 0.02 * h), axis=0, mode="nearest").astype(np.float32)
        return self._sides

    def init(self, field, data, progress=None, cancel=None):
        state = super().init(field, data, progress, cancel)
        if self._light is not None and "prior" in self.report:
            self.report["prior"]["light_sh1"] = [round(float(c), 4) for c in self._light]
        state.info.update(self.report)
        return state
