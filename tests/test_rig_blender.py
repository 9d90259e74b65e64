"""The bundle's head.glb in Blender's own glTF importer: 52 ordinary shape keys with the ARKit names, their values
the photo's expression, and moving the jawOpen key moves the chin down (Blender's -Z).

Blender runs in a child process: importing ``bpy`` into the test process slows torch's CPU kernels several fold
(its bundled threading runtime), and the session's bundle may not be built yet."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.blender, pytest.mark.slow]

SCRIPT = r"""
import json, sys
import numpy as np
import bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[1])
head = next(o for o in bpy.data.objects if o.type == "MESH")
blocks = head.data.shape_keys.key_blocks
n = len(head.data.vertices)
basis, jaw = np.zeros(3 * n), np.zeros(3 * n)
blocks["Basis"].data.foreach_get("co", basis)
blocks["jawOpen"].data.foreach_get("co", jaw)
d = (jaw - basis).reshape(n, 3)
print(json.dumps({"names": [k.name for k in blocks], "values": {k.name: k.value for k in blocks},
                  "jaw_z_min": float(d[:, 2].min()), "jaw_z_max": float(d[:, 2].max())}))
"""


@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs the bpy module (pip install bpy==5.0.1)")
def test_glb_imports_as_arkit_shape_keys(draft_bundle):
    from engine.rig.arkit import ARKIT_NAMES

    p = subprocess.run([sys.executable, "-c", SCRIPT, str(draft_bundle / "head.glb")], capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["names"] == ["Basis", *ARKIT_NAMES]
    photo = json.loads((draft_bundle / "expression.json").read_text())["photo_weights"]
    assert all(abs(got["values"][n] - photo[n]) < 1e-4 for n in ARKIT_NAMES)
    assert got["jaw_z_min"] < -0.02 and got["jaw_z_max"] < 0.005  # Blender is Z up: the chin drops
