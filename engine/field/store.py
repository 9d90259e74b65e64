"""A field on disk: safetensors with a format and version in its metadata (written here, checked on load by
engine.avatar.load_field, which refuses another format or version with one line)."""

from __future__ import annotations

from pathlib import Path

FIELD_FORMAT = "likeness-field"
FIELD_VERSION = "1"


def save_field(field, path: Path) -> None:
    """The field's state (every parameter and buffer, on the CPU) as safetensors at ``path``."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in field.state_dict().items()}
    save_file(state, str(path), metadata={"format": FIELD_FORMAT, "version": FIELD_VERSION})
