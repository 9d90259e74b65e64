"""``likeness batch``: a folder, a glob or a CSV/JSON list of photos -> one avatar bundle per photo, resumable and
idempotent, on a local process pool or a Ray cluster, with a JSON + HTML report (docs/BATCH.md).

source.py   the items (photo, id, per-item options) of a folder, glob or list
plan.py     build / skip / finish / carry decisions, each with its reason; the batch's journal
item.py     the one process that builds one item (``python -m engine.batch.item``), and its fault injection
runner.py   one item's process with timeout and retries; the local pool
run_ray.py  the same items as Ray tasks (optional ``ray`` extra)
report.py   report.json and report.html
cli.py      the ``batch`` sub-command: add_parser(subparsers), run(args)

Sits above the pipeline, beside the server: nothing below imports it.
"""
