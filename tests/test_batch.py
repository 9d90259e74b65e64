"""``likeness batch`` against real processes and files: a studio batch with an unreadable file, a photo without a
face and an item that crashes in native code (exit code 1, three failures with their codes, a complete report
that headless Chromium renders), reruns that skip what is up to date and say why, retries and timeouts, the
Blender turntable + FBX, list sources, and the one-line refusals of a bad invocation (exit code 2).

Every build uses ``batch_support.TINY`` (a few seconds an item); all but the unit tests at the end are ``slow``.
Screenshots for a person to look at go to $LIKENESS_LOOK_DIR (default /tmp/likeness_batch_look)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from batch_support import (
    REPO,
    TINY,
    TINY_ARGS,
    astronaut_variants,
    events,
    half_written,
    leftovers,
    not_a_face,
    report,
    run_batch,
    unreadable,
)

from engine import __version__
from engine.batch.source import BatchError, read_items
from engine.pipeline import STAGE_NAMES

LOOK = Path(os.environ.get("LIKENESS_LOOK_DIR", "/tmp/likeness_batch_look"))
SHARED_PICKS = ("interfaces_006.jpg", "interfaces_047.jpg")
"""Two frontal real portraits of ../shared/portraits, used when that folder is there."""
PORTRAITS = ["astro_full.png", "astro_crop.jpg", "astro_flip.png", "astro_tilt.png"]
"""Four variants (PNG and JPEG) of batch_support.astronaut_variants, in its order; one crashes, three build."""
CRASH = "astro_tilt"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def studio(tmp_path_factory, astronaut_rgb):
    """A CSV list: four astronaut portraits (one with its own focal length), the shared portraits when present,
    an unreadable file and a photo without a face."""
    root = tmp_path_factory.mktemp("studio")
    photos = astronaut_variants(root / "shoot", astronaut_rgb, PORTRAITS)
    rows = [{"photo": f"shoot/{p.name}", "id": stem, "focal_35mm": ""} for stem, p in photos.items()]
    rows[1]["focal_35mm"] = "85"
    shared = Path(os.environ.get("LIKENESS_SHARED", REPO.parent / "shared")) / "portraits"
    for name in SHARED_PICKS:
        if (shared / name).is_file():
            rows.append({"photo": str(shared / name), "id": Path(name).stem, "focal_35mm": ""})
    rows.append({"photo": str(unreadable(root / "shoot" / "broken.jpg")), "id": "broken", "focal_35mm": ""})
    rows.append({"photo": str(not_a_face(root / "shoot" / "coffee.jpg")), "id": "coffee", "focal_35mm": ""})
    listing = root / "heads.csv"
    with open(listing, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["photo", "id", "focal_35mm"])
        w.writeheader()
        w.writerows(rows)
    return root, listing, [r["id"] for r in rows]


@pytest.fixture(scope="module")
def first_run(studio):
    root, listing, ids = studio
    out = root / "out"
    r = run_batch(listing, "-o", out, *TINY_ARGS, "--jobs", "2", "--progress", "jsonl", fault=f"crash:{CRASH}")
    return out, r, ids


@pytest.mark.slow
def test_studio_batch_with_failures(first_run):
    out, r, ids = first_run
    assert r.returncode == 1, r.stderr[-3000:]
    assert "likeness batch:" in r.stderr.splitlines()[-1]
    evs = events(r.stdout)
    assert evs[0]["event"] == "batch_started" and evs[-1]["event"] == "batch_finished"
    assert evs[-1]["exit_code"] == 1
    started = {e["id"] for e in evs if e["event"] == "item_started"}
    ended = {e["id"]: e["event"] for e in evs if e["event"] in ("item_finished", "item_failed")}
    assert started == set(ids) and set(ended) == set(ids)
    assert {e["stage"] for e in evs if e["event"] == "stage"} <= set(STAGE_NAMES)

    rep = report(out)
    assert rep["state"] == "finished" and rep["exit_code"] == 1
    assert [i["id"] for i in rep["items"]] == ids
    failed = {i["id"]: i["error"]["code"] for i in rep["items"] if i["status"] == "failed"}
    assert failed == {"broken": "unreadable_image", "coffee": "no_face", CRASH: "native_crash"}
    for item in rep["items"]:
        assert (out / item["log"]).is_file()
        if item["status"] == "failed":
            assert item["error"]["message"] and item["error"]["hint"] and item["attempts"] == 1
            assert not (out / item["id"]).exists()
            continue
        assert item["status"] == "succeeded" and item["attempts"] == 1 and item["error"] is None
        assert set(STAGE_NAMES) <= set(item["timings_s"])
        assert item["versions"] == {"engine": __version__, "bundle_format": 1}
        assert item["hashes"]["input_sha256"] == _sha(Path(item["photo"]))
        assert item["hashes"]["manifest_sha256"] == _sha(out / item["id"] / "manifest.json")
        assert item["metrics"]["input_psnr_db"] > 15
        assert all((out / rel).is_file() for rel in item["files"].values())
        assert set(item["exports"]) == {"glb", "obj"} and (out / item["turntable"]["mp4"]).is_file()
        assert [f["deg"] for f in item["turntable"]["frames"].values()] == [0.0, 45.0, 90.0, 180.0]
    crop = json.loads((out / "astro_crop" / "manifest.json").read_text())
    assert crop["settings"]["focal_35mm"] == 85.0 and crop["face"]["focal_35mm"] == 85.0  # the list's own option
    assert crop["settings"]["iterations"] == TINY["iterations"]  # --set
    assert half_written(out) == [] and leftovers(out) == []

    html = (out / "report.html").read_text()
    positions = {i: html.index(f'<div class="id">{i}</div>') for i in ids}
    assert max(positions[i] for i in failed) < min(positions[i] for i in ids if i not in failed)


@pytest.mark.slow
def test_report_in_headless_chromium(first_run):
    out, r, ids = first_run
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    LOOK.mkdir(parents=True, exist_ok=True)
    shot = LOOK / "report.png"
    shot.unlink(missing_ok=True)
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    cmd += [f"--screenshot={shot}", "--window-size=1400,2000", (out / "report.html").as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"), np.float32)
    rows = np.nonzero((np.abs(np.diff(img, axis=1)).sum(axis=(1, 2))) > 2000)[0]
    assert img.std() > 10 and rows.size > 0
    # every head is a row in the page, down to the last one (rows are about 85 px tall)
    assert rows.max() > 150 + 80 * len(ids) * 0.8


@pytest.mark.slow
def test_rerun_skips_what_is_up_to_date(first_run, tmp_path):
    out0, _, ids = first_run
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    listing = out0.parent / "heads.csv"
    portraits = [i for i in ids if i not in ("broken", "coffee", CRASH)]
    before = {i: ((out / i / "manifest.json").stat().st_mtime_ns, _sha(out / i / "manifest.json")) for i in portraits}

    # dry run with changed settings: every portrait would be rebuilt, and says why; nothing is written
    listing_before = sorted(p.name for p in out.iterdir())
    dry = run_batch(listing, "-o", out, *TINY_ARGS, "--set", "iterations=11", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    plan = {line.split()[1]: line for line in dry.stdout.splitlines()}
    assert set(plan) == set(ids)
    assert all(plan[i].startswith("build") and "settings changed (iterations 10 -> 11)" in plan[i] for i in portraits)
    assert sorted(p.name for p in out.iterdir()) == listing_before

    # the same batch again: portraits skipped (up to date), the failures tried again and failing the same way
    r = run_batch(listing, "-o", out, *TINY_ARGS, "--jobs", "2", "--progress", "jsonl", fault=f"crash:{CRASH}")
    assert r.returncode == 1, r.stderr[-2000:]
    started = {e["id"] for e in events(r.stdout) if e["event"] == "item_started"}
    assert started == {"broken", "coffee", CRASH}
    rep = {i["id"]: i for i in report(out)["items"]}
    for i in portraits:
        assert rep[i]["status"] == "skipped" and rep[i]["reason"].startswith("up to date")
        assert rep[i]["metrics"]["input_psnr_db"] > 15 and rep[i]["files"]
        assert ((out / i / "manifest.json").stat().st_mtime_ns, _sha(out / i / "manifest.json")) == before[i]
    assert {rep[i]["error"]["code"] for i in ("broken", "coffee", CRASH)} == {
        "unreadable_image",
        "no_face",
        "native_crash",
    }

    # --resume keeps the earlier failures: nothing runs at all
    r = run_batch(listing, "-o", out, *TINY_ARGS, "--resume", "--progress", "jsonl")
    assert r.returncode == 1
    evs = events(r.stdout)
    assert not [e for e in evs if e["event"] == "item_started"]
    carried = {e["id"] for e in evs if e["event"] == "item_carried"}
    assert carried == {"broken", "coffee", CRASH}
    rep = {i["id"]: i for i in report(out)["items"]}
    assert rep[CRASH]["action"] == "carry" and rep[CRASH]["error"]["code"] == "native_crash"
    assert "--retry-failed" in rep[CRASH]["reason"]

    # --retry-failed without the fault: the crashed item builds, the bad photos fail again
    r = run_batch(listing, "-o", out, *TINY_ARGS, "--retry-failed", "--progress", "jsonl")
    assert r.returncode == 1
    assert {e["id"] for e in events(r.stdout) if e["event"] == "item_started"} == {"broken", "coffee", CRASH}
    assert {i["id"]: i["status"] for i in report(out)["items"]}[CRASH] == "succeeded"
    assert leftovers(out) == [] and half_written(out) == []


@pytest.mark.slow
def test_timeouts_retries_and_all_failed(tmp_path, astronaut_rgb):
    # a hanging item: stopped at --timeout, retried once, then failed
    hang = tmp_path / "hang"
    astronaut_variants(hang, astronaut_rgb, ["hang.png"])
    r = run_batch(
        hang, "-o", tmp_path / "out_hang", *TINY_ARGS, "--timeout", "4", "--max-retries", "1", fault="hang:hang"
    )
    assert r.returncode == 3, r.stderr[-2000:]
    item = report(tmp_path / "out_hang")["items"][0]
    assert item["status"] == "failed" and item["error"]["code"] == "timeout" and item["attempts"] == 2
    assert [e["code"] for e in item["attempt_errors"]] == ["timeout"] * 2

    # killed once (as the OOM killer would): retried and built; out of memory twice: failed
    src = tmp_path / "src"
    astronaut_variants(src, astronaut_rgb, ["flaky.jpg", "oom.png"])
    out = tmp_path / "out"
    r = run_batch(src, "-o", out, *TINY_ARGS, "--jobs", "2", "--max-retries", "1", fault="flaky:flaky,oom:oom")
    assert r.returncode == 1, r.stderr[-2000:]
    rep = {i["id"]: i for i in report(out)["items"]}
    assert rep["oom"]["error"]["code"] == "out_of_memory" and rep["oom"]["attempts"] == 2
    assert rep["flaky"]["status"] == "succeeded" and rep["flaky"]["attempts"] == 2
    assert rep["flaky"]["attempt_errors"][0]["code"] == "worker_crashed"
    assert "SIGKILL" in rep["flaky"]["attempt_errors"][0]["message"]
    assert leftovers(out) == [] and half_written(out) == []

    bad = tmp_path / "bad"
    bad.mkdir()
    unreadable(bad / "a.jpg")
    not_a_face(bad / "b.jpg")
    r = run_batch(bad, "-o", tmp_path / "out_bad", *TINY_ARGS)
    assert r.returncode == 3, r.stderr[-2000:]
    assert report(tmp_path / "out_bad")["counts"]["failed"] == 2


@pytest.mark.slow
@pytest.mark.blender
def test_blender_turntable_and_fbx(tmp_path, astronaut_rgb):
    pytest.importorskip("bpy", reason="needs the bpy module (pip install bpy==5.0.1) or a Blender binary")
    src = tmp_path / "src"
    astronaut_variants(src, astronaut_rgb, ["head.png"])
    out = tmp_path / "out"
    args = (src, "-o", out, *TINY_ARGS, "--turntable", "blender", "--exports", "glb,obj,fbx")
    r = run_batch(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    extras = out / "head.blender"
    frames = sorted((extras / "frames").glob("frame_*.png"))
    assert len(frames) == TINY["turntable_frames"]
    assert (extras / "turntable.mp4").read_bytes()[4:8] == b"ftyp" and (extras / "turntable.blend").is_file()
    assert (extras / "head.fbx").read_bytes()[:18] == b"Kaydara FBX Binary"
    item = report(out)["items"][0]
    assert item["exports"] == {"fbx": "head.blender/head.fbx", "glb": "head/head.glb", "obj": "head/head.obj"}
    assert item["turntable"]["blender"]["mp4"] == "head.blender/turntable.mp4"
    assert "head.blender/head.fbx" in (out / "report.html").read_text()

    # up to date: skipped; Blender outputs lost: only they are made again, the bundle is kept
    manifest = (out / "head" / "manifest.json").stat().st_mtime_ns
    assert report_after(run_batch(*args), out)["status"] == "skipped"
    (extras / "done.json").unlink()
    again = report_after(run_batch(*args), out)
    assert again["status"] == "succeeded" and again["action"] == "finish"
    assert "Blender outputs are missing" in again["reason"]
    assert (out / "head" / "manifest.json").stat().st_mtime_ns == manifest
    assert (extras / "done.json").is_file() and leftovers(out) == []


def report_after(r, out: Path) -> dict:
    assert r.returncode == 0, r.stderr[-2000:]
    return report(out)["items"][0]


def test_sources(tmp_path, astronaut_rgb):
    shoot = tmp_path / "shoot"
    astronaut_variants(shoot, astronaut_rgb, ["a.jpg", "a.png", "b.png"])
    astronaut_variants(shoot / "day 2", astronaut_rgb, ["c.jpg"])
    astronaut_variants(shoot / ".hidden", astronaut_rgb, ["d.png"])
    (shoot / "notes.txt").write_text("not a photo")
    out = shoot / "out"
    astronaut_variants(out / "old", astronaut_rgb, ["e.png"])  # inside the output: never a source
    assert [i.id for i in read_items(str(shoot))] == ["a_jpg", "a_png", "b"]
    items = read_items(str(shoot), recursive=True, exclude=out)
    assert [i.id for i in items] == ["a_jpg", "a_png", "b", "day_2__c"]
    assert [i.id for i in read_items(str(shoot / "*.png"))] == ["a", "b"]

    (tmp_path / "list.json").write_text(json.dumps({"items": ["shoot/b.png", {"photo": "shoot/a.jpg", "face": 1}]}))
    items = read_items(str(tmp_path / "list.json"))
    assert [(i.id, i.options) for i in items] == [("b", {}), ("a", {"face_index": 1})]
    assert items[0].photo == str(shoot / "b.png")

    # the asset's UV layout per item (docs/ASSET.md): read, checked by BuildConfig, refused naming the item
    from engine.batch.plan import item_config

    (tmp_path / "uv.csv").write_text("photo,uv_layout\nshoot/a.jpg,subject\nshoot/b.png,cube\n")
    good, bad = read_items(str(tmp_path / "uv.csv"))
    assert good.options == {"uv_layout": "subject"}
    assert item_config(good, "draft", "cpu", {}).uv_layout == "subject"
    with pytest.raises(BatchError, match="uv_layout must be one of shared, subject"):
        item_config(bad, "draft", "cpu", {})

    for text, words in (
        ("photo,id\nshoot/a.jpg,x\nshoot/b.png,x\n", "also the id"),
        ("photo,colour\nshoot/a.jpg,red\n", "unknown column 'colour'"),
        ("photo,face\nshoot/a.jpg,one\n", "face 'one' is not a int"),
        ("photo,id\nshoot/a.jpg,../up\n", "cannot name a bundle folder"),
        ("id\nx\n", "no photo path"),
    ):
        (tmp_path / "l.csv").write_text(text)
        with pytest.raises(BatchError, match=words.replace("(", r"\(").replace(")", r"\)")):
            read_items(str(tmp_path / "l.csv"))


@pytest.mark.slow
def test_bad_invocations_are_one_line_exit_2(tmp_path, astronaut_rgb):
    src = tmp_path / "src"
    astronaut_variants(src, astronaut_rgb, ["a.png"])
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.csv").write_text("photo,colour\nsrc/a.png,red\n")
    cases = {
        "no source": (tmp_path / "nowhere", "-o", tmp_path / "o"),
        "empty folder": (tmp_path / "empty", "-o", tmp_path / "o"),
        "-o is a file": (src, "-o", afile),
        "unknown setting": (src, "-o", tmp_path / "o", "--set", "nosuch=1"),
        "bad setting type": (src, "-o", tmp_path / "o", "--set", "iterations=lots"),
        "invalid setting": (src, "-o", tmp_path / "o", "--set", "grid_res=4"),
        "bad list": (tmp_path / "bad.csv", "-o", tmp_path / "o"),
        "bad export": (src, "-o", tmp_path / "o", "--exports", "glb,usd"),
        "bad jobs": (src, "-o", tmp_path / "o", "--jobs", "0"),
    }
    for name, args in cases.items():
        r = run_batch(*args, timeout=60)
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("likeness: error:"), (name, r.stderr)
    assert not (tmp_path / "o").exists()

    # one batch at a time per output folder: a held lock refuses a second one
    import fcntl

    (tmp_path / "held" / ".likeness-batch").mkdir(parents=True)
    with open(tmp_path / "held" / ".likeness-batch" / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = run_batch(src, "-o", tmp_path / "held", timeout=60)
    assert r.returncode == 2 and "another likeness batch" in r.stderr, r.stderr

    # no ray installed: one line with the install hint (the import is made to fail in the real CLI process)
    code = "import sys; sys.modules['ray'] = None; from engine.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run(
        [sys.executable, "-c", code, "batch", str(src), "-o", str(tmp_path / "o"), "--ray"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "pip install 'likeness[ray]'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_settings_plan_and_exit_codes(tmp_path):
    from engine.batch.plan import Journal, parse_sets
    from engine.batch.report import exit_code, turntable_picks

    assert parse_sets(["iterations=10", "focal_35mm=85", 'method_options={"w_alpha": 0.2}', "device=cpu"]) == {
        "iterations": 10,
        "focal_35mm": 85.0,
        "method_options": {"w_alpha": 0.2},
        "device": "cpu",
    }
    for bad in ("iterations", "quality=high", "nosuch=1", "iterations=1.5", "method_options=[1]"):
        with pytest.raises(BatchError):
            parse_sets([bad])
    frames = [f"t/frame_{i:03d}.png" for i in range(24)]
    assert {k: v["deg"] for k, v in turntable_picks(frames).items()} == {
        "front": 0.0,
        "three-quarter": 45.0,
        "side": 90.0,
        "back": 180.0,
    }
    assert turntable_picks(frames)["side"]["file"] == "t/frame_006.png" and turntable_picks([]) == {}
    total = {"total": 3, "succeeded": 0, "skipped": 0, "pending": 0}
    assert [exit_code({**total, "failed": f}) for f in (0, 1, 3)] == [0, 1, 3]
    # the journal: the last line of an id wins, a torn line (a kill mid-write) is ignored
    j = Journal(tmp_path)
    j.append({"id": "a", "status": "failed"})
    j.append({"id": "a", "status": "succeeded"})
    with open(j.path, "a") as fh:
        fh.write('{"id": "b", "sta')
    assert j.read() == {"a": {"id": "a", "status": "succeeded"}}
