"""The prepared head prior for tests that need it (make's install step prepares it); a test skips, naming the
command, where it is not prepared."""

from __future__ import annotations

import pytest


def prepared_prior():
    from engine.prior import PriorMissing, load_prior

    try:
        return load_prior()
    except PriorMissing as exc:
        pytest.skip(f"the head prior is not prepared ({exc.message}): run likeness prepare-prior")
