"""GPU tier: runs only where CUDA exists (skipped cleanly on CPU machines and in CI)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu


def test_draft_build_on_cuda(tmp_path):
    import torch

    from engine.avatar import load_avatar
    from engine.config import preset
    from engine.io.images import demo_photo
    from engine.pipeline import build_avatar

    m = build_avatar(demo_photo(), preset("draft", device="cuda"), tmp_path / "b")
    assert m["field"]["device"].startswith("cuda")
    assert m["metrics"]["input_psnr_db"] >= 30.0 and m["metrics"]["mesh_matte_iou"] >= 0.95
    av = load_avatar(tmp_path / "b", device="cuda")
    cam, intr = av.orbit(30.0, 0.0, 256)
    out = av.render(cam, intr)
    assert (out["alpha"] > 0.5).mean() > 0.1
    assert torch.cuda.max_memory_allocated() > 0
