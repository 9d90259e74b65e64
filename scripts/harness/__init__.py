"""Shared helpers of the fidelity and speed harness (scripts/make_groundtruth.py, eval_fidelity.py, ablate.py,
bench.py). Scripts put their own folder on ``sys.path`` and ``import harness``; nothing here is imported by the
engine."""
