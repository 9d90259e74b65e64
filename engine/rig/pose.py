"""Head and neck rotation: the asset armature's ``neck`` and ``head`` bones moving the mesh and the radiance field
the same way (a Live Link Face take's HeadYaw / HeadPitch / HeadRoll, or an artist posing the bones).

The skinning is one function of position, shared by the asset's GLB (its skin and hair weights) and the neural
render (:class:`PoseDeform`): the **neck blend**, two planes parallel to the template's neck cut.

* below the cut the field's body stays put (weight "root"; the mesh has no vertex there), fading in over
  :data:`ROOT_FADE` of the template's units under the cut;
* from the cut up to :data:`HEAD_BLEND` above it the neck bone hands over to the head bone (smoothstep), so the
  throat bends and the neck cut itself follows only the neck bone;
* above that everything, the jaw, the under-chin, ears, hair, eyes, teeth and tongue, is the head's.

The blend of a fitted head and of a loaded avatar, and the entry points that pose an avatar, are
engine/asset/skinning.py's (they need the prior and the bundle). A pose is each bone's rigid transform in the
avatar's world (engine axes, metres), rest -> posed, the way a glTF skin applies it: ``x = sum_i w_i(X) (R_i X +
t_i)``. The field is rendered through the inverse (:class:`PoseDeform`: each bone's inverse where that bone has all
the weight, Newton's method in the throat's blend). A bone not posed is the identity; the head bone's transform
includes the neck's (parent to child), as Blender's pose-bone matrices do. See docs/RIG.md "Head rotation"."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from engine.errors import InputError

POSE_BONES = ("neck", "head")
"""The bones that skin the head and neck (the neck blend)."""
EYE_BONES = ("eye_L", "eye_R")
"""The asset's eye bones: a pose may turn them too (the eyeballs, relative to the head; :func:`eye_gaze`)."""
MAX_GAZE_DEG = 50.0
"""Most an eye bone may turn from the head's rest direction (a human eye's range is about 45 degrees)."""
HEAD_BLEND = 0.025
"""Template units (about metres) above the neck cut's plane over which the neck bone hands over to the head bone."""
ROOT_FADE = 0.03
"""Template units below the neck cut's plane over which the field's body stops following the neck bone."""
MAX_TRANSLATION_M = 1.0
ITERATIONS = 8
"""Most Newton steps one start of the backward warp takes (only points still missing take them)."""
HEAD_RADIUS_M = 0.25
"""World metres from the head joint that hold everything a pose moves (the posed field's cube is grown to hold
this ball where the bones take it; a rest point outside the field's own cube is empty anyway)."""
NEWTON_RADIUS_M = 0.12
"""World metres from the neck's axis within which the throat's blend is solved exactly (beyond: the air beside
the neck and the ends of long hair, one fixed-point step)."""
TOLERANCE = 1e-6
"""World metres: a rest point whose forward skinning lands this near the posed point is taken."""


def smoothstep01(t):
    t = t.clamp(0.0, 1.0) if isinstance(t, torch.Tensor) else np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def blend_weights(h, head_m: float, root_m: float):
    """(..., 3) weights of (root, neck, head) at heights ``h`` (...,) above the neck cut's plane (numpy or torch,
    any one length unit): the one formula the asset's mesh (:meth:`NeckBlend.weights`) and the field
    (:class:`PoseDeform`) are skinned by."""
    head = smoothstep01(h / head_m)
    root = smoothstep01(-h / root_m)
    stack = torch.stack if isinstance(h, torch.Tensor) else np.stack
    return stack([root, 1.0 - head - root, head], -1)


def fit_plane(points: np.ndarray, toward) -> tuple[np.ndarray, np.ndarray]:
    """A point on and the unit normal of the least-squares plane through ``points`` (N, 3), the normal on the side
    of the point ``toward`` (3,)."""
    c = np.asarray(points, np.float64).mean(0)
    n = np.linalg.svd(np.asarray(points, np.float64) - c)[2][2]
    return c, (n if (np.asarray(toward, np.float64) - c) @ n > 0 else -n)


