"""Where the fitted outline sits against the photo's matte, for several alpha targets (engine.fit.losses.alpha_target).

    python scripts/outline.py ../shared/portraits/singnet_woman_portrait.jpg --steepen 1 3 6

For each steepening factor of the alpha target (1 = the soft selfie matte as it is; the engine uses
``ProxyInitConfig.matte_steepen``, engine.fit.proxy_init) the photo is fitted with the engine's own steps at the
chosen preset and the input view is rendered. Prints one JSON line per factor: pixels inside the matte's 0.5
contour the render misses (alpha <= 0.5) and pixels outside it the render covers, the mean inward offset of the
outline in pixels ((missing - extra) / contour length; the photo's own frame edge excluded) and the input-view
PSNR/SSIM exactly as a build scores it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import preset  # noqa: E402
from engine.face.analysis import analyse  # noqa: E402
from engine.fit.proxy_init import ProxyInitConfig, ProxyInitFit  # noqa: E402
from engine.fit.setup import enable_photo_term, prepare_fit  # noqa: E402
from engine.io.images import load_photo  # noqa: E402
from engine.metrics import input_view_scores  # noqa: E402
from engine.render.renderer import RenderOptions, render_image  # noqa: E402


def outline_offset(alpha: np.ndarray, matte: np.ndarray, in_photo: np.ndarray | None) -> dict:
    """Missing / extra pixels against the matte's 0.5 contour and the mean inward offset (pixels)."""
    inside = matte > 0.5
    ok = ndi.binary_erosion(in_photo, iterations=3, border_value=1) if in_photo is not None else np.ones_like(inside)
    contour = inside & ~ndi.binary_erosion(inside) & ok
    missing = int((inside & (alpha <= 0.5) & ok).sum())
    extra = int((~inside & (alpha > 0.5) & ok).sum())
    return {
        "missing_px": missing,
        "extra_px": extra,
        "contour_px": int(contour.sum()),
        "inward_offset_px": round((missing - extra) / max(1, int(contour.sum())), 2),
    }


def run(photo_path: str, steepen: float, quality: str) -> dict:
    cfg = preset(quality)
    torch.manual_seed(cfg.seed)
    an = analyse(load_photo(photo_path), cfg)
    data, field, extra, _ = prepare_fit(an, cfg, torch.device("cpu"))
    t0 = time.perf_counter()
    method = ProxyInitFit(cfg, ProxyInitConfig(matte_steepen=steepen))
    method.fit(method.init(field, data))
    fit_s = time.perf_counter() - t0
    c2w, scale = an.pose.cam2world_gl(), an.pose.to_canonical.scale
    geo = enable_photo_term(field, an, extra, cfg)  # its own render from the photo camera, learned colour only
    inp = render_image(field, c2w, an.work_intr, RenderOptions(cfg.n_coarse, cfg.n_fine), scale)
    scores = input_view_scores(inp, an.crop_rgb, an.matte, an.in_photo)
    return {
        "photo": Path(photo_path).name,
        "quality": quality,
        "steepen": steepen,
        **outline_offset(geo["alpha"], an.matte, an.in_photo),
        "input_psnr_db": round(scores["psnr_db"], 2),
        "input_ssim": round(scores["ssim"], 4),
        "fit_s": round(fit_s, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", nargs="+")
    ap.add_argument("--steepen", type=float, nargs="+", default=[1.0, ProxyInitConfig().matte_steepen])
    ap.add_argument("--quality", default="standard")
    args = ap.parse_args()
    for p in args.photos:
        for k in args.steepen:
            print(json.dumps(run(p, k, args.quality)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
