"""Write engine/asset/typical_fit.json: the landmark fit's (engine/prior/fit.py) shape coefficients averaged over
the bundles given, the head the asset's shared UV layout is re-unwrapped on (engine/asset/uvpack.py,
docs/ASSET.md "The UV layout"). Run it again, with the same bundles, after the prior or the fit changes.

    python scripts/typical_fit.py BUNDLE [BUNDLE ...] [-o engine/asset/typical_fit.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.io.bundle import read_landmarks_world, read_manifest  # noqa: E402
from engine.prior import load_prior  # noqa: E402
from engine.prior.fit import fit_to_landmarks  # noqa: E402

DECIMALS = 4
"""Coefficients are written to this many decimals; those that round to 0 are left out."""


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("-o", "--out", type=Path, default=REPO / "engine" / "asset" / "typical_fit.json")
    args = ap.parse_args(argv)
    prior = load_prior()
    coeffs, subjects = [], []
    for b in args.bundles:
        manifest = read_manifest(b)
        coeffs.append(fit_to_landmarks(prior, read_landmarks_world(b, manifest)).coeffs)
        subjects.append({"photo": manifest["input"]["name"], "sha256": manifest["input"]["sha256"]})
    mean = np.round(np.mean(coeffs, 0), DECIMALS)
    out = {
        "format": "likeness-typical-fit",
        "format_version": 1,
        "what": "mean shape coefficients of engine.prior.fit.fit_to_landmarks over the subjects' landmarks",
        "command": "python scripts/typical_fit.py " + " ".join(str(b) for b in args.bundles),
        "anny_version": prior.anny_version,
        "subjects": subjects,
        "coefficients": {n: float(c) for n, c in zip(prior.shape_names, mean, strict=True) if c != 0.0},
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{args.out}: {len(out['coefficients'])} coefficients, mean of {len(coeffs)} fits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
