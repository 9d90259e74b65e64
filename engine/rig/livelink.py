"""Live Link Face (Epic) CSV: import and export of ARKit keyframes.

Columns are matched by header name, never by position (the app's CSV order differs from the streaming order), in
any of the three spellings, case-insensitively. ``Timecode`` is ``HH:MM:SS:FF.sub`` (FF frames at the app's rate,
``sub`` a fraction of a frame); times are seconds relative to the first row. Without usable timecodes the row
index / fps is used. Head and eye rotation columns are carried through untouched (their units vary by app
version)."""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.rig.arkit import ARKIT_NAMES, INDEX, N_SHAPES, canonical_name, is_arkit_name

log = logging.getLogger("likeness")

LIVELINK_SHAPE_ORDER = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel",
    "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft",
    "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight",
    "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft",
    "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft",
    "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)  # fmt: skip
"""The app's CSV column order for the 52 shapes (JawRight before JawLeft, MouthRight before MouthLeft)."""
ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw",
             "RightEyePitch", "RightEyeRoll")  # fmt: skip
BONE_COLUMNS = {"head": ROTATIONS[0:3], "eye_L": ROTATIONS[3:6], "eye_R": ROTATIONS[6:9]}
"""The rotation columns (yaw, pitch, roll) per asset armature bone; Live Link's "Left" is the subject's left, as
``eye_L`` (the add-on keys the bones by its own copy, blender_addon/scene_io/livelink.py)."""
HEADER = ("Timecode", "BlendShapeCount", *LIVELINK_SHAPE_ORDER, *ROTATIONS)
STANDARD_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 120.0)
_TIMECODE = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})[:;](\d+)(?:\.(\d+))?\s*$")


@dataclass
class Take:
    """Keyframes: ``times_s`` (T,) from the first row, ``weights`` (T, 52) in ARKit order, other numeric columns
    by name (head/eye rotations), and the frame rate used for the timing."""

    times_s: np.ndarray
    weights: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    fps: float = 60.0

    def at(self, i: int) -> dict[str, float]:
        return {n: float(v) for n, v in zip(ARKIT_NAMES, self.weights[i], strict=True)}


def parse_timecode(text: str) -> tuple[int, int, int, float] | None:
    """``HH:MM:SS:FF.sub`` -> (h, m, s, frames incl. the sub-frame fraction), or None."""
    m = _TIMECODE.match(text or "")
    if not m:
        return None
    h, mi, s, ff, sub = m.groups()
    frames = float(ff) + (float("0." + sub) if sub else 0.0)
    return int(h), int(mi), int(s), frames


def _infer_fps(codes) -> float:
    """The smallest standard rate above every frame number seen; 60 (the app's default) when under a second of
    timecodes cannot tell."""
    seconds = {(h, m, s) for h, m, s, _ in codes}
    top = max(int(f) for *_, f in codes)
    if len(seconds) < 2:
        return 60.0 if top < 60 else float(next(r for r in STANDARD_RATES if r > top))
    for r in STANDARD_RATES:
        if r > top:
            return r
    return float(top + 1)


def timecodes_to_seconds(codes: list[str], fps: float | None = None) -> tuple[np.ndarray | None, float]:
    """Seconds relative to the first timecode (None if any is unreadable) and the rate used."""
    parsed = [parse_timecode(c) for c in codes]
    rate = float(fps) if fps else None
    if not parsed or any(p is None for p in parsed):
        return None, rate or 60.0
    rate = rate or _infer_fps(parsed)
    t = np.array([h * 3600.0 + m * 60.0 + s + f / rate for h, m, s, f in parsed])
    t = t - t[0]
    # a take running past midnight wraps the timecode
    for i in range(1, len(t)):
        if t[i] < t[i - 1] - 1.0:
            t[i:] += 86400.0
    return t, rate