@dataclass(frozen=True)
class NeckBlend:
    """The neck blend in world metres: ``point`` on and unit ``normal`` (toward the head) of the neck cut's plane,
    ``head_m`` / ``root_m`` the blend heights above and below it, and the neck and head joints (3,)."""

    point: np.ndarray
    normal: np.ndarray
    head_m: float
    root_m: float
    neck_joint: np.ndarray
    head_joint: np.ndarray

    def weights(self, points) -> np.ndarray:
        """(N, 3) world points -> (N, 3) weights of (root, neck, head), each row summing to 1."""
        return blend_weights((np.asarray(points, np.float64) - self.point) @ self.normal, self.head_m, self.root_m)

    def to_dict(self) -> dict:
        r = lambda v: [round(float(x), 6) for x in v]  # noqa: E731
        return {"plane_point_m": r(self.point), "plane_normal": r(self.normal), "head_blend_m": round(self.head_m, 6),
                "root_fade_m": round(self.root_m, 6), "neck_joint_m": r(self.neck_joint),
                "head_joint_m": r(self.head_joint)}  # fmt: skip

    @staticmethod
    def from_dict(d: Mapping) -> NeckBlend:
        """The inverse of :meth:`to_dict`; ValueError for anything malformed."""
        vec = lambda k: _finite(np.asarray(d[k], np.float64).reshape(3), k)  # noqa: E731
        n = vec("plane_normal")
        if not 0.5 < np.linalg.norm(n) < 2.0:
            raise ValueError("plane_normal is not a unit vector")
        hm, rm = float(d["head_blend_m"]), float(d["root_fade_m"])
        if not (1e-4 < hm < 1.0 and 1e-4 < rm < 1.0):
            raise ValueError("blend heights out of range")
        return NeckBlend(vec("plane_point_m"), n / np.linalg.norm(n), hm, rm, vec("neck_joint_m"), vec("head_joint_m"))


def _finite(a: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(a).all() or np.abs(a).max() > 10.0:
        raise ValueError(f"{what} is not a finite position within 10 m")
    return a


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Live Link yaw / pitch / roll (radians) as a rotation in the engine's axes (X the subject's left, Y up, Z out
    of the face): right-handed about Y, then X, then Z, composed yaw . pitch . roll -- the add-on's
    ``livelink.rotation_quaternion`` in Blender's axes. Positive yaw turns the face toward the subject's left,
    positive pitch tips it down, positive roll raises the subject's left ear."""

    def about(axis: int, a: float) -> np.ndarray:
        c, s = math.cos(a), math.sin(a)
        i, j = [(1, 2), (2, 0), (0, 1)][axis]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        return m

    return about(1, yaw) @ about(0, pitch) @ about(2, roll)


def rotation_angle_deg(rot: np.ndarray) -> float:
    """The angle of a rotation (3, 3), degrees."""
    return float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0))))


def about_joint(rot: np.ndarray, joint) -> np.ndarray:
    """(4, 4) the rigid transform rotating by ``rot`` (3, 3) about the point ``joint`` (3,)."""
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = np.asarray(joint, np.float64) - rot @ np.asarray(joint, np.float64)
    return m


