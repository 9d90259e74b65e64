"""Cameras to rays, samplers, compositing and the one chunking renderer."""
