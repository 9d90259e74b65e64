"""The asset's atlas layout: the template's own UV islands (connected components in UV space of each part) —
the skin's re-unwrapped for low stretch over the face (engine/asset/unwrap.py: same vertices, same seams), the
others kept as the template has them inside, rescaled to an even texel density — packed into [0, 1]^2.

It depends on the template (its vertices, shape targets and UVs) and on engine/asset/typical_fit.json (the
landmark fit's mean shape coefficients over a set of portraits): the skin is re-unwrapped on that typical fitted
head (:func:`layout_vertices`), not on the template, whose proportions no fitted head has. Every subject gets the
same layout, so textures transfer between heads (engine/asset/uvsubject.py relaxes it on one subject instead).
Skin islands share one density, as large as lets them all fit; the eyes, teeth and tongue share a second one, as
large as fits in what the skin leaves (docs/ASSET.md says why not one).
Packing is on a raster of the atlas: each island's texels (dilated by the margin) go, largest first, to the
leftmost-then-lowest free place; a 90 degree turn is taken only when it lands further left or lower."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp
from PIL import Image, ImageDraw
from scipy.signal import fftconvolve

from engine.asset.parts import Part
from engine.asset.unwrap import UnwrapWeights, boundary_crossings, unwrap
from engine.prior.model import HeadPrior, cache_dir

GRID = 512
"""Cells per side of the packing raster."""
MARGIN = 2
"""Free cells kept around each island (1/256 of the atlas: 8 px at 2048, 4 at 1024)."""
SKIN_GROUP = ("skin",)
"""Parts whose islands share the first (skin) density; the rest share the second."""
REUNWRAP = ("skin",)
"""Parts whose islands are re-unwrapped (:func:`reunwrapped`); the others keep the template's UVs."""
FACE_RAMP_M = (-0.01, 0.01)
"""Template z (m, in front of the ear plane) of a triangle's centroid over which the re-unwrap's weights go from
the back's to the face's (the stats' face is z > 0.02 on the fitted head: a centimetre of margin)."""
FACE_WEIGHTS = (1.0, 0.1)
"""The re-unwrap's conformal and area weights on the face (more area: a more even density, more stretch)."""
BACK_WEIGHTS = (0.2, 0.02)
"""The same behind the face (a fifth of the face's: the back of the head takes the distortion)."""
BACK_SCALE = 0.6
"""Target texel density behind the face, against the face's 1 (with the weak area term there the back gets
0.8 of the face's median density on the template)."""
TYPICAL_FIT = Path(__file__).with_name("typical_fit.json")
"""The landmark fit's mean shape coefficients over a set of portraits (written by scripts/typical_fit.py)."""


