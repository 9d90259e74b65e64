"""Shared fixtures: the demo photo, one draft bundle built once per session, ../shared paths."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LIKENESS_SHARED", REPO.parent / "shared"))


def pytest_collection_modifyitems(config, items):
    import torch

    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def astronaut_png(astronaut_rgb) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(astronaut_rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def tiny_config():
    """A BuildConfig that runs every stage in seconds (the draft preset with engine.config.TINY_OVERRIDES);
    pass overrides as keyword arguments."""
    from engine.config import TINY_OVERRIDES, preset

    return lambda **kw: preset("draft", **{"device": "cpu", **TINY_OVERRIDES, **kw})


@pytest.fixture(scope="session")
def draft_bundle(tmp_path_factory) -> Path:
    """The demo portrait built once at the draft preset (about 40 s on two cores)."""
    from engine.config import preset
    from engine.io.images import demo_photo
    from engine.pipeline import build_avatar

    out = tmp_path_factory.mktemp("bundles") / "astronaut"
    build_avatar(demo_photo(), preset("draft", device="cpu"), out, source_name="astronaut.png")
    return out


@pytest.fixture(scope="session")
def bundle_dir(request) -> Path:
    """The draft demo bundle (``draft_bundle``), or $LIKENESS_TEST_BUNDLE to reuse one already built."""
    env = os.environ.get("LIKENESS_TEST_BUNDLE")
    return Path(env) if env else request.getfixturevalue("draft_bundle")


@pytest.fixture(scope="session")
def shared_portraits() -> Path:
    p = SHARED / "portraits"
    if not p.is_dir():
        pytest.skip("../shared/portraits is absent")
    return p
