"""`-o` never destroys what a user had, and the output path always shows one complete bundle.

Real folders on disk and real processes: writers are killed with SIGKILL at random moments while a reader
watches the output path, with a pause injected around the swap (fault injection in the child only)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine import BUNDLE_FORMAT
from engine.errors import OutputRefused
from engine.io import swap
from engine.io.bundle import check_output, staged_bundle

REPO = Path(__file__).resolve().parents[1]


def write_bundle(stage: Path, generation: int, n_files: int = 6) -> None:
    """A small but real bundle: files first, the manifest (naming them all) last."""
    files = {}
    for i in range(n_files):
        (stage / f"f{i}.bin").write_bytes(os.urandom(2048))
        files[f"k{i}"] = f"f{i}.bin"
    manifest = {"format": BUNDLE_FORMAT, "format_version": 1, "generation": generation, "files": files}
    (stage / "manifest.json").write_text(json.dumps(manifest))


def complete_generation(dest: Path) -> int | None:
    """The bundle's generation if ``dest`` holds a complete bundle, else None."""
    try:
        manifest = json.loads((dest / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not all((dest / rel).is_file() for rel in manifest["files"].values()):
        return None
    return manifest["generation"]


def make_bundle(dest: Path, generation: int) -> None:
    with staged_bundle(dest) as stage:
        write_bundle(stage, generation)


def siblings(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name != dest.name)


# -- what may be replaced ------------------------------------------------------------------------------------


def user_folder(root: Path) -> Path:
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "notes.txt").write_text("my notes")
    (docs / "sub" / "data.bin").write_bytes(b"\x00\x01data")
    return docs


def test_a_folder_that_is_not_a_bundle_is_refused_and_kept(tmp_path):
    docs = user_folder(tmp_path)
    with pytest.raises(OutputRefused, match="not a Likeness avatar bundle"):
        make_bundle(docs, 1)
    assert (docs / "notes.txt").read_text() == "my notes" and (
        docs / "sub" / "data.bin"
    ).read_bytes() == b"\x00\x01data"
    assert siblings(docs) == [], "nothing was staged beside it"


def test_a_file_is_refused_and_kept(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    with pytest.raises(OutputRefused, match="is a file"):
        make_bundle(f, 1)
    assert f.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_a_parent_that_cannot_hold_folders_is_refused(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    with pytest.raises(OutputRefused, match="cannot write a bundle"):
        check_output(f / "out")
    assert f.read_text() == "keep me"


def test_a_bundle_a_fresh_path_and_an_empty_folder_are_written(tmp_path):
    make_bundle(tmp_path / "new" / "deep", 1)
    assert complete_generation(tmp_path / "new" / "deep") == 1
    (tmp_path / "empty").mkdir()
    make_bundle(tmp_path / "empty", 2)
    assert complete_generation(tmp_path / "empty") == 2
    make_bundle(tmp_path / "empty", 3)  # a bundle is replaced by the next one
    assert complete_generation(tmp_path / "empty") == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "new"], "no leftovers"


def test_a_failed_write_keeps_the_old_bundle(tmp_path):
    dest = tmp_path / "me"
    make_bundle(dest, 1)
    with pytest.raises(RuntimeError), staged_bundle(dest) as stage:
        write_bundle(stage, 2)
        raise RuntimeError("the build failed late")
    assert complete_generation(dest) == 1 and siblings(dest) == []


@pytest.mark.slow
def test_cli_build_refuses_a_user_folder_before_any_compute(tmp_path, astronaut_png):
    docs = user_folder(tmp_path)
    photo = tmp_path / "a.png"
    photo.write_bytes(astronaut_png)
    for out in (docs, tmp_path / "docs" / "notes.txt"):
        t0 = time.perf_counter()
        r = subprocess.run(
            [sys.executable, "-m", "engine", "-q", "build", str(photo), "-o", str(out), "--quality", "draft"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("likeness: error: ") and "refusing" in lines[0], r.stderr
        assert time.perf_counter() - t0 < 60, "refused before fitting"
    assert (docs / "notes.txt").read_text() == "my notes" and (docs / "sub" / "data.bin").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "docs"]


def test_the_addon_keeps_a_verbatim_copy_of_the_swap():
    addon = (REPO / "blender_addon" / "client" / "swap.py").read_text()
    assert addon == (REPO / "engine" / "io" / "swap.py").read_text(), "copy engine/io/swap.py to the add-on"


# -- kill -9 while swapping ------------------------------------------------------------------------------------

WRITER = """
import sys, time, json
sys.path.insert(0, {repo!r})
from pathlib import Path
from engine.io import swap
from engine.io.bundle import staged_bundle
from test_swap import write_bundle

pause = float(sys.argv[2])
if sys.argv[3] == "fallback":
    swap.exchange = lambda a, b: False  # as on a platform without renameat2
    real_replace = swap.os.replace
    def slow_replace(a, b):
        real_replace(a, b)
        if Path(b).name.startswith("."):  # the old bundle has just been moved aside
            print("aside", flush=True)
            time.sleep(pause)
    swap.os.replace = slow_replace
else:
    real_exchange = swap.exchange
    def slow_exchange(a, b):
        time.sleep(pause)
        done = real_exchange(a, b)
        time.sleep(pause)
        return done
    swap.exchange = slow_exchange
dest = Path(sys.argv[1])
gen = 100
while True:
    gen += 1
    with staged_bundle(dest) as stage:
        write_bundle(stage, gen)
"""


def start_writer(dest: Path, pause: float, mode: str) -> subprocess.Popen:
    code = WRITER.format(repo=str(REPO))
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'tests'}{os.pathsep}{REPO}")
    return subprocess.Popen(
        [sys.executable, "-c", code, str(dest), str(pause), mode], stdout=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.slow
def test_kill_9_during_the_swap_always_leaves_one_complete_bundle(tmp_path):
    dest = tmp_path / "me"
    make_bundle(dest, 1)
    rng = random.Random(16)
    seen: list[int | None] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(complete_generation(dest))

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        for trial in range(12):
            writer = start_writer(dest, 0.05, "exchange")
            time.sleep(rng.uniform(0.3, 1.5) if trial else 2.0)
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=30)
            assert complete_generation(dest) is not None, f"trial {trial}: no complete bundle after the kill"
            check_output(dest)  # the next run sweeps what the killed one left
            assert siblings(dest) == [], f"trial {trial}: leftovers {siblings(dest)}"
    finally:
        stop.set()
        reader.join(timeout=10)
    print(f"kill -9 during the swap: 12 trials, {len(seen)} looks at the output path, {seen.count(None)} incomplete")
    assert len(seen) > 100 and None not in seen, f"{seen.count(None)} of {len(seen)} looks found no complete bundle"
    assert len(set(seen)) > 3, "the writers did swap bundles in"


@pytest.mark.slow
def test_kill_9_between_the_fallbacks_two_renames_is_restored_by_the_next_run(tmp_path):
    dest = tmp_path / "me"
    make_bundle(dest, 1)
    writer = start_writer(dest, 30.0, "fallback")
    try:
        assert writer.stdout.readline().strip() == "aside"
        assert not dest.exists(), "the fallback leaves the path empty between its renames"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    kinds = [n.split(".")[2].split("-")[0] for n in siblings(dest)]
    assert kinds == ["old", "staging"], "killed with the old bundle aside and the new one staged"
    check_output(dest)
    assert complete_generation(dest) == 1 and siblings(dest) == [], "the next run put the old bundle back"


def test_a_live_writers_folders_are_not_swept(tmp_path):
    dest = tmp_path / "me"
    mine = swap.leftover_path(dest, "staging")
    mine.mkdir()
    dead = tmp_path / f".me.staging-{2**22 + 12345}-0123abcd"
    dead.mkdir()
    assert swap.sweep(dest) == [f"removed {dead.name}"] and mine.is_dir()