def typical_coefficients(prior: HeadPrior, path: Path = TYPICAL_FIT) -> np.ndarray:
    """(S,) the shape coefficients of :data:`TYPICAL_FIT` in the order of ``prior.shape_names`` (0 for a target
    the file does not name; a name the prior lacks is an error: the file is of another prior)."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != "likeness-typical-fit" or data.get("format_version") != 1:
        raise ValueError(f"{path} is not a likeness-typical-fit v1 file")
    index = {n: i for i, n in enumerate(prior.shape_names)}
    unknown = sorted(set(data["coefficients"]) - set(index))
    if unknown:
        raise ValueError(f"{path} names shape targets the prior lacks ({', '.join(unknown[:3])}): rerun its command")
    out = np.zeros(len(prior.shape_names))
    for name, c in data["coefficients"].items():
        out[index[name]] = float(c)
    return out


def layout_vertices(prior: HeadPrior) -> np.ndarray:
    """(V, 3) the head the shared layout is made on: the template shaped by :func:`typical_coefficients`. The
    fit moves every subject the same way from the template (the nose forward and deeper, the mouth back), so a
    layout conformal on the template is not on the fitted heads; one made on this head is (docs/ASSET.md)."""
    return prior.shaped(typical_coefficients(prior))


@dataclass(frozen=True)
class Island:
    """One UV island: ``part`` name, ``vertices`` (K,) indices into that part's seam-split vertices, ``uv`` (K, 2)
    in metres, origin at its corner (the template's UVs x sqrt(3D area / UV area), or the re-unwrap's),
    ``triangles`` (T, 3) into ``vertices``, ``area_m2`` its 3D area."""

    part: str
    vertices: np.ndarray
    uv: np.ndarray
    triangles: np.ndarray
    area_m2: float


def reunwrapped(
    positions: np.ndarray, uv: np.ndarray, tris: np.ndarray, fixed: np.ndarray | None = None
) -> np.ndarray | None:
    """(K, 2) new UVs (metres on the face) for one island of ``positions`` (K, 3) with flip-free start ``uv``
    (K, 2, metres) and ``tris`` (T, 3): :func:`engine.asset.unwrap.unwrap` with the face weighted in (by each
    triangle's centroid z, :data:`FACE_RAMP_M`), turned to the start's orientation (unless vertices are
    ``fixed``: those keep their start UVs). None if it overlaps itself (not seen on the template: the caller
    keeps the template's UVs)."""
    z = np.asarray(positions, np.float64)[tris].mean(1)[:, 2]
    face = np.clip((z - FACE_RAMP_M[0]) / (FACE_RAMP_M[1] - FACE_RAMP_M[0]), 0.0, 1.0)
    conformal, area = (b + (f - b) * face for f, b in zip(FACE_WEIGHTS, BACK_WEIGHTS, strict=True))
    weights = UnwrapWeights(conformal, area, BACK_SCALE + (1 - BACK_SCALE) * face)
    new, _ = unwrap(positions, uv, tris, weights, fixed=fixed)
    if fixed is not None and len(fixed):
        return new if boundary_crossings(new, tris) == 0 else None
    # the energy does not see rotation: turn the result back to the template's (least squares, no mirror)
    a, b = new - new.mean(0), uv - uv.mean(0)
    c, s = (a * b).sum(), (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()
    r = np.hypot(c, s)
    new = a @ np.array([[c, s], [-s, c]]) / r
    return new if boundary_crossings(new, tris) == 0 else None


def islands(parts: dict[str, Part], vertices: np.ndarray) -> list[Island]:
    """Every part's UV islands in metres on the template-indexed ``vertices`` (V, 3) (:func:`layout_vertices`):
    the template's UVs rescaled (an even density across islands), or for :data:`REUNWRAP` parts re-unwrapped
    (:func:`reunwrapped`)."""
    out = []
    for name, part in parts.items():
        pos = np.asarray(vertices, np.float64)[part.template_vertex]
        for verts, t in island_triangles(part):
            a3 = 0.5 * np.linalg.norm(np.cross(pos[verts[t[:, 1]]] - pos[verts[t[:, 0]]],
                                               pos[verts[t[:, 2]]] - pos[verts[t[:, 0]]]), axis=1).sum()  # fmt: skip
            q = part.uv[verts][t]
            auv = 0.5 * np.abs(np.cross(q[:, 1] - q[:, 0], q[:, 2] - q[:, 0])).sum()
            uv = (part.uv[verts] - part.uv[verts].min(0)) * np.sqrt(a3 / auv)
            if name in REUNWRAP:
                new = reunwrapped(pos[verts], uv, t)
                uv = uv if new is None else new - new.min(0)
            out.append(Island(name, verts, uv, t, float(a3)))
    return out


def island_triangles(part: Part) -> list[tuple[np.ndarray, np.ndarray]]:
    """The part's UV islands (connected components of its seam-split vertices), in order: each island's
    vertices (K,) into the part's and its triangles (T, 3) into those K."""
    tris, n = part.triangles, len(part.uv)
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]]])
    graph = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    count, label = sp.csgraph.connected_components(graph, directed=False)
    out = []
    for i in range(count):
        t = tris[label[tris[:, 0]] == i]
        if len(t) == 0:
            continue
        verts = np.nonzero(label == i)[0]
        local = np.full(n, -1)
        local[verts] = np.arange(len(verts))
        out.append((verts, local[t]))
    return out


