"""Import boundaries (HOUSE_STYLE): the add-on never imports engine/torch; its client never imports bpy; the
engine never imports bpy or the add-on; lower engine layers never import higher ones."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# engine sub-packages/modules by layer: a module may import only its own layer or lower ones.
LAYERS = {
    "engine.conventions": 0,
    "engine.errors": 0,
    "engine.config": 0,
    "engine.io": 1,
    "engine.face": 1,
    "engine.proxy": 1,
    "engine.metrics": 1,
    "engine.field": 2,
    "engine.render": 2,
    "engine.rig": 2,
    "engine.fit": 3,
    "engine.prior": 3,
    "engine.extract": 3,
    "engine.avatar": 4,
    "engine.asset": 4,
    "engine.pipeline": 4,
    "engine.server": 5,
    "engine.batch": 5,
    "engine.cli": 6,
    "engine.__main__": 6,
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _layer(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return best[1] if best else None


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def test_engine_never_imports_blender():
    for path in (REPO / "engine").rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("bpy", "blender_addon", "bmesh", "mathutils")}
        assert not bad, f"{path}: {bad}"


def test_addon_never_imports_engine_or_torch():
    root = REPO / "blender_addon"
    for path in root.rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("engine", "torch", "numpy_torch")}
        assert not bad, f"{path}: {bad}"
    for path in (root / "client").rglob("*.py") if (root / "client").is_dir() else []:
        bad = {m for m in _imports(path) if m.split(".")[0] in ("bpy", "bmesh", "mathutils")}
        assert not bad, f"{path}: {bad}"


def test_engine_layers_point_down():
    for path in (REPO / "engine").rglob("*.py"):
        me = _module_name(path)
        mine = _layer(me)
        if mine is None:
            continue
        for imp in _imports(path):
            theirs = _layer(imp)
            if theirs is not None and imp.split(".")[:2] != me.split(".")[:2]:
                assert theirs <= mine, f"{me} (layer {mine}) imports {imp} (layer {theirs})"