def check_pose(pose: Mapping[str, object] | None) -> dict[str, np.ndarray]:
    """``{bone: 4x4}`` -> float64 (4, 4) arrays, the neck's and head's identities dropped. InputError for a bone not in
    :data:`POSE_BONES` or :data:`EYE_BONES`, a matrix that is not rigid (orthonormal, right-handed, last row 0 0 0
    1, translation within :data:`MAX_TRANSLATION_M`) or an eye turned past :data:`MAX_GAZE_DEG`."""
    out = {}
    bones = POSE_BONES + EYE_BONES
    for bone, m in (pose or {}).items():
        if bone not in bones:
            raise InputError(f"pose moves the bones {', '.join(bones)}, not {bone!r}")
        try:
            a = np.asarray(m, np.float64)
        except (TypeError, ValueError):
            a = np.zeros(0)
        if a.shape != (4, 4) or not np.isfinite(a).all():
            raise InputError(f"pose[{bone!r}] is not a 4x4 matrix of finite numbers")
        rot = a[:3, :3]
        if np.abs(a[3] - [0, 0, 0, 1]).max() > 1e-6:
            raise InputError(f"the last row of pose[{bone!r}] must be 0 0 0 1")
        if np.abs(rot.T @ rot - np.eye(3)).max() > 2e-3 or np.linalg.det(rot) <= 0:
            raise InputError(f"pose[{bone!r}] is not a rotation (orthonormal, right-handed: no scale or mirror)")
        if np.linalg.norm(a[:3, 3]) > MAX_TRANSLATION_M:
            raise InputError(f"pose[{bone!r}] moves the bone more than {MAX_TRANSLATION_M:g} m")
        # an eye's identity is kept: under a turned head it is an eye looking away from the head's direction
        if bone in EYE_BONES or np.abs(a - np.eye(4)).max() > 1e-9:
            u, _, vt = np.linalg.svd(rot)
            a[:3, :3] = u @ vt
            out[bone] = a
    eye_gaze(out)
    return out


def eye_gaze(pose: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{eye: (3, 3)}``: each eye bone's rotation relative to the head bone (the eyeball's turn about its centre,
    as the asset's armature has it: an eye is the head's child; a translation of the eye is not used), those that
    do not turn left out. InputError for an eye turned past :data:`MAX_GAZE_DEG`."""
    head_inv = np.linalg.inv(np.asarray(pose.get("head", np.eye(4)), np.float64))
    out = {}
    for bone in EYE_BONES:
        if bone not in pose:
            continue
        rot = (head_inv @ np.asarray(pose[bone], np.float64))[:3, :3]
        angle = rotation_angle_deg(rot)
        if angle > MAX_GAZE_DEG:
            raise InputError(f"pose[{bone!r}] turns the eye {angle:.0f} degrees from the head's direction",
                             hint=f"an eye turns at most {MAX_GAZE_DEG:g} degrees")  # fmt: skip
        if angle > 1e-4:
            out[bone] = rot
    return out


def body_pose(pose: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The neck and head bones of a checked pose (what the neck blend skins)."""
    return {b: m for b, m in pose.items() if b in POSE_BONES}


def pose_points(blend: NeckBlend, pose: Mapping[str, np.ndarray], points) -> np.ndarray:
    """Forward skinning of rest world points (N, 3) by a checked ``pose`` (what a glTF viewer does to the asset)."""
    p = np.asarray(points, np.float64)
    w = blend.weights(p)
    out = w[:, :1] * p
    for k, bone in enumerate(POSE_BONES, 1):
        m = pose.get(bone, np.eye(4))
        out = out + w[:, k : k + 1] * (p @ m[:3, :3].T + m[:3, 3])
    return out


