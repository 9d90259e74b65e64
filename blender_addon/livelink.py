"""Live Link Face (Epic) CSV takes read without the engine, and the head/eye rotation convention. Pure Python, no
bpy.

The reader is the add-on's deliberate copy of ``engine/rig/livelink.py``'s (the add-on never imports the engine;
tests/test_addon_livelink.py checks the two agree on the same files): columns by header name, never by position,
in any of the three ARKit spellings, case-insensitively; ``Timecode`` ``HH:MM:SS:FF.sub`` becomes seconds from the
first row, FF at the given rate or the smallest standard rate above every frame number seen (60 when under a
second cannot tell), a take across midnight wraps; when any row's timecode is unreadable, the rows are timed by
index / fps. Weights are clipped to [0, 1]. Two differences, both for keying: only the shape columns the file has
are kept (the engine fills the others with 0), and non-finite rotations are refused too (the engine passes them
through).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .arkit import ARKIT_52

ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw",
             "RightEyePitch", "RightEyeRoll")  # fmt: skip
STANDARD_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 120.0)
_TIMECODE = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})[:;](\d+)(?:\.(\d+))?\s*$")


def _suffix_form(name: str) -> str:
    for side, short in (("Left", "_L"), ("Right", "_R")):
        if name.endswith(side):
            return name[: -len(side)] + short
    return name


# the engine's three spellings exactly (engine.rig.arkit._LOOKUP): eyeBlinkLeft, EyeBlinkLeft, eyeBlink_L
_LOOKUP = {form.lower(): n for n in ARKIT_52 for form in (n, n[0].upper() + n[1:], _suffix_form(n))}
_ROTATION_LOOKUP = {r.lower(): r for r in ROTATIONS}


class TakeInvalid(ValueError):
    """The file is not a Live Link Face take this reader understands; the message says why in plain words."""


@dataclass(frozen=True)
class Take:
    """One take. ``times_s`` (T,) seconds from the first row; ``shapes`` Apple spelling -> (T,) weights in [0, 1],
    the file's shape columns only; ``rotations`` ``HeadYaw`` ... ``RightEyeRoll`` -> (T,) values as written
    (radians in recent app versions); ``fps`` the rate of the timecodes' frame numbers (or of the index timing);
    ``timed_by`` ``"timecode"`` or ``"index"``."""

    times_s: tuple[float, ...]
    shapes: dict[str, tuple[float, ...]]
    rotations: dict[str, tuple[float, ...]]
    fps: float
    timed_by: str

    @property
    def rows(self) -> int:
        return len(self.times_s)

    @property
    def duration_s(self) -> float:
        return self.times_s[-1] if self.times_s else 0.0


def parse_timecode(text: str) -> tuple[int, int, int, float] | None:
    """``HH:MM:SS:FF.sub`` -> (h, m, s, frames incl. the sub-frame fraction), or None."""
    m = _TIMECODE.match(text or "")
    if not m:
        return None
    h, mi, s, ff, sub = m.groups()
    return int(h), int(mi), int(s), float(ff) + (float("0." + sub) if sub else 0.0)


def _infer_fps(codes: list[tuple[int, int, int, float]]) -> float:
    seconds = {(h, m, s) for h, m, s, _ in codes}
    top = max(int(f) for *_, f in codes)
    if len(seconds) < 2:
        return 60.0 if top < 60 else float(next(r for r in STANDARD_RATES if r > top))
    for r in STANDARD_RATES:
        if r > top:
            return r
    return float(top + 1)


def timecodes_to_seconds(codes: list[str], fps: float | None = None) -> tuple[list[float] | None, float]:
    """Seconds relative to the first timecode (None if any is unreadable) and the rate used."""
    parsed = [parse_timecode(c) for c in codes]
    rate = float(fps) if fps else None
    if not parsed or any(p is None for p in parsed):
        return None, rate or 60.0
    rate = rate or _infer_fps(parsed)
    t = [h * 3600.0 + m * 60.0 + s + f / rate for h, m, s, f in parsed]
    t0 = t[0]
    t = [x - t0 for x in t]
    wrap = 0.0  # a take running past midnight wraps the timecode
    for i in range(1, len(t)):
        t[i] += wrap
        if t[i] < t[i - 1] - 1.0:
            wrap += 86400.0
            t[i] += 86400.0
    return t, rate


def read_csv(path: str | Path, fps: float | None = None) -> Take:
    """Read a Live Link Face CSV file (see :func:`parse_csv`); :class:`TakeInvalid` for a file that cannot be
    read as UTF-8 text."""
    name = Path(path).name
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise TakeInvalid(f"could not read {name}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TakeInvalid(f"{name} is not a UTF-8 text CSV") from exc
    return parse_csv(text, fps)


def _number(cell: str, row: int) -> float:
    try:
        return float(cell) if cell.strip() else 0.0
    except ValueError:
        raise TakeInvalid(f"row {row} of the CSV holds a non-number ({cell.strip()[:20]!r})") from None


def parse_csv(text: str, fps: float | None = None) -> Take:
    """A take from Live Link Face CSV text. ``fps`` overrides the rate inferred from the timecodes."""
    try:
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    except csv.Error as exc:
        raise TakeInvalid(f"the file is not a readable CSV ({exc})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise TakeInvalid("the CSV has no keyframes (export a take from Live Link Face)")
    shape_cols: dict[str, int] = {}
    rot_cols: dict[str, int] = {}
    time_col = None
    for j, h in enumerate(c.strip() for c in rows[0]):
        key = h.lower()
        if key == "timecode":
            time_col = j
        elif key in _LOOKUP:
            if _LOOKUP[key] in shape_cols:
                raise TakeInvalid(f"the CSV names {_LOOKUP[key]} twice")
            shape_cols[_LOOKUP[key]] = j
        elif key in _ROTATION_LOOKUP:
            rot_cols[_ROTATION_LOOKUP[key]] = j
    if not shape_cols:
        raise TakeInvalid("the CSV has no ARKit blendshape columns (its header must name shapes like EyeBlinkLeft)")
    body = rows[1:]

    def column(j: int, i: int, r: list[str]) -> float:
        return _number(r[j], i + 2) if j < len(r) else 0.0

    shapes = {n: [column(j, i, r) for i, r in enumerate(body)] for n, j in shape_cols.items()}
    rotations = {n: [column(j, i, r) for i, r in enumerate(body)] for n, j in rot_cols.items()}
    if not all(math.isfinite(v) for vs in shapes.values() for v in vs):
        raise TakeInvalid("the CSV holds non-finite weights")
    if not all(math.isfinite(v) for vs in rotations.values() for v in vs):
        raise TakeInvalid("the CSV holds non-finite head or eye rotations")
    times, rate = None, float(fps or 60.0)
    if time_col is not None:
        times, rate = timecodes_to_seconds([r[time_col] if time_col < len(r) else "" for r in body], fps)
    timed_by = "timecode" if times is not None else "index"
    if times is None:
        times = [i / rate for i in range(len(body))]
    return Take(
        tuple(times),
        {n: tuple(min(1.0, max(0.0, v)) for v in vs) for n, vs in shapes.items()},
        {n: tuple(vs) for n, vs in rotations.items()},
        rate,
        timed_by,
    )


def _qmul(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float, float]:
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return (
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    )


def _axis_angle(axis: tuple[float, float, float], angle: float) -> tuple[float, float, float, float]:
    s = math.sin(0.5 * angle)
    return (math.cos(0.5 * angle), axis[0] * s, axis[1] * s, axis[2] * s)


def rotation_quaternion(yaw: float, pitch: float, roll: float) -> tuple[float, float, float, float]:
    """Live Link yaw / pitch / roll (radians) of the head or an eye as a quaternion (w, x, y, z) in Blender axes
    (the avatar's armature space: X the subject's left, -Y the way the face looks, Z up).

    The convention chosen (not yet checked against a recorded phone take): right-handed rotations about the
    ARKit face frame's axes, which are glTF's and the engine's (X the subject's left, Y up, Z out of the face),
    composed yaw · pitch · roll -- in Blender axes yaw about +Z, pitch about +X, roll about -Y. So positive yaw
    turns the face toward the subject's left, positive pitch tips it down (chin toward the chest), positive roll
    raises the subject's left ear."""
    q = _axis_angle((0.0, 0.0, 1.0), yaw)
    q = _qmul(q, _axis_angle((1.0, 0.0, 0.0), pitch))
    return _qmul(q, _axis_angle((0.0, -1.0, 0.0), roll))
