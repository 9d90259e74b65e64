"""The artist asset: the head prior's template topology fitted to a bundle, its face snapped to the field, one
texture atlas on the template's UVs, separate skin / eye / teeth / tongue meshes with ARKit morph targets, the
photo's camera and a small armature, as one GLB (docs/ASSET.md). ``likeness asset BUNDLE``."""
