"""Build the Blender add-on into an installable extension zip under dist/ and validate it.

    python scripts/build_addon.py [--output-dir dist] [--blender /path/to/blender]

Uses, in order: ``blender --command extension build`` when a Blender binary is found (``--blender`` or PATH);
else the same builder (``bl_pkg/cli/blender_ext.py``, stdlib only) shipped inside the ``bpy`` module; else a plain
zip with the same layout. The archive is then checked: Blender's own ``validate`` where available, and this
script's structural checks (manifest at the root, id and permissions, every module compiles, no ``engine`` or
``torch`` imports, no caches). Prints the zip's path; exits 1 with the problems otherwise.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import importlib.util
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "blender_addon"
REQUIRED = (
    "schema_version",
    "id",
    "version",
    "name",
    "tagline",
    "maintainer",
    "type",
    "blender_version_min",
    "license",
)
FORBIDDEN_IMPORTS = ("engine", "torch")


def read_manifest(source: Path = SOURCE) -> dict:
    return tomllib.loads((source / "blender_manifest.toml").read_text())


def bundled_builder() -> Path | None:
    """``blender_ext.py`` from the installed ``bpy`` module (the code behind ``blender --command extension``)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        found = sorted(Path(root).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1]
    return None


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"build_addon: {' '.join(cmd[:3])} ... failed:\n{r.stdout}{r.stderr}")


def _excluded(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    for pat in patterns:
        p = pat.strip("/")
        if pat.endswith("/") and p in parts[:-1]:
            return True
        if fnmatch.fnmatch(parts[-1], p) or fnmatch.fnmatch(rel, p):
            return True
    return False


def plain_zip(source: Path, out: Path, manifest: dict) -> None:
    patterns = list(manifest.get("build", {}).get("paths_exclude_pattern", ["__pycache__/", "*.pyc", ".*"]))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source).as_posix()
            if path.is_file() and not _excluded(rel, patterns):
                z.write(path, rel)


def build(output_dir: Path, blender: str | None = None) -> tuple[Path, str]:
    """Build the zip; returns (path, which builder was used)."""
    manifest = read_manifest()
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    out.unlink(missing_ok=True)
    blender = blender or shutil.which("blender")
    if blender:
        _run(
            [
                blender,
                "--factory-startup",
                "--command",
                "extension",
                "build",
                "--source-dir",
                str(SOURCE),
                "--output-filepath",
                str(out),
            ]
        )
        return out, "blender"
    builder = bundled_builder()
    if builder is not None:
        _run([sys.executable, str(builder), "build", "--source-dir", str(SOURCE), "--output-filepath", str(out)])
        return out, "bpy blender_ext.py"
    plain_zip(SOURCE, out, manifest)
    return out, "zipfile"


def _imports(source: str, filename: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def check_zip(path: Path) -> list[str]:
    """Structural problems of an extension zip (empty list = fine)."""
    problems = []
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        if "blender_manifest.toml" not in names:
            return ["blender_manifest.toml is not at the archive root"]
        m = tomllib.loads(z.read("blender_manifest.toml").decode("utf-8"))
        problems += [f"manifest lacks {k}" for k in REQUIRED if k not in m]
        if m.get("id") != "likeness" or m.get("type") != "add-on":
            problems.append("manifest id must be 'likeness' and type 'add-on'")
        perms = m.get("permissions", {})
        for perm in ("network", "files"):
            if not str(perms.get(perm, "")).strip():
                problems.append(f"permission {perm!r} needs a reason")
        if "__init__.py" not in names:
            problems.append("__init__.py is not at the archive root")
        for n in names:
            if "__pycache__" in n or n.endswith(".pyc") or "/." in f"/{n}":
                problems.append(f"stray file {n}")
            if n.endswith(".py"):
                src = z.read(n).decode("utf-8")
                try:
                    bad = _imports(src, n) & set(FORBIDDEN_IMPORTS)
                except SyntaxError as exc:
                    problems.append(f"{n} does not compile: {exc}")
                    continue
                if bad:
                    problems.append(f"{n} imports {', '.join(sorted(bad))} (Blender's Python has neither)")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", default=str(REPO / "dist"))
    p.add_argument("--blender", help="Blender binary (default: `blender` on PATH, else the bpy module's builder)")
    args = p.parse_args(argv)
    out, how = build(Path(args.output_dir), args.blender)
    problems = check_zip(out)
    builder = bundled_builder()
    if builder is not None:
        r = subprocess.run([sys.executable, str(builder), "validate", str(out)], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"Blender's validate: {(r.stdout + r.stderr).strip()}")
    if problems:
        print("build_addon: the extension zip has problems:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"{out} ({how}, {out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
