"""The bundle's GLB passes the Khronos glTF validator (npm gltf-validator, installed by `make` into .venv/node)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a real server process / build (make quick skips it)

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / ".venv" / "node" / "node_modules"


def test_glb_has_no_validator_errors(draft_bundle):
    if shutil.which("node") is None or not (NODE_MODULES / "gltf-validator").is_dir():
        pytest.skip("node or the gltf-validator npm package is not installed (make installs it when npm exists)")
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    p = subprocess.run(
        ["node", str(REPO / "tests" / "gltf_validate.js"), str(draft_bundle / "head.glb")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    issues = report["issues"]
    assert issues["numErrors"] == 0, json.dumps(issues["messages"][:10], indent=1)
    assert report["info"]["totalTriangleCount"] > 1000
