"""``python -m engine`` is the same as the ``likeness`` console script."""

from engine.cli import main

raise SystemExit(main())
