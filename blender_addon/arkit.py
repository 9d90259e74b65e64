"""ARKit's 52 face blendshape names, and the one spelling the add-on gives shape keys. Pure Python, no bpy.

Three spellings exist in the wild -- ``eyeBlinkLeft`` (Apple's constant, what animators expect on shape keys),
``EyeBlinkLeft`` (Live Link Face CSV) and ``eyeBlink_L`` (raw ARKit strings, ICT FaceKit); all are accepted,
case-insensitively, and become Apple's spelling. Other names are kept as they are.
"""

from __future__ import annotations

ARKIT_52 = (
    "eyeBlinkLeft eyeLookDownLeft eyeLookInLeft eyeLookOutLeft eyeLookUpLeft eyeSquintLeft eyeWideLeft "
    "eyeBlinkRight eyeLookDownRight eyeLookInRight eyeLookOutRight eyeLookUpRight eyeSquintRight eyeWideRight "
    "jawForward jawLeft jawRight jawOpen "
    "mouthClose mouthFunnel mouthPucker mouthLeft mouthRight mouthSmileLeft mouthSmileRight mouthFrownLeft "
    "mouthFrownRight mouthDimpleLeft mouthDimpleRight mouthStretchLeft mouthStretchRight mouthRollLower "
    "mouthRollUpper mouthShrugLower mouthShrugUpper mouthPressLeft mouthPressRight mouthLowerDownLeft "
    "mouthLowerDownRight mouthUpperUpLeft mouthUpperUpRight "
    "browDownLeft browDownRight browInnerUp browOuterUpLeft browOuterUpRight "
    "cheekPuff cheekSquintLeft cheekSquintRight noseSneerLeft noseSneerRight tongueOut"
).split()

_LOOKUP = {n.lower(): n for n in ARKIT_52}


def canonical_name(name: str) -> str:
    """``EyeBlinkLeft`` / ``eyeBlink_L`` / ``eyeblinkleft`` -> ``eyeBlinkLeft``; unknown names unchanged."""
    key = name.strip().lower()
    if key.endswith("_l"):
        key = key[:-2] + "left"
    elif key.endswith("_r"):
        key = key[:-2] + "right"
    return _LOOKUP.get(key.replace("_", ""), name)
