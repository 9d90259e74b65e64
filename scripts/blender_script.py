"""What the scripts that run inside a Blender Python (turntable.py, asset_export.py) share: their arguments and
their exit. Standard library only: Blender's own Python has neither the engine nor numpy's extras."""

from __future__ import annotations

import sys
from collections.abc import Callable


def script_argv(argv: list[str], script: str) -> list[str]:
    """Arguments after ``--`` (``blender -b -P SCRIPT -- ...``), else after the script (``python SCRIPT ...``)."""
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    for i, a in enumerate(argv):
        if a.endswith(script):
            return argv[i + 1 :]
    return []


def run(main: Callable[[list[str]], int], script: str) -> None:
    """``main(its arguments)`` as the script's entry point: a RuntimeError, ValueError or OSError is one line on
    stderr and exit code 1; a non-zero return exits with that code (``blender -b -P`` exits with it too)."""
    try:
        code = main(script_argv(sys.argv, script))
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"{script}: error: {str(exc).strip().removeprefix('Error: ')}", file=sys.stderr)
        code = 1
    if code:
        sys.exit(code)
