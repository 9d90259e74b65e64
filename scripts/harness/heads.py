"""Textured head meshes for ground truth, in the *GT frame*: metres, +Y up, the face looks toward +Z, +X is the
subject's left (the engine's world axes), origin at the centre of the head. Two sources:

* ``synthetic_head()`` -- made here, procedurally: a deformed ellipsoid with a nose, brow, lips, chin and ears,
  on a neck and shoulders, with a painted face texture (skin, hair, eyes, brows, nostrils, lips, painted
  shading) that mediapipe detects as a face. No data files; CI has ground truth of its own.
* ``lee_perry_smith(path)`` -- the Lee Perry-Smith scan from ../shared/eval/heads (CC BY 3.0), read in place and
  normalised to metres (never copied into the repository).
* ``template-a`` ... ``template-d`` (scripts/harness/template_heads.py) -- whole heads made from the prepared head
  prior with varied shape, expression, skin, eyes, hair colour and hair volume (360 deg ground truth for CI).

A head is a list of :class:`Part` (vertices, triangles, UVs and a texture: an image array or a file path)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("LIKENESS_SHARED", REPO.parent / "shared"))
SHARED_HEADS = SHARED / "eval" / "heads"


@dataclass
class Part:
    """One textured mesh. ``uv`` (V, 2) with OpenGL's origin (bottom-left), one per vertex, or per face corner
    through ``face_uv`` (F, 3) indices into it (a UV seam without splitting the surface, so its normals stay
    smooth); ``texture`` is an (H, W, 3) uint8 array or the path of an image file; ``colour`` is used instead
    when both are None."""

    name: str
    verts: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    texture: np.ndarray | str | None = None
    colour: tuple[float, float, float] = (0.5, 0.5, 0.5)
    face_uv: np.ndarray | None = None


# --------------------------------------------------------------------------------------------- synthetic head
# Semi-axes of the skull ellipsoid (m): half breadth, half height, half depth.
HEAD_A, HEAD_B, HEAD_C = 0.076, 0.112, 0.098


def _g(x, y, x0, y0, sx, sy):
    return np.exp(-0.5 * (((x - x0) / sx) ** 2 + ((y - y0) / sy) ** 2))


def head_radius(d: np.ndarray) -> np.ndarray:
    """Distance from the origin to the synthetic head's surface along unit directions ``d`` (N, 3)."""
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    # Jaw: the lower face narrows and the back of the lower skull is flatter.
    a = HEAD_A * (1.0 - 0.22 * np.clip(-dy - 0.25, 0.0, 1.0))
    c = HEAD_C * np.where(dz < 0, 1.0 - 0.12 * np.clip(-dy, 0.0, 1.0), 1.0)
    r = 1.0 / np.sqrt((dx / a) ** 2 + (dy / HEAD_B) ** 2 + (dz / c) ** 2)
    # Face features as radial displacements, placed by the point's front-projected (x, y).
    x, y = dx * r, dy * r
    front = np.clip(dz * 4.0, 0.0, 1.0)
    bump = (
        0.024 * _g(x, y, 0.0, -0.028, 0.009, 0.020) * np.clip((0.030 - y) / 0.05, 0.2, 1.0)  # nose, tip low
        + 0.006 * _g(x, y, 0.0, 0.030, 0.040, 0.007)  # brow ridge
        - 0.009 * _g(np.abs(x), y, 0.031, 0.012, 0.013, 0.009)  # eye sockets
        + 0.006 * _g(x, y, 0.0, -0.056, 0.020, 0.008)  # lips
        + 0.008 * _g(x, y, 0.0, -0.092, 0.020, 0.012)  # chin
        + 0.004 * _g(np.abs(x), y, 0.045, -0.015, 0.015, 0.015)  # cheek bones
    ) * front
    ears = 0.013 * _g(dz * r, y, -0.005, 0.0, 0.012, 0.024) * np.clip(np.abs(dx) * 3.0 - 2.0, 0.0, 1.0)
    return r + bump + ears


def _sphere_grid(n_lon: int, n_lat: int):
    """Directions, triangles and UVs of a longitude/latitude grid with a duplicated seam at the back."""
    lon = np.linspace(-np.pi, np.pi, n_lon + 1)
    lat = np.linspace(-np.pi / 2, np.pi / 2, n_lat + 1)
    lo, la = np.meshgrid(lon, lat)  # (n_lat+1, n_lon+1)
    d = np.stack([np.sin(lo) * np.cos(la), np.sin(la), np.cos(lo) * np.cos(la)], -1).reshape(-1, 3)
    uv = np.stack([(lo / (2 * np.pi) + 0.5), (la / np.pi + 0.5)], -1).reshape(-1, 2)
    idx = np.arange((n_lat + 1) * (n_lon + 1)).reshape(n_lat + 1, n_lon + 1)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, e = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    row = np.repeat(np.arange(n_lat), n_lon)
    t1 = np.stack([a, b, e], 1)[row > 0]  # degenerate at the south pole row
    t2 = np.stack([a, e, c], 1)[row < n_lat - 1]  # degenerate at the north pole row
    return d, np.concatenate([t1, t2]), uv


