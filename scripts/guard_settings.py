"""The CI fidelity guard's own measurement (tests/test_fidelity_guard.py: the template-a head, eight Workbench
views round it, draft) for several build settings in one run, one line of JSON-ish numbers per setting.

    python scripts/guard_settings.py 'pi={"method":"proxy-init"}' 'hp={}' \
        'pi_old={"method":"proxy-init","method_options":{"keep_hidden":0}}' --work /tmp/guard

Each argument is NAME=JSON (build overrides, as eval_fidelity's --set but as JSON, method_options included). The
ground truth is rendered once into --work and reused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("settings", nargs="+", help="NAME=JSON build overrides")
    p.add_argument("--work", default="out/guard", help="folder for the ground truth and the bundles")
    a = p.parse_args(argv)
    from eval_fidelity import build
    from harness.evaluate import evaluate
    from harness.groundtruth import load_dataset
    from test_fidelity_guard import _groundtruth, guard_numbers

    from engine.avatar import load_avatar, load_landmarks_world

    root = Path(a.work)
    gt = root / "gt"
    if not (gt / "cameras.json").exists():
        _groundtruth(gt)
    ds = load_dataset(gt)
    for item in a.settings:
        name, _, js = item.partition("=")
        extra = json.loads(js or "{}")
        b = root / name
        shutil.rmtree(b, ignore_errors=True)
        overrides = {"turntable_frames": 2, "turntable_size": 64, "texture_size": 256, **extra}
        build(ds.photo_path(), ds.meta["focal_35mm"], "draft", "cpu", b, overrides)
        av = load_avatar(b)
        r, _ = evaluate(av, load_landmarks_world(av), ds, "camera", log=lambda *_: None)
        got = {k: round(v, 4) for k, v in guard_numbers(r).items()}
        print(json.dumps({"setting": name, "overrides": extra, **got}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
