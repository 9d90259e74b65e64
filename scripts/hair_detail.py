"""What the fit keeps of the unseen hair's texture (docs/FIDELITY.md, "Hair texture behind the ear plane").

    python scripts/hair_detail.py                                   # the demo photo, draft
    python scripts/hair_detail.py ../shared/portraits/X.jpg --json out/h2/detail.json --texture out/h2/texture.png

Runs the head-prior method's init and photo fit twice on one photo, ``hair_texture`` off and on, same seed. At the
unseen hair points behind the seam (3 cm behind the ear plane, above the hair's taper) the difference of the two
runs' colour targets is the texture's detail; the difference of the field's learned colour after the init and
after the fit is what of it the field holds. Prints the detail's RGB standard deviation, its correlation with the
targets' detail and the mean colours, as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.config import QUALITIES, preset
from engine.face.analysis import analyse
from engine.fit import make_method
from engine.fit.setup import prepare_fit
from engine.io.images import demo_photo, load_photo


def _run(photo, quality: str, on: bool) -> tuple[dict, object]:
    torch.manual_seed(0)
    cfg = preset(quality, device="cpu", method="head-prior", method_options={"hair_texture": int(on)})
    data, field, _, _ = prepare_fit(analyse(photo, cfg), cfg, torch.device("cpu"))
    method = make_method(cfg)
    method.check(field, data)
    state = method.init(field, data)
    pts, target = state.colour_prior
    local = method._local(pts.numpy().astype(np.float64))
    o = method.options
    sel = torch.from_numpy((local[:, 2] < -o.seam_m) & (local[:, 1] >= o.nape_m + o.hair_taper_m))
    with torch.no_grad():
        after_init = field.learned_colour(pts[sel]).numpy()
    method.fit(state)
    with torch.no_grad():
        after_fit = field.learned_colour(pts[sel]).numpy()
    return {"target": target[sel].numpy(), "init": after_init, "fit": after_fit}, method


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photo", nargs="?", help="portrait (default: the demo photo)")
    ap.add_argument("--quality", choices=QUALITIES, default="draft")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--texture", type=Path, help="write the synthesised texture here (PNG)")
    args = ap.parse_args(argv)
    photo = load_photo(args.photo) if args.photo else demo_photo()
    off, _ = _run(photo, args.quality, False)
    on, method = _run(photo, args.quality, True)
    if method._hair_tex is None:
        print("no hair texture for this photo (bald, no prior, or too little visible hair)")
        return 1
    if args.texture:
        Image.fromarray((method._hair_tex.rgb * 255).round().astype(np.uint8)).save(args.texture)
    detail = on["target"] - off["target"]
    out = {"points": len(detail), "target": {"detail_std": float(detail.std())}}
    out["target"]["mean_rgb_off_on"] = [off["target"].mean(0).round(4).tolist(), on["target"].mean(0).round(4).tolist()]
    for k in ("init", "fit"):
        d = on[k] - off[k]
        out[k] = {
            "detail_std": float(d.std()),
            "corr_with_target_detail": float(np.corrcoef(detail.ravel(), d.ravel())[0, 1]),
            "mean_rgb_off_on": [off[k].mean(0).round(4).tolist(), on[k].mean(0).round(4).tolist()],
        }
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
