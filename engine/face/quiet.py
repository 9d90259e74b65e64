"""Silence mediapipe's C++ start-up chatter (TFLite/absl write straight to file descriptor 2)."""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager

warnings.filterwarnings("ignore", message=".*SymbolDatabase.GetPrototype.*")


@contextmanager
def quiet_native_stderr():
    """Redirect fd 2 to /dev/null for the duration; Python-level exceptions still propagate normally."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