def _mix(base: np.ndarray, colour, w: np.ndarray) -> np.ndarray:
    w = np.clip(w, 0.0, 1.0)[:, None]
    return base * (1.0 - w) + np.asarray(colour, np.float64) * w


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def head_colour(p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Painted albedo (N, 3) in [0, 1] of surface points ``p`` (N, 3) with unit normals ``n``."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    ax = np.abs(x)
    front = z > 0.02
    col = np.tile(np.array([0.86, 0.66, 0.54]), (len(p), 1))
    col = _mix(col, (0.88, 0.55, 0.50), 0.35 * _g(ax, y, 0.045, -0.030, 0.014, 0.012) * front)  # cheeks
    # Painted shading: darker where the surface turns away from the front and under the jaw.
    col *= (0.78 + 0.22 * np.clip(n[:, 2] * 0.6 + 0.4 + 0.3 * n[:, 1], 0.0, 1.0))[:, None]
    # Nose: shaded flanks, nostrils.
    nose_side = _g(ax, y, 0.011, -0.020, 0.004, 0.016) * front
    col = _mix(col, (0.62, 0.44, 0.36), 0.55 * nose_side)
    col = _mix(col, (0.20, 0.10, 0.08), _smoothstep(0.55, 0.8, _g(ax, y, 0.0075, -0.041, 0.0032, 0.0022)) * front)
    # Eyes: sclera, iris, pupil, upper lash line.
    ex, ey = (ax - 0.031) / 0.0135, (y - 0.012) / 0.0058
    eye = (ex**2 + ey**2 < 1.0) & front
    col = _mix(col, (0.94, 0.93, 0.90), eye)
    ir = np.hypot(ax - 0.031, y - 0.012)
    col = _mix(col, (0.30, 0.22, 0.14), eye & (ir < 0.0056))
    col = _mix(col, (0.03, 0.03, 0.03), eye & (ir < 0.0024))
    lash = (ex**2 + (ey - 0.35) ** 2 < 1.25) & (ex**2 + (ey - 0.35) ** 2 > 0.8) & (y > 0.0125) & front
    col = _mix(col, (0.10, 0.06, 0.05), lash)
    socket = _g(ax, y, 0.031, 0.016, 0.017, 0.010) * front * ~eye
    col = _mix(col, (0.62, 0.45, 0.40), 0.45 * socket)
    # Brows: thick arcs.
    by = 0.031 + 0.006 * np.exp(-(((ax - 0.030) / 0.014) ** 2)) - 0.004 * ((ax - 0.030) / 0.02) ** 2
    brow = (np.abs(y - by) < 0.0032) & (ax > 0.011) & (ax < 0.051) & front
    col = _mix(col, (0.16, 0.10, 0.07), brow)
    # Mouth: upper and lower lip, dark line between.
    mx = x / 0.025
    upper = (mx**2 + ((y + 0.0525) / 0.0048) ** 2 < 1.0) & (y > -0.0565)
    lower = (mx**2 + ((y + 0.0575) / 0.0065) ** 2 < 1.0) & (y <= -0.0565)
    col = _mix(col, (0.70, 0.33, 0.32), (upper | lower) & front)
    col = _mix(col, (0.25, 0.08, 0.08), (np.abs(y + 0.0565) < 0.0011) & (np.abs(mx) < 1.0) & front)
    # Hair: a cap over the top and back, with a hairline above the forehead and over the ears.
    hairline = 0.068 - 0.55 * x**2 + np.where(z < 0.0, 0.35 * z, 0.0) - np.where(z < -0.03, 0.5 * (-z - 0.03), 0.0)
    side = (ax > 0.055) & (y > 0.03) & (z < 0.05)
    hair = (y > hairline) | side | ((z < -0.035) & (y > -0.06))
    col = _mix(col, (0.17, 0.11, 0.07), hair)
    # Fine hair strands so the hair is not a flat patch.
    streak = 0.06 * np.sin(900.0 * x + 300.0 * y) * hair
    return np.clip(col + streak[:, None], 0.0, 1.0)


def synthetic_head(n_lon: int = 384, n_lat: int = 192, tex_size: int = 1024) -> list[Part]:
    """The project's synthetic textured head on a neck and shoulders (GT frame, metres)."""
    d, faces, uv = _sphere_grid(n_lon, n_lat)
    verts = d * head_radius(d)[:, None]
    # Texture: evaluate the painted colour at each texel's surface point (the UVs are the lon/lat grid).
    j, i = np.mgrid[0:tex_size, 0 : 2 * tex_size].astype(np.float64) + 0.5
    lon = (i / (2 * tex_size) - 0.5) * 2 * np.pi
    lat = (0.5 - j / tex_size) * np.pi  # image row 0 is the top (v = 1)
    dt = np.stack([np.sin(lon) * np.cos(lat), np.sin(lat), np.cos(lon) * np.cos(lat)], -1).reshape(-1, 3)
    pt = dt * head_radius(dt)[:, None]
    nt = _surface_normals(dt)
    tex = head_colour(pt, nt).reshape(tex_size, 2 * tex_size, 3)
    head = Part("head", verts, faces, uv, (tex * 255 + 0.5).astype(np.uint8))
    return [head, _neck(), _shoulders()]


def _surface_normals(d: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """Unit normals of the radial surface by finite differences in two tangent directions."""
    up = np.where(np.abs(d[:, 1:2]) > 0.99, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    t1 = np.cross(up, d)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(d, t1)

    def pt(dd):
        dd = dd / np.linalg.norm(dd, axis=1, keepdims=True)
        return dd * head_radius(dd)[:, None]

    g1 = pt(d + eps * t1) - pt(d - eps * t1)
    g2 = pt(d + eps * t2) - pt(d - eps * t2)
    n = np.cross(g1, g2)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return np.where((n * d).sum(1, keepdims=True) < 0, -n, n)


def _tube(radius_x, radius_z, y0, y1, z0, n=64, m=8):
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ys = np.linspace(y0, y1, m)
    yy, aa = np.meshgrid(ys, ang, indexing="ij")
    v = np.stack([radius_x * np.sin(aa), yy, z0 + radius_z * np.cos(aa)], -1).reshape(-1, 3)
    idx = np.arange(m * n).reshape(m, n)
    a, b = idx[:-1], np.roll(idx, -1, axis=1)[:-1]
    c, e = idx[1:], np.roll(idx, -1, axis=1)[1:]
    f = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, e], -1).reshape(-1, 3)])
    return v, f


