"""``likeness batch SOURCE -o OUT``: the sub-command's arguments (:func:`add_parser`) and its entry (:func:`run`).
engine/cli.py adds it to the ``likeness`` parser; docs/BATCH.md is its page."""

from __future__ import annotations

import argparse
import sys

from engine.batch.plan import Outputs, parse_sets
from engine.batch.source import BatchError

EXPORTS = ("glb", "obj", "fbx")
TURNTABLES = ("neural", "blender", "none")


def _positive(kind, name: str, lo: float):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value >= lo or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be at least {lo:g}, not {text}")
        return value

    parse.__name__ = name
    return parse


def _exports(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in EXPORTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(EXPORTS)} (comma-separated)")
    return names


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``batch`` sub-command on ``subparsers`` (the ``likeness`` parser's)."""
    from engine.config import DEVICES, QUALITIES

    b = subparsers.add_parser(
        "batch",
        help="build many photos: a folder, a glob or a CSV/JSON list, resumable (docs/BATCH.md)",
        description="One avatar bundle per photo in OUT/<id>, with OUT/report.json and OUT/report.html. "
        "Exit code 0 all succeeded, 1 some failed, 2 bad invocation, 3 all failed.",
    )
    b.add_argument("source", help="a folder of photos, a glob ('shoot/*.jpg'), or a .csv / .json list")
    b.add_argument("-o", "--output", required=True, help="output folder: OUT/<id>/ per head, reports at the top")
    b.add_argument("-r", "--recursive", action="store_true", help="also photos in sub-folders of a folder SOURCE")
    b.add_argument("--quality", default="standard", choices=QUALITIES)
    b.add_argument("--device", default="auto", choices=DEVICES)
    b.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        dest="sets",
        help="override one build setting for every item (repeatable), e.g. --set iterations=100",
    )
    b.add_argument(
        "--turntable",
        default="neural",
        choices=TURNTABLES,
        help="neural: the bundle's own; blender: also frames + MP4 + .blend rendered by Blender; none",
    )
    b.add_argument("--blender-renderer", default="workbench", choices=("workbench", "cycles"))
    b.add_argument("--exports", type=_exports, default=("glb", "obj"), help="glb,obj (in the bundle), fbx (Blender)")
    b.add_argument("--jobs", type=_positive(int, "jobs", 1), default=1, help="items at once (local pool)")
    b.add_argument(
        "--timeout", type=_positive(float, "timeout", 1), default=7200.0, help="seconds per item attempt (7200)"
    )
    b.add_argument(
        "--max-retries", type=_positive(int, "max_retries", 0), default=1, help="retries of a timed-out or crashed item"
    )
    b.add_argument("--resume", action="store_true", help="keep the failures of an earlier run of this batch")
    b.add_argument("--retry-failed", action="store_true", help="with --resume: try earlier failures again")
    b.add_argument("--dry-run", action="store_true", help="print what would run and why; build nothing")
    b.add_argument("--progress", default="bar", choices=("bar", "jsonl", "none"), help="jsonl: events on stdout")
    b.add_argument(
        "--ray", nargs="?", const="auto", metavar="ADDRESS", help="run the items on a Ray cluster (auto or HOST:PORT)"
    )
    b.add_argument("--ray-cpus", type=_positive(float, "ray_cpus", 0.01), default=1.0, help="CPUs per item on Ray")
    b.add_argument(
        "--ray-gpus", type=_positive(float, "ray_gpus", 0), help="GPUs per item (default 1 if the cluster has any)"
    )
    b.add_argument(
        "--ray-retries",
        type=_positive(int, "ray_retries", 0),
        default=3,
        help="Ray's reruns of an item whose worker was lost",
    )
    b.set_defaults(func=run)
    return b


def run(args) -> int:
    """Run the batch of parsed ``args``; a bad invocation raises BatchError (exit code 2 at the CLI's edge)."""
    from engine.batch.driver import BatchOptions, run_batch

    if args.retry_failed:
        args.resume = True
    if getattr(args, "quiet", False) and args.progress == "bar":
        args.progress = "none"
    if args.jobs > 1 and args.ray:
        raise BatchError("--jobs is for the local pool; with --ray, Ray schedules the items", "drop --jobs")
    opts = BatchOptions(
        source=args.source,
        output=args.output,
        recursive=args.recursive,
        quality=args.quality,
        device=args.device,
        sets=parse_sets(args.sets),
        outputs=Outputs(args.turntable, tuple(args.exports), args.blender_renderer),
        jobs=args.jobs,
        timeout_s=args.timeout,
        max_retries=args.max_retries,
        resume=args.resume,
        retry_failed=args.retry_failed,
        dry_run=args.dry_run,
        progress=args.progress,
        ray=args.ray,
        ray_cpus=args.ray_cpus,
        ray_gpus=args.ray_gpus,
        ray_retries=args.ray_retries,
        command=["likeness", *sys.argv[1:]] if sys.argv and sys.argv[0] else [],
    )
    return run_batch(opts)
