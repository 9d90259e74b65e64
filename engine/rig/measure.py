"""Expression measurements on mediapipe landmarks of an image (pixels): the numbers the rig's evidence is stated
in. Image y grows downward; "left" is the subject's left (mediapipe's LEFT_EYE: 263/362)."""

from __future__ import annotations

import numpy as np

from engine.rig import topology as T

EAR_POINTS = {"left": (362, 385, 387, 263, 373, 380), "right": (133, 158, 160, 33, 144, 153)}
"""Eye aspect ratio points p1..p6 (Soukupova & Cech): (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)."""


def face_height_px(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[T.FOREHEAD, :2] - points[T.CHIN, :2]))


def lip_gap_px(points: np.ndarray) -> float:
    """Distance between the inner lips' midpoints (13, 14), pixels."""
    return float(np.linalg.norm(points[T.UPPER_LIP_INNER, :2] - points[T.LOWER_LIP_INNER, :2]))


def eye_aspect_ratio(points: np.ndarray, side: str) -> float:
    p = points[list(EAR_POINTS[side]), :2]
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2.0 * np.linalg.norm(p[0] - p[3])))


def corner_height_px(points: np.ndarray, side: str) -> float:
    """Height of the mouth corner (61 right, 291 left) relative to the line of the outer eye corners, pixels;
    larger is higher (it is negative: the mouth is below the eyes)."""
    eyes_y = 0.5 * (points[T.EYE_OUTER["left"], 1] + points[T.EYE_OUTER["right"], 1])
    return float(eyes_y - points[T.MOUTH_CORNER[side], 1])


def summary(points: np.ndarray) -> dict[str, float]:
    return {
        "face_height_px": face_height_px(points),
        "lip_gap_px": lip_gap_px(points),
        "ear_left": eye_aspect_ratio(points, "left"),
        "ear_right": eye_aspect_ratio(points, "right"),
        "corner_left_px": corner_height_px(points, "left"),
        "corner_right_px": corner_height_px(points, "right"),
    }


# ----------------------------------------------------------------------------------------------- the evidence
ROUND_TRIP_NAMES = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "browInnerUp")
ROUND_TRIP_SETS = (
    {"jawOpen": 0.6, "browInnerUp": 0.7},
    {"eyeBlinkLeft": 1.0, "mouthSmileRight": 0.8},
    {"eyeBlinkRight": 0.8, "mouthSmileLeft": 0.6, "jawOpen": 0.3},
    {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "browInnerUp": 0.4},
)


def measurement_cameras(avatar, size: int = 256, fov_deg: float = 9.0, yaws=(0.0, 8.0, -8.0)):
    """Cameras at the photo camera's distance and direction (where the field is most faithful), turned by
    ``yaws`` degrees about the vertical through the face's centre, framing the face: [(cam2world, intrinsics)]."""
    from engine.conventions import Intrinsics, look_at_gl
    from engine.rig import rig_for_avatar

    target = rig_for_avatar(avatar).photo[: T.N_MESH].mean(0)
    eye = np.asarray(avatar.photo_cam2world)[:3, 3]
    out = []
    for yaw in yaws:
        r = np.radians(yaw)
        rot = np.array([[np.cos(r), 0.0, np.sin(r)], [0.0, 1.0, 0.0], [-np.sin(r), 0.0, np.cos(r)]])
        out.append((look_at_gl(target + rot @ (eye - target), target), Intrinsics.from_fov(fov_deg, size, size)))
    return out


def render_landmarks(avatar, cam2world, intr, weights: dict | None, rig: str = "auto"):
    """mediapipe landmarks (478, 3) in pixels of a neural render at ARKit ``weights`` (None: the photo as built)
    on ``rig`` (engine.rig.RIG_SOURCES), composited over white, and the RGB image."""
    from engine.rig import deform_for_avatar
    from engine.rig.fit import image_landmarks

    deform = None if weights is None else deform_for_avatar(avatar, weights, rig=rig)
    out = avatar.render(cam2world, intr, deform=deform)
    a = out["alpha"][..., None]
    rgb = (np.clip(out["rgb"] + (1.0 - a), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return image_landmarks(rgb), rgb


def evidence(avatar, size: int = 256, rig: str = "auto") -> dict:
    """The rig's evidence on neural renders of ``avatar``, measured with mediapipe (issue 5): lip gap opened by
    jawOpen (percent of face height), eye-aspect-ratio change under eyeBlinkLeft (mean over three views), mouth
    corner rise under mouthSmileLeft/Right, and the round trip render -> landmarks -> fitted weights (MAE over
    :data:`ROUND_TRIP_NAMES`, fitted with the render camera known); the field moved by ``rig``
    (engine.rig.RIG_SOURCES: the bundle's proxy rig, or the asset's keys; ``auto`` the latter when there is an
    asset, and ``rig`` in the result says which)."""
    from engine.rig import resolve_rig, rig_named
    from engine.rig.arkit import INDEX, to_vector
    from engine.rig.fit import fit_weights_image

    cams = measurement_cameras(avatar, size)
    neutral = [render_landmarks(avatar, c, i, {}, rig)[0] for c, i in cams]
    blink = [render_landmarks(avatar, c, i, {"eyeBlinkLeft": 1.0}, rig)[0] for c, i in cams]
    ear_l = [
        100.0 * (1.0 - eye_aspect_ratio(b, "left") / eye_aspect_ratio(n, "left"))
        for n, b in zip(neutral, blink, strict=True)
    ]
    ear_r = [
        100.0 * (eye_aspect_ratio(b, "right") / eye_aspect_ratio(n, "right") - 1.0)
        for n, b in zip(neutral, blink, strict=True)
    ]
    cam, intr = cams[0]
    n0 = neutral[0]
    fh = face_height_px(n0)
    jaw = render_landmarks(avatar, cam, intr, {"jawOpen": 1.0}, rig)[0]
    corners = {}
    for side in ("Left", "Right"):
        p = render_landmarks(avatar, cam, intr, {f"mouthSmile{side}": 1.0}, rig)[0]
        corners[side] = {s: 100.0 * (corner_height_px(p, s) - corner_height_px(n0, s)) / fh for s in ("left", "right")}
    face_rig = rig_named(avatar, rig)
    errors, fits = [], []
    for weights in ROUND_TRIP_SETS:
        p = render_landmarks(avatar, cam, intr, weights, rig)[0]
        w = fit_weights_image(face_rig, p, cam, intr)
        t = to_vector(weights)
        errors += [abs(float(w[INDEX[k]] - t[INDEX[k]])) for k in ROUND_TRIP_NAMES]
        fits.append({k: round(float(w[INDEX[k]]), 3) for k in ROUND_TRIP_NAMES})
    return {
        "size": size,
        "rig": resolve_rig(avatar, rig),
        "face_height_px": round(fh, 1),
        "jaw_open_lip_gap_pct_face": round(100.0 * (lip_gap_px(jaw) - lip_gap_px(n0)) / fh, 2),
        "blink_left_ear_reduction_pct": round(float(np.mean(ear_l)), 2),
        "blink_left_ear_reduction_pct_per_view": [round(x, 1) for x in ear_l],
        "blink_left_right_ear_change_pct": round(float(np.mean(ear_r)), 2),
        "blink_left_right_ear_change_pct_per_view": [round(x, 1) for x in ear_r],
        "smile_corner_rise_pct_face": {k: {s: round(v, 2) for s, v in d.items()} for k, d in corners.items()},
        "round_trip_mae": round(float(np.mean(errors)), 4),
        "round_trip_sets": [dict(s) for s in ROUND_TRIP_SETS],
        "round_trip_fits": fits,
    }
