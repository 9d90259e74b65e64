"""Turntable defect score (issue 13): radial fans, vertical streaks, flat walls and front colours smeared to the
back, as simple image statistics on one orbit's frames (scripts/harness/defects.py documents each one).

    python scripts/turntable_defects.py out/demo                    # a bundle's turntable_frames
    python scripts/turntable_defects.py out/gt/lps_tt out/gt/syn_tt  # ground truth (make_groundtruth --grid turntable)
    python scripts/turntable_defects.py out/me/turntable_custom      # `likeness turntable` output (frame_*.png)
    python scripts/turntable_defects.py out/demo --json out/defects.json

Prints one line per turntable (scores, thresholds, PASS/FLAG) and a Markdown table. Exit code 0 when every
turntable passes, 1 when any is flagged, 2 on a path that is not a turntable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import defects  # noqa: E402

ORDER = ("fan", "streaks", "walls", "smear")


def markdown(rows: list[tuple[str, dict]]) -> str:
    head = "| turntable | " + " | ".join(f"{k} (≤ {defects.THRESHOLDS[k]:.2f})" for k in ORDER) + " | verdict |"
    lines = [head, "| " + " | ".join(["---"] * (len(ORDER) + 2)) + " |"]
    for name, d in rows:
        cells = [f"{d['scores'][k]:.3f}" + ("" if d["passed"][k] else " **flag**") for k in ORDER]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'pass' if d['ok'] else 'FLAGGED'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("paths", nargs="+", help="bundle, ground-truth turntable or frame folder")
    p.add_argument("--json", help="write every report here")
    a = p.parse_args(argv)
    rows = []
    for path in a.paths:
        try:
            tt = defects.load_turntable(path)
        except (ValueError, OSError) as exc:
            print(f"{path}: {exc}")
            return 2
        d = defects.score_turntable(tt).to_dict()
        rows.append((path, d))
        s = ", ".join(f"{k} {d['scores'][k]:.3f}{'' if d['passed'][k] else ' FLAG'}" for k in ORDER)
        print(f"{path}: {'PASS' if d['ok'] else 'FLAGGED'} ({s}; {d['frames']} frames)", flush=True)
    print(markdown(rows))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({p: d for p, d in rows}, indent=1))
    return 0 if all(d["ok"] for _, d in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