def read_csv(path: str | Path, fps: float | None = None) -> Take:
    """Read a Live Link Face CSV file (see :func:`parse_csv`)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"could not read {path} as a text CSV") from exc
    return parse_csv(text, fps)


def parse_csv(text: str, fps: float | None = None) -> Take:
    """Keyframes from Live Link Face CSV text. Shape columns are found by name; unknown columns other than the
    rotations are ignored with a log line; values are clipped to [0, 1]. ``fps`` overrides the inferred rate."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise InputError("the CSV has no keyframes", "export a take from Live Link Face, or write one with likeness")
    header = [h.strip() for h in rows[0]]
    shape_cols: dict[int, int] = {}
    extra_cols: dict[str, int] = {}
    time_col = None
    for j, h in enumerate(header):
        key = h.lower()
        if key == "timecode":
            time_col = j
        elif is_arkit_name(h):
            n = canonical_name(h)
            if INDEX[n] in shape_cols.values():
                raise InputError(f"the CSV names {n} twice")
            shape_cols[j] = INDEX[n]
        elif key in (r.lower() for r in ROTATIONS):
            extra_cols[next(r for r in ROTATIONS if r.lower() == key)] = j
        elif key != "blendshapecount":
            log.info("ignoring CSV column %r", h)
    if not shape_cols:
        raise InputError("the CSV has no ARKit blendshape columns", "its header must name shapes like EyeBlinkLeft")
    body = rows[1:]
    w = np.zeros((len(body), N_SHAPES))
    extra = {k: np.zeros(len(body)) for k in extra_cols}
    for i, r in enumerate(body):
        try:
            for j, k in shape_cols.items():
                w[i, k] = float(r[j]) if j < len(r) and r[j].strip() else 0.0
            for name, j in extra_cols.items():
                extra[name][i] = float(r[j]) if j < len(r) and r[j].strip() else 0.0
        except ValueError as exc:
            raise InputError(f"row {i + 2} of the CSV holds a non-number ({exc})") from None
    if not np.isfinite(w).all():
        raise InputError("the CSV holds non-finite weights")
    times, rate = (None, float(fps or 60.0))
    if time_col is not None:
        times, rate = timecodes_to_seconds([r[time_col] if time_col < len(r) else "" for r in body], fps)
    if times is None:
        log.info("no usable timecodes; timing rows at %.3g fps", rate)
        times = np.arange(len(body)) / rate
    return Take(times, np.clip(w, 0.0, 1.0), extra, rate)


def format_timecode(seconds: float, fps: float, start_s: float = 0.0) -> str:
    """``HH:MM:SS:FF.sss`` for ``start_s + seconds``."""
    total = start_s + seconds
    frames_total = total * fps
    whole = int(np.floor(frames_total + 1e-6))
    sub = max(frames_total - whole, 0.0)
    secs, ff = divmod(whole, int(round(fps)))
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h % 24:02d}:{m:02d}:{s:02d}:{ff:02d}.{int(round(sub * 1000)) % 1000:03d}"


def write_csv(path: Path | None, take: Take, start_s: float = 0.0) -> str:
    """Write ``take`` in Live Link Face's CSV layout (its header and column order); returns the text and writes it
    to ``path`` when given."""
    out = io.StringIO()
    wr = csv.writer(out, lineterminator="\n")
    wr.writerow(HEADER)
    order = [INDEX[canonical_name(n)] for n in LIVELINK_SHAPE_ORDER]
    for i, t in enumerate(np.asarray(take.times_s, dtype=np.float64)):
        row = [format_timecode(float(t), take.fps, start_s), len(LIVELINK_SHAPE_ORDER) + len(ROTATIONS)]
        row += [f"{take.weights[i, k]:.6g}" for k in order]
        row += [f"{take.extra[r][i]:.6g}" if r in take.extra else "0" for r in ROTATIONS]
        wr.writerow(row)
    text = out.getvalue()
    if path is not None:
        Path(path).write_text(text)
    return text