def _mask(uv: np.ndarray, tris: np.ndarray, scale: float) -> np.ndarray:
    """(H, W) cells the island covers at ``scale`` cells per metre (conservative), dilated by the margin; row = u,
    column = v."""
    xy = uv * scale + MARGIN + 1
    w, h = (np.ceil(xy.max(0)) + MARGIN + 2).astype(int)
    img = Image.new("1", (int(h), int(w)))
    draw = ImageDraw.Draw(img)
    for f in xy[tris]:
        draw.polygon([(float(p[1]), float(p[0])) for p in f], fill=1, outline=1)
    m = np.asarray(img, bool)
    return ndi.binary_dilation(m, iterations=MARGIN) if MARGIN else m


def _place(occupied: np.ndarray, mask: np.ndarray) -> tuple[int, int] | None:
    """The leftmost-then-lowest cell where ``mask`` fits into the free cells of ``occupied``, or None."""
    gu, gv = occupied.shape
    mu, mv = mask.shape
    if mu > gu or mv > gv:
        return None
    hits = fftconvolve(occupied.astype(np.float32), mask[::-1, ::-1].astype(np.float32), mode="valid")
    free = np.argwhere(hits < 0.5)
    return (int(free[0, 0]), int(free[0, 1])) if len(free) else None


def _pack(group: list[Island], scale: float, occupied: np.ndarray) -> list[tuple[int, int, bool]] | None:
    """Each island's (cell u, cell v, turned) at ``scale`` cells per metre, filling ``occupied`` in place; None
    (and ``occupied`` spoilt) if one does not fit."""
    out = []
    for isl in group:
        best = None
        for turned in (False, True):
            uv = isl.uv[:, ::-1] * [1.0, -1.0] + [0.0, isl.uv[:, 0].max()] if turned else isl.uv
            m = _mask(uv, isl.triangles, scale)
            at = _place(occupied, m)
            if at is not None and (best is None or at < best[0]):
                best = (at, turned, m)
        if best is None:
            return None
        (cu, cv), turned, m = best
        occupied[cu : cu + m.shape[0], cv : cv + m.shape[1]] |= m
        out.append((cu, cv, turned))
    return out


def _largest(group: list[Island], occupied: np.ndarray, steps: int = 11) -> tuple[float, list, np.ndarray]:
    """The largest scale (cells per metre, to 1 part in 2^steps of the first bound) at which ``group`` packs
    into the free cells of ``occupied``: (scale, placements, occupied after)."""
    extent = max(float(i.uv.max()) for i in group)
    lo, hi = 0.0, (GRID - 2 * MARGIN - 3) / extent
    best = None
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        occ = occupied.copy()
        placed = _pack(group, mid, occ)
        if placed is None:
            hi = mid
        else:
            lo, best = mid, (mid, placed, occ)
    if best is None:
        raise ValueError("the template's UV islands do not pack")  # cannot happen: the smallest scale fits
    return best