class PoseDeform:
    """The backward warp of a head/neck pose for the renderer (canonical points in, rest canonical points out),
    composed with an ``inner`` deform (an expression's, or None) applied after it. ``scale`` world -> canonical."""

    def __init__(self, blend: NeckBlend, pose: Mapping[str, np.ndarray], scale: float, inner=None, device="cpu"):
        self.blend, self.pose, self.inner, self.scale = blend, dict(pose), inner, float(scale)
        f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
        mats = [np.eye(4)] + [self.pose.get(b, np.eye(4)) for b in POSE_BONES]
        lin = np.stack([m[:3, :3] for m in mats])
        off = np.stack([m[:3, 3] * self.scale for m in mats])
        self._lin, self._off = f(lin), f(off)
        self._point, self._normal = f(blend.point * self.scale), f(blend.normal)
        self._head, self._root = blend.head_m * self.scale, blend.root_m * self.scale
        # bones that move alike (the root and an unposed neck) count as one: their blend needs no solving
        same = np.array([[np.abs(a - b).max() < 1e-12 for b in mats] for a in mats], np.float32)
        self._same = f(same)

    def _weights(self, x: torch.Tensor) -> torch.Tensor:
        return blend_weights((x - self._point) @ self._normal, self._head, self._root)

    def _blended(self, rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self._weights(rest)
        return torch.einsum("nk,kij->nij", w, self._lin), w @ self._off

    def _step(self, rest: torch.Tensor, x: torch.Tensor):
        """The forward skinning's miss at ``rest`` (N, 3), its blended linear maps and the Newton step there (the
        Jacobian adds each bone's position times its weight's gradient, which points along the cut's normal)."""
        lin, off = self._blended(rest)
        miss = (lin @ rest[..., None])[..., 0] + off - x
        h = (rest - self._point) @ self._normal
        th = (h / self._head).clamp(0.0, 1.0)
        tr = (-h / self._root).clamp(0.0, 1.0)
        d_head = 6.0 * th * (1.0 - th) / self._head
        d_root = -6.0 * tr * (1.0 - tr) / self._root
        grads = torch.stack([d_root, -d_head - d_root, d_head], -1)  # d w_k / d h
        bone_pos = torch.einsum("kij,nj->nki", self._lin, rest) + self._off  # (N, 3 bones, 3)
        jac = lin + torch.einsum("nki,nk,j->nij", bone_pos, grads, self._normal)
        step = torch.linalg.solve(jac, miss[..., None])[..., 0]
        return miss.norm(dim=-1), lin, step

    def unpose(self, x: torch.Tensor, want_lin: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rest canonical points (N, 3) for posed ``x`` (N, 3), and the blended linear maps (N, 3, 3) there.

        The multi-start root finding of SNARF-style articulated fields. First each bone's own inverse (the head's,
        the root's, the neck's): where it lands where that bone has all the weight it is exact (nearly every
        point, at the cost of a dot product). The rest, the throat's blend, get Newton's method on the forward
        skinning from each of those starts in turn (up to :data:`ITERATIONS` steps, until it misses by less than
        :data:`TOLERANCE`), the start that lands nearest kept. Where a turn folds the skin (the chin tucked onto
        the throat, or points far beside the neck in the air) two rest points land on ``x``: the head's is taken,
        as it is in front."""
        if self._lin.device != x.device:
            self._lin, self._off = self._lin.to(x.device), self._off.to(x.device)
            self._point, self._normal = self._point.to(x.device), self._normal.to(x.device)
        cand = torch.einsum("knj,kji->kni", x[None] - self._off[:, None], self._lin)  # (bones, N, 3) inverses
        best = cand[0]
        bone = torch.full_like(x[:, 0], -1, dtype=torch.long)
        for k in (1, 0, 2):  # the last pure start wins: head over root over neck (the head is in front)
            pure = self._weights(cand[k]) @ self._same[k] >= 1.0 - 1e-7
            best = torch.where(pure[:, None], cand[k], best)
            bone = torch.where(pure, k, bone)
        lin = self._lin[bone.clamp(min=0)] if want_lin else None
        band = torch.nonzero(bone < 0)[:, 0]
        if band.numel():  # far beside the neck (air, or the ends of long hair) one fixed-point step does
            rel = x[band] - self._point
            off_axis = (rel - (rel @ self._normal)[:, None] * self._normal).norm(dim=-1)
            far = off_axis > NEWTON_RADIUS_M * self.scale
            if bool(far.any()):
                fb = band[far]
                start = (x[fb] - self._off[2]) @ self._lin[2]
                l_lin, l_off = self._blended(start)
                best[fb] = torch.linalg.solve(l_lin, (x[fb] - l_off)[..., None])[..., 0]
                if lin is not None:
                    lin[fb] = l_lin
                band = band[~far]
        if band.numel():
            rest, lin_band = self._newton(x[band])
            best[band] = rest
            if lin is not None:
                lin[band] = lin_band
        return best, lin

    def _newton(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tol = TOLERANCE * self.scale
        best, best_err = x.clone(), torch.full_like(x[:, 0], float("inf"))
        best_lin = self._lin[0].expand(len(x), 3, 3).clone()
        for k in (2, 0, 1):
            todo = torch.nonzero(best_err > tol)[:, 0]
            if todo.numel() == 0:
                break
            xs = x[todo]
            rest = (xs - self._off[k]) @ self._lin[k]
            err, lin, step = self._step(rest, xs)
            for _ in range(ITERATIONS):
                live = torch.nonzero(err > tol)[:, 0]
                if live.numel() == 0:
                    break
                rest[live] = rest[live] - step[live]
                err[live], lin[live], step[live] = self._step(rest[live], xs[live])
            take = err < best_err[todo]
            idx = todo[take]
            best[idx], best_err[idx], best_lin[idx] = rest[take], err[take], lin[take]
        return best, best_lin

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rest = self.unpose(x, want_lin=False)[0]
        return rest if self.inner is None else self.inner(rest)

    def bind(self, field) -> PosedField:
        inner = field if self.inner is None else (self.inner.bind(field) if hasattr(self.inner, "bind") else None)
        if inner is None:
            from engine.render.renderer import WarpedField

            inner = WarpedField(field, self.inner)
        return PosedField(inner, self, field)


class PosedField:
    """A field (or an expressed field) seen through a pose: the renderer's cube grows to hold the posed head, and a
    point whose rest position falls outside the field's own cube is empty."""

    def __init__(self, inner, deform: PoseDeform, base) -> None:
        self.inner, self.deform = inner, deform
        c, h = base.box_center, float(base.box_half)
        corners = torch.tensor([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype=c.dtype)
        corners = corners.to(c.device)
        # what the bones move lies within HEAD_RADIUS_M of the head joint (a ball, whatever the turn): the cube
        # grows to hold that ball where the neck takes it, not the whole cube swung about the joint
        joint = torch.as_tensor(deform.blend.head_joint * deform.scale, dtype=c.dtype, device=c.device)
        r = HEAD_RADIUS_M * deform.scale
        moved = [corners * h + c]
        for k in (1, 2):
            centre = deform._lin[k].to(c.device) @ joint + deform._off[k].to(c.device)
            moved.append(corners * r + centre)
        allp = torch.cat(moved)
        lo, hi = allp.amin(0), allp.amax(0)
        self.box_center = 0.5 * (lo + hi)
        self.box_half = float((hi - lo).max()) * 0.5
        self._c, self._h = c, h

    @property
    def beta(self) -> float:
        return self.inner.beta

    @property
    def voxel(self) -> float:
        return self.inner.voxel

    def _inside(self, rest: torch.Tensor) -> torch.Tensor:
        return ((rest - self._c).abs() <= self._h).all(-1)

    def sdf_at(self, x: torch.Tensor) -> torch.Tensor:
        rest = self.deform.unpose(x, want_lin=False)[0]
        return self.inner.sdf_at(rest)

    def density(self, x: torch.Tensor, beta: float | None = None) -> torch.Tensor:
        rest = self.deform.unpose(x, want_lin=False)[0]
        sig = self.inner.density(rest, beta=beta)
        return torch.where(self._inside(rest), sig, torch.zeros_like(sig))

    def colour(
        self, x: torch.Tensor, learned_only: bool = False, view_dirs: torch.Tensor | None = None
    ) -> torch.Tensor:
        rest, lin = self.deform.unpose(x)
        if view_dirs is not None:  # the ray's direction in the rest head: the rotation's inverse (its transpose;
            d = (view_dirs[:, None, :] @ lin)[:, 0]  # in the throat's blend near enough, normalised)
            view_dirs = d / d.norm(dim=-1, keepdim=True).clamp(min=1e-9)
        return self.inner.colour(rest, learned_only=learned_only, view_dirs=view_dirs)
