"""The project's template face: 17 mediapipe landmarks at average adult positions, authored for Likeness from
published anthropometric averages (no third-party face model ships with us).

Frame: the world/canonical frame of :mod:`engine.conventions` -- metres, origin between the ears, +Y up, the
face looks toward +Z, +X is the subject's left. Symmetric about x = 0 by construction."""

from __future__ import annotations

import numpy as np

# mediapipe index: (x, y, z) in metres
TEMPLATE_POINTS: dict[int, tuple[float, float, float]] = {
    1: (0.0, -0.030, 0.112),  # nose tip
    168: (0.0, 0.022, 0.095),  # nasion (between the eyes)
    10: (0.0, 0.085, 0.090),  # top of the forehead
    152: (0.0, -0.105, 0.085),  # chin
    0: (0.0, -0.048, 0.100),  # upper lip centre
    17: (0.0, -0.070, 0.094),  # lower lip / chin crease
    33: (-0.045, 0.012, 0.072),  # right eye, outer corner
    133: (-0.016, 0.012, 0.083),  # right eye, inner corner
    263: (0.045, 0.012, 0.072),  # left eye, outer corner
    362: (0.016, 0.012, 0.083),  # left eye, inner corner
    61: (-0.025, -0.058, 0.085),  # mouth, right corner
    291: (0.025, -0.058, 0.085),  # mouth, left corner
    234: (-0.070, 0.005, 0.025),  # face edge at the right ear
    454: (0.070, 0.005, 0.025),  # face edge at the left ear
    105: (-0.035, 0.040, 0.090),  # right brow
    334: (0.035, 0.040, 0.090),  # left brow
    4: (0.0, -0.020, 0.110),  # nose, above the tip
}

TEMPLATE_INDICES = np.array(list(TEMPLATE_POINTS), dtype=np.int64)
TEMPLATE_XYZ = np.array(list(TEMPLATE_POINTS.values()), dtype=np.float64)

# Named landmark indices used elsewhere (mediapipe topology).
NOSE_TIP, CHIN, FOREHEAD = 1, 152, 10
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
FACE_EDGE_RIGHT, FACE_EDGE_LEFT = 234, 454

# Head depth behind the template origin and radius used by the proxy, metres.
HEAD_HALF_DEPTH = 0.100
NECK_RADIUS = 0.060
