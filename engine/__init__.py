"""Likeness engine: one portrait photo -> radiance-field head, mesh, textures and an avatar bundle."""

import os as _os

# OpenMP threads that spin while waiting turn a busy machine (a build beside on-request renders, a render farm
# node, Blender) into a crawl: measured 20x slower renders under load. Passive waiting costs little when idle.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
BUNDLE_FORMAT = "likeness-avatar"
BUNDLE_FORMAT_VERSION = 1