def atlas_layout(parts: dict[str, Part], vertices: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    """New UVs (N, 2) in [0, 1]^2 (v up) for each part's seam-split vertices, made on the template-indexed
    ``vertices`` (V, 3) (:func:`layout_vertices`), and what the layout is: the two densities (atlas units per
    metre) and each island's place."""
    isl = sorted(islands(parts, vertices), key=lambda i: -i.area_m2)
    groups = [[i for i in isl if i.part in SKIN_GROUP], [i for i in isl if i.part not in SKIN_GROUP]]
    occupied = np.zeros((GRID, GRID), bool)
    new_uv = {name: np.zeros_like(p.uv) for name, p in parts.items()}
    report = {"grid": GRID, "margin_cells": MARGIN, "groups": []}
    for group in groups:
        scale, placed, occupied = _largest(group, occupied)
        for i, (cu, cv, turned) in zip(group, placed, strict=True):
            uv = i.uv[:, ::-1] * [1.0, -1.0] + [0.0, i.uv[:, 0].max()] if turned else i.uv
            new_uv[i.part][i.vertices] = (uv * scale + MARGIN + 1 + [cu, cv]) / GRID
        report["groups"].append(
            {
                "parts": sorted({i.part for i in group}),
                "islands": len(group),
                "density_per_m": round(scale / GRID, 3),
                "turned": int(sum(p[2] for p in placed)),
            }
        )
    return new_uv, report


LAYOUT_VERSION = 4
"""Bump when :func:`atlas_layout`'s answer changes for the same template (the on-disk cache keys on it)."""
_LAYOUTS: dict[str, tuple[dict[str, np.ndarray], dict]] = {}
"""atlas_layout's answers in this process, by a digest of its inputs' arrays (a server worker or a batch
builds many heads on one template)."""


def layout_cache_path(key: str) -> Path:
    """Where the layout with input digest ``key`` is kept: next to the prepared prior
    (``$LIKENESS_CACHE_DIR/prior``), as it is derived from the template (and the typical fit's file)."""
    return cache_dir() / f"uvlayout-v{LAYOUT_VERSION}-{key[:24]}.npz"


def _read_layout(path: Path, parts: dict[str, Part]) -> tuple[dict[str, np.ndarray], dict] | None:
    """The cached layout, or None if the file is missing, unreadable or does not fit ``parts``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            uv = {name: np.asarray(z[f"uv_{name}"], np.float64) for name in parts}
            report = json.loads(str(z["report"]))
    except Exception:  # noqa: BLE001 - any damage to a cache file means: compute it again
        return None
    ok = all(uv[n].shape == p.uv.shape and np.isfinite(uv[n]).all() for n, p in parts.items())
    return (uv, report) if ok and isinstance(report, dict) else None


def _write_layout(path: Path, uv: dict[str, np.ndarray], report: dict) -> None:
    """Write atomically (a temporary file renamed); a cache that cannot be written is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp.npz", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, report=np.asarray(json.dumps(report)), **{f"uv_{n}": a for n, a in uv.items()})
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)


def _disk_cache_on() -> bool:
    return os.environ.get("LIKENESS_ASSET_LAYOUT_CACHE", "1") != "0"


def packed_parts(parts: dict[str, Part], vertices: np.ndarray) -> tuple[dict[str, Part], dict]:
    """``parts`` with their UVs replaced by :func:`atlas_layout`'s on ``vertices`` (:func:`layout_vertices`):
    from this process's memory, else from the file :func:`layout_cache_path` (recomputed and rewritten when
    missing or damaged; not read or written when $LIKENESS_ASSET_LAYOUT_CACHE is 0), else computed (about 5 s on
    two CPU cores)."""
    h = hashlib.sha256(f"layout-v{LAYOUT_VERSION}".encode())
    h.update(np.ascontiguousarray(vertices, np.float64).tobytes())
    for name, p in parts.items():
        h.update(name.encode())
        for a in (p.template_vertex, p.uv, p.quads):
            h.update(np.ascontiguousarray(a).tobytes())
    key = h.hexdigest()
    if key not in _LAYOUTS:
        path = layout_cache_path(key)
        found = _read_layout(path, parts) if _disk_cache_on() else None
        if found is None:
            found = atlas_layout(parts, vertices)
            if _disk_cache_on():
                _write_layout(path, *found)
        _LAYOUTS[key] = found
    uv, report = _LAYOUTS[key]
    return {name: replace(p, uv=uv[name].copy()) for name, p in parts.items()}, dict(report)
