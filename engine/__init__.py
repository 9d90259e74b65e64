"""Likeness engine: one portrait photo -> radiance-field head, mesh, textures and an avatar bundle."""

__version__ = "0.1.0"
BUNDLE_FORMAT = "likeness-avatar"
BUNDLE_FORMAT_VERSION = 1
