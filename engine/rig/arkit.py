"""The 52 ARKit face blendshape names, their three spellings in the wild, and weight parsing.

Spellings (all accepted case-insensitively): ``eyeBlinkLeft`` (Apple's constant, the usual shape-key name),
``EyeBlinkLeft`` (Live Link Face CSV), ``eyeBlink_L`` (raw ARKit strings, ICT FaceKit). "Left"/"Right" are the
subject's own left and right; in the engine's world frame the subject's left is +X."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from engine.errors import InputError

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel",
    "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft",
    "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip
N_SHAPES = len(ARKIT_NAMES)
INDEX = {n: i for i, n in enumerate(ARKIT_NAMES)}


def _suffix_form(name: str) -> str:
    """``eyeBlinkLeft`` -> ``eyeBlink_L``; names without a side are unchanged."""
    for side, short in (("Left", "_L"), ("Right", "_R")):
        if name.endswith(side):
            return name[: -len(side)] + short
    return name


_LOOKUP: dict[str, str] = {}
for _n in ARKIT_NAMES:
    for _form in (_n, _n[0].upper() + _n[1:], _suffix_form(_n)):
        _LOOKUP[_form.lower()] = _n


def canonical_name(name: str) -> str:
    """The Apple spelling of any accepted spelling; :class:`InputError` for an unknown name."""
    key = str(name).strip().lower()
    if key in _LOOKUP:
        return _LOOKUP[key]
    raise InputError(
        f"unknown ARKit blendshape {name!r}",
        "use one of the 52 ARKit names, e.g. jawOpen, eyeBlinkLeft (also EyeBlinkLeft or eyeBlink_L)",
    )


def is_arkit_name(name: str) -> bool:
    return str(name).strip().lower() in _LOOKUP


def livelink_name(name: str) -> str:
    """Live Link Face's CSV spelling: ``EyeBlinkLeft``."""
    n = canonical_name(name)
    return n[0].upper() + n[1:]


def suffix_name(name: str) -> str:
    """The raw ARKit / ICT FaceKit spelling: ``eyeBlink_L``."""
    return _suffix_form(canonical_name(name))


def mirror_name(name: str) -> str:
    """The shape of the other side (``eyeBlinkLeft`` <-> ``eyeBlinkRight``); unsided names map to themselves.
    ``jawLeft``/``mouthLeft`` pair with ``jawRight``/``mouthRight`` the same way."""
    n = canonical_name(name)
    if n.endswith("Left"):
        return n[:-4] + "Right"
    if n.endswith("Right"):
        return n[:-5] + "Left"
    return n


def check_weight(name: str, value) -> float:
    """A weight as float in [0, 1]; :class:`InputError` otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"weight of {name} must be a number, not {value!r}") from None
    if not np.isfinite(v) or v < 0.0 or v > 1.0:
        raise InputError(f"weight of {name} must be between 0 and 1, not {value!r}", "ARKit weights are 0..1")
    return v


def parse_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """Validate a ``{name: weight}`` mapping (any spelling) into Apple spellings; duplicates are an error."""
    out: dict[str, float] = {}
    for raw, value in (weights or {}).items():
        n = canonical_name(raw)
        if n in out:
            raise InputError(f"{raw!r} is given twice (as {n})")
        out[n] = check_weight(n, value)
    return out


def parse_assignments(items: Iterable[str]) -> dict[str, float]:
    """``["jawOpen=0.8", "eyeBlink_L=1"]`` -> ``{"jawOpen": 0.8, "eyeBlinkLeft": 1.0}``."""
    pairs: dict[str, float] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"expression {item!r} is not NAME=WEIGHT", "e.g. --expression jawOpen=0.8 eyeBlinkLeft=1")
        k, v = item.split("=", 1)
        n = canonical_name(k)
        if n in pairs:
            raise InputError(f"{k!r} is given twice (as {n})")
        pairs[n] = check_weight(n, v.strip())
    return pairs


def to_vector(weights: Mapping[str, float] | None) -> np.ndarray:
    """(52,) float64 in ARKit order; names not given are 0."""
    w = np.zeros(N_SHAPES)
    for n, v in parse_weights(weights).items():
        w[INDEX[n]] = v
    return w


def to_dict(vector: np.ndarray, skip_zero: bool = False) -> dict[str, float]:
    v = np.asarray(vector, dtype=np.float64).reshape(N_SHAPES)
    return {n: float(x) for n, x in zip(ARKIT_NAMES, v, strict=True) if not (skip_zero and x == 0.0)}