def _neck() -> Part:
    v, f = _tube(0.050, 0.052, -0.215, -0.06, -0.012)
    return Part("neck", v, f, colour=(0.80, 0.60, 0.50))


def _shoulders() -> Part:
    d, faces, _ = _sphere_grid(64, 32)
    v = d * np.array([0.21, 0.07, 0.11]) + np.array([0.0, -0.27, -0.02])
    return Part("shoulders", v, faces, colour=(0.20, 0.30, 0.45))


# --------------------------------------------------------------------------------------------- Lee Perry-Smith
# The scan's units are arbitrary; 0.043 m per unit makes its head breadth (widest slice above the neck,
# 3.6 units) 0.155 m, an average adult's. +Y is up and the face looks toward +Z already (glTF).
LPS_METRES_PER_UNIT = 0.043


def lee_perry_smith(folder: str | Path | None = None) -> list[Part] | None:
    """The Lee Perry-Smith scan in the GT frame, or None when ../shared/eval/heads is absent."""
    folder = Path(folder) if folder else SHARED_HEADS / "LeePerrySmith"
    glb, col = folder / "LeePerrySmith.glb", folder / "Map-COL.jpg"
    if not (glb.is_file() and col.is_file()):
        return None
    import trimesh

    scene = trimesh.load(str(glb))
    mesh = next(iter(scene.geometry.values()))
    v = np.asarray(mesh.vertices, np.float64)
    # Head centre: the middle of the bounding box of everything above the neck's narrowest slice.
    ys = np.linspace(-1.5, 1.0, 26)
    widths = [np.ptp(v[np.abs(v[:, 1] - y) < 0.15, 0]) for y in ys]
    neck_y = ys[int(np.argmin(widths))]
    above = v[v[:, 1] > neck_y]
    centre = 0.5 * (above.min(0) + above.max(0))
    centre[0] = 0.0
    verts = (v - centre) * LPS_METRES_PER_UNIT
    # The file's UVs are stored with OpenGL's bottom-left origin (as three.js's example, which loads the texture
    # with flipY, expects); trimesh flips glTF UVs to OpenGL once more, so flip them back.
    uv = np.asarray(mesh.visual.uv, np.float64) * np.array([1.0, -1.0]) + np.array([0.0, 1.0])
    return [Part("lee_perry_smith", verts, np.asarray(mesh.faces, np.int64), uv, str(col))]


def get_head(name: str, tex_size: int = 1024) -> list[Part] | None:
    """A head by name: ``synthetic``, ``LeePerrySmith`` (None when its files are absent) or one of the subjects
    made from the head prior (``template-a`` ... , scripts/harness/template_heads.py)."""
    from harness.template_heads import SUBJECTS, template_head

    if name == "synthetic":
        return synthetic_head(tex_size=tex_size)
    if name == "LeePerrySmith":
        return lee_perry_smith()
    if name in SUBJECTS:
        return template_head(name, tex_size=tex_size)
    raise ValueError(f"unknown head {name!r}: use synthetic, LeePerrySmith or one of {', '.join(SUBJECTS)}")
