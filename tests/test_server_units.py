"""The server's parts without a server: job store state machine, idempotency key, the path resolver, the guard's
header parsing, error scrubbing, OOM classification, progress and wire-type validation. Fast, no builds."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from pydantic import ValidationError

from engine.errors import OutOfMemory
from engine.server.errors import scrub
from engine.server.jobs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobStore, canonical_json, job_key
from engine.server.schema import BuildOptions, JobOut, RenderRequest
from engine.server.security import allowed_hosts, host_name
from engine.server.settings import ServerSettings, UnsafeBind, check_bind, is_loopback
from engine.server.worker import STAGE_WEIGHTS, ProgressWriter, classify, lighter
from engine.server.workspace import NotFound, Workspace

ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def store(tmp_path):
    return JobStore(tmp_path / "jobs.sqlite3")


def test_store_is_wal_with_busy_timeout(store):
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._con().execute("PRAGMA busy_timeout").fetchone()[0] == 30000


def test_job_lifecycle_and_claims(store):
    job = store.insert("k1", "{}", "a.png", "a.png")
    assert job.state == QUEUED and job.attempts == 0
    with pytest.raises(sqlite3.IntegrityError):
        store.insert("k1", "{}", "b.png", "b.png")
    claimed = store.claim_next("w1")
    assert claimed.id == job.id and claimed.state == RUNNING and claimed.attempts == 1
    assert store.claim_next("w2") is None
    assert store.set_progress(job.id, "w1", "fit", 0.5, 12.0)
    assert not store.set_progress(job.id, "w2", "fit", 0.9, 1.0), "a foreign claim must not write"
    assert not store.should_stop(job.id, "w1") and store.should_stop(job.id, "w2")
    assert store.finish(job.id, "w1", SUCCEEDED, avatar_id=job.id)
    done = store.get(job.id)
    assert done.state == SUCCEEDED and done.progress == 1.0 and done.avatar_id == job.id and done.eta_s is None
    assert not store.finish(job.id, "w1", FAILED), "a terminal job stays terminal"


def test_cancel_queued_and_running(store):
    a = store.insert("a", "{}", "a", "a")
    b = store.insert("b", "{}", "b", "b")
    store.claim_next("w")  # takes a (oldest)
    assert store.request_cancel(b.id).state == CANCELLED
    running = store.request_cancel(a.id)
    assert running.state == RUNNING and running.cancel_requested is not None
    assert store.should_stop(a.id, "w")
    assert store.finish(a.id, "w", CANCELLED)
    assert store.request_cancel(a.id).state == CANCELLED


def test_release_requeues_then_fails_after_max_attempts(store):
    job = store.insert("k", "{}", "a", "a")
    for attempt in (1, 2):
        store.claim_next(f"w{attempt}")
        assert store.release(None, 3, "crash") == [job.id]
        j = store.get(job.id)
        assert j.state == QUEUED and j.claim is None and j.progress == 0
    store.claim_next("w3")
    store.release("w3", 3, "exit code -9")
    j = store.get(job.id)
    assert j.state == FAILED and j.error_code == "worker_crashed" and "3 times" in j.error_message


def test_release_refund_and_cancel_requested(store):
    a = store.insert("a", "{}", "a", "a")
    store.claim_next("w")
    store.release("w", 1, "server stopped", refund=True)
    assert store.get(a.id).state == QUEUED and store.get(a.id).attempts == 0
    store.claim_next("w")
    store.request_cancel(a.id)
    store.release("w", 3, "crash")
    assert store.get(a.id).state == CANCELLED


def test_requeue_only_terminal(store):
    a = store.insert("a", "{}", "a", "a")
    assert not store.requeue(a.id)
    store.request_cancel(a.id)
    assert store.requeue(a.id) and store.get(a.id).state == QUEUED


def test_job_key_covers_bytes_options_version():
    opts = canonical_json(BuildOptions(quality="draft").model_dump())
    assert opts == canonical_json(BuildOptions(face_index=0, quality="draft").model_dump())
    k = job_key(b"img", opts, "0.1.0")
    assert k == job_key(b"img", opts, "0.1.0") and len(k) == 64
    assert k != job_key(b"img2", opts, "0.1.0")
    assert k != job_key(b"img", canonical_json(BuildOptions(quality="standard").model_dump()), "0.1.0")
    assert k != job_key(b"img", opts, "0.2.0")
    assert k != job_key(
        b"img", canonical_json(BuildOptions(quality="draft", uv_layout="subject").model_dump()), "0.1.0"
    )
    assert job_key(b"ab", "c", "v") != job_key(b"a", "bc", "v"), "parts are length-prefixed"


def test_build_options_validation():
    with pytest.raises(ValidationError):
        BuildOptions(quality="ultra")
    with pytest.raises(ValidationError):
        BuildOptions(nonsense=1)
    with pytest.raises(ValidationError):
        BuildOptions(focal_35mm=3.0)
    cfg = BuildOptions(quality="draft", focal_35mm=35).build_config("cpu")
    assert cfg.quality == "draft" and cfg.focal_35mm == 35.0 and cfg.device == "cpu"
    assert cfg.uv_layout == "shared"
    assert BuildOptions(uv_layout="subject").build_config("cpu").uv_layout == "subject"
    with pytest.raises(ValidationError):
        BuildOptions(uv_layout="cube")


def _render_req(**kw):
    base = {
        "cam2world": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.5], [0, 0, 0, 1]],
        "intrinsics": {"fx": 100, "fy": 100, "cx": 32, "cy": 32, "width": 64, "height": 64},
    }
    base.update(kw)
    return RenderRequest.model_validate_json(json.dumps(base))


def test_render_request_validation():
    assert _render_req().output == "png"
    # absent or null: the face as photographed; {} is the neutral face (a different request)
    assert _render_req().expression is None and _render_req(expression=None).expression is None
    assert _render_req(expression={}).expression == {}
    bad = [
        {"cam2world": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.5], [0, 0, 0, 1]]},  # scaled
        {"cam2world": [[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.5], [0, 0, 0, 1]]},  # mirrored
        {"cam2world": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.5], [0, 0, 1, 1]]},  # projective row
        {"cam2world": [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]},
        {"expression": {"jawOpen": 1.5}},
        {"expression": {"../x": 0.5}},
        {"output": "tiff"},
        {"intrinsics": {"fx": -1, "fy": 100, "cx": 32, "cy": 32, "width": 64, "height": 64}},
    ]
    for kw in bad:
        with pytest.raises(ValidationError):
            _render_req(**kw)
    with pytest.raises(ValidationError):  # NaN is not a number on the wire
        RenderRequest.model_validate_json(
            '{"cam2world": [[NaN,0,0,0],[0,1,0,0],[0,0,1,1],[0,0,0,1]],'
            ' "intrinsics": {"fx": 1, "fy": 1, "cx": 1, "cy": 1, "width": 8, "height": 8}}'
        )


def test_job_wire_shape(store):
    job = store.insert("k", "{}", "a", "a")
    out = JobOut.of(store.request_cancel(job.id)).model_dump()
    assert set(out) == {
        "id",
        "state",
        "stage",
        "progress",
        "eta_s",
        "avatar_id",
        "error",
        "warnings",
        "created",
        "updated",
    }
    assert out["state"] == "cancelled" and out["error"]["code"] == "cancelled" and out["created"].endswith("Z")


def test_host_header_parsing_and_allow_list():
    assert host_name("127.0.0.1:8765") == "127.0.0.1"
    assert host_name("[::1]:8765") == "::1"
    assert host_name("LocalHost") == "localhost"
    for bad in ("", "127.0.0.1:80x", "[::1", "[::1]x", ":80"):
        assert host_name(bad) is None, bad
    hosts = allowed_hosts(ServerSettings(workspace=".", host="0.0.0.0", token="t" * 16, extra_hosts=("studio-gpu",)))
    assert hosts == {"127.0.0.1", "localhost", "::1", "studio-gpu"}
    assert "evil.example" not in hosts and "127.0.0.1.evil.example" not in hosts


def test_bind_rules():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.2.3.4")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("studio.local")
    check_bind(ServerSettings(workspace="."))
    check_bind(ServerSettings(workspace=".", host="0.0.0.0", token="a-long-token"))
    with pytest.raises(UnsafeBind):
        check_bind(ServerSettings(workspace=".", host="0.0.0.0"))
    with pytest.raises(ValueError):
        ServerSettings(workspace=".", token="short")


def test_connection_limits_defaults_env_and_validation(monkeypatch):
    s = ServerSettings(workspace=".")
    assert (s.header_timeout_s, s.keep_alive_timeout_s, s.body_timeout_s) == (10.0, 5.0, 15.0)
    assert s.max_connections_per_peer >= 1024 and s.max_connections >= s.max_connections_per_peer
    assert s.max_uploads_in_flight == 4 and s.max_requests_in_flight >= 64
    monkeypatch.setenv("LIKENESS_HEADER_TIMEOUT_S", "2.5")
    monkeypatch.setenv("LIKENESS_MAX_CONNECTIONS_PER_PEER", "7")
    s = ServerSettings(workspace=".")
    assert s.header_timeout_s == 2.5 and s.max_connections_per_peer == 7
    assert ServerSettings(workspace=".", header_timeout_s=3.0).header_timeout_s == 3.0  # explicit wins
    monkeypatch.setenv("LIKENESS_MAX_CONNECTIONS_PER_PEER", "many")
    with pytest.raises(ValueError, match="LIKENESS_MAX_CONNECTIONS_PER_PEER"):
        ServerSettings(workspace=".")
    monkeypatch.delenv("LIKENESS_MAX_CONNECTIONS_PER_PEER")
    for bad in ({"body_timeout_s": 0}, {"header_timeout_s": -1.0}, {"max_connections": 0}):
        with pytest.raises(ValueError):
            ServerSettings(workspace=".", **bad)


def test_import_limits_and_the_field_header_check(monkeypatch, tmp_path):
    import struct

    import torch
    from safetensors.torch import save

    from engine.server.errors import ApiError
    from engine.server.imports import field_file_size

    s = ServerSettings(workspace=".")
    assert s.max_field_bytes == 256 * 2**20 and s.max_import_request_bytes > s.max_field_bytes
    monkeypatch.setenv("LIKENESS_MAX_FIELD_BYTES", str(2**20))
    assert ServerSettings(workspace=".").max_field_bytes == 2**20
    with pytest.raises(ValueError, match="max_field_bytes"):
        ServerSettings(workspace=".", max_field_bytes=0)

    meta = {"format": "likeness-field", "version": "1"}
    data = save({"a": torch.zeros(3), "b": torch.zeros(2, 5, dtype=torch.float64)}, metadata=meta)
    (n,) = struct.unpack("<Q", data[:8])
    assert field_file_size(data[8 : 8 + n]) == len(data)  # the exact size, from the header alone
    for bad, says in (
        (save({"a": torch.zeros(3)}, metadata={**meta, "version": "9"}), "field format version '9'"),
        (save({"a": torch.zeros(3)}), "not a Likeness field"),
        (save({"a": torch.zeros(3, dtype=torch.int32)}, metadata=meta), "not floating point"),
    ):
        (n,) = struct.unpack("<Q", bad[:8])
        with pytest.raises(ApiError, match=says) as exc:
            field_file_size(bad[8 : 8 + n])
        assert exc.value.status == 422 and exc.value.code == "bad_field"
    with pytest.raises(ApiError, match="not JSON"):
        field_file_size(b"\x80not json")


def test_every_error_carries_a_hint():
    import engine.errors as domain
    from engine.server.errors import ApiError, from_domain
    from engine.server.security import error_body

    classes = [c for c in vars(domain).values() if isinstance(c, type) and issubclass(c, domain.LikenessError)]
    assert len(classes) > 10
    for cls in classes:
        assert from_domain(cls("it went wrong")).hint, cls.__name__
    assert ApiError(404, "not_found", "no such route").hint
    assert ApiError(418, "teapot", "odd").hint
    assert json.loads(error_body("payload_too_large", "too big"))["error"]["hint"]
    assert ApiError(422, "no_face", "no face", "use another photo").hint == "use another photo"


def test_scrub_removes_paths():
    text = "/home/alice/likeness/avatars/abc is not a Likeness avatar bundle (no manifest.json)"
    assert scrub(text) == "abc is not a Likeness avatar bundle (no manifest.json)"
    assert "alice" not in scrub(r"could not open C:\Users\alice\photo.jpg")
    assert scrub("image/png and 50 MB/s stay") == "image/png and 50 MB/s stay"


def test_missing_backend_is_service_unavailable():
    from engine.errors import BackendUnavailable
    from engine.server.errors import from_domain

    err = from_domain(BackendUnavailable("face-alignment weights not found in /home/alice/w", "put them there"))
    assert err.status == 503 and err.code == "backend_unavailable" and "alice" not in err.message


def test_classify_out_of_memory():
    import torch

    assert isinstance(
        classify(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "cuda:0"), OutOfMemory
    )
    assert isinstance(classify(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB")), OutOfMemory)
    assert isinstance(classify(MemoryError()), OutOfMemory)
    err = classify(KeyError("x"))
    assert err.code == "internal" and "KeyError" in err.message
    assert classify(OutOfMemory("m")).code == "out_of_memory"
    from engine.config import preset

    cfg = preset("draft")
    assert lighter(cfg).rays_per_step == cfg.rays_per_step // 2
    assert lighter(preset("draft", rays_per_step=256)) is None


def test_stage_weights_cover_the_pipeline():
    from engine.pipeline import STAGE_NAMES

    assert tuple(STAGE_WEIGHTS) == STAGE_NAMES


def test_progress_writer_monotonic_throttled_and_cancel(store):
    job = store.insert("k", "{}", "a", "a")
    store.claim_next("w")
    pw = ProgressWriter(store, job.id, "w", interval_s=60.0)
    pw("analyse", 0.0)
    pw("analyse", 1.0)  # same stage within the interval: not written
    assert store.get(job.id).stage == "analyse" and store.get(job.id).progress == 0.0
    pw("fit", 0.5)
    fit = store.get(job.id)
    names = list(STAGE_WEIGHTS)
    before = sum(STAGE_WEIGHTS[n] for n in names[: names.index("fit")])
    half_fit = (before + 0.5 * STAGE_WEIGHTS["fit"]) / sum(STAGE_WEIGHTS.values())  # the stage weights' overall
    assert fit.stage == "fit" and 0.15 < fit.progress < 0.6 and abs(fit.progress - half_fit) < 0.01
    pw("init", 0.0)  # never goes backwards
    assert store.get(job.id).progress >= fit.progress
    assert not pw.cancel()
    store.request_cancel(job.id)
    pw.last_check = -1e9
    assert pw.cancel()


def _bundle(ws: Workspace, avatar_id: str, files: dict, frames=()) -> None:
    d = ws.avatars / avatar_id
    d.mkdir()
    manifest = {"format": "likeness-avatar", "format_version": 1, "files": files, "turntable_frames": list(frames)}
    (d / "manifest.json").write_text(json.dumps(manifest))


def test_resolve_artifact_stays_inside_the_bundle(tmp_path):
    ws = Workspace(tmp_path / "ws")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    _bundle(
        ws,
        ID,
        {
            "texture": "texture.png",
            "up": "../../../secret.txt",
            "abs": str(secret),
            "link": "link.png",
            "dirlink": "sub/secret.txt",
            "self": ".",
        },
        frames=["turntable/frame_000.png"],
    )
    (ws.avatars / ID / "texture.png").write_bytes(b"png")
    (ws.avatars / ID / "turntable").mkdir()
    (ws.avatars / ID / "turntable" / "frame_000.png").write_bytes(b"f0")
    os.symlink(secret, ws.avatars / ID / "link.png")
    os.symlink(tmp_path, ws.avatars / ID / "sub")
    assert ws.resolve_artifact(ID, "texture").read_bytes() == b"png"
    assert ws.resolve_artifact(ID, "turntable_frame_000").read_bytes() == b"f0"
    for key in ("up", "abs", "link", "dirlink", "self", "missing", "turntable_frame_001", "../texture", "a/b", ""):
        with pytest.raises(NotFound):
            ws.resolve_artifact(ID, key)
    for bad_id in ("..", ID.upper(), ID[:-1], "../" + ID, "/" + ID):
        with pytest.raises(NotFound):
            ws.resolve_artifact(bad_id, "texture")


def test_avatar_folder_symlinked_out_of_the_workspace(tmp_path):
    ws = Workspace(tmp_path / "ws")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "manifest.json").write_text(json.dumps({"format": "likeness-avatar", "files": {"t": "t.png"}}))
    (outside / "t.png").write_bytes(b"x")
    os.symlink(outside, ws.avatars / ID)
    with pytest.raises(NotFound):
        ws.resolve_artifact(ID, "t")
    assert ws.list_avatars() == []


def test_staging_folders_are_invisible_and_removed(tmp_path):
    ws = Workspace(tmp_path / "ws")
    (ws.avatars / f".{ID}.staging-1234abcd").mkdir()
    (ws.avatars / f".{ID}.staging-1234abcd" / "head.glb").write_bytes(b"half")
    assert ws.list_avatars() == []
    assert ws.remove_staging(ID) == 1 and not any(ws.avatars.iterdir())


def test_inputs_written_atomically_and_pruned(tmp_path):
    ws = Workspace(tmp_path / "ws")
    name = ws.write_input(ID, "png", b"\x89PNG....")
    assert ws.read_input(name) == b"\x89PNG...." and name == f"{ID}.png"
    (ws.inputs / "stray.jpg").write_bytes(b"x")
    assert ws.prune_inputs({name}) == 1 and [p.name for p in ws.inputs.iterdir()] == [name]


def test_supervisor_kills_a_worker_that_ignores_cancel(tmp_path):
    """A real spawned worker holds a running job that never checks for cancels: past the grace period the
    supervisor kills it, marks the job cancelled and starts a fresh worker."""
    import time

    from engine.server.supervisor import Supervisor

    ws = Workspace(tmp_path / "ws")
    store = JobStore(ws.db_path)
    settings = ServerSettings(workspace=ws.root, cancel_grace_s=0.5, devices=("cpu",))
    sup = Supervisor(settings, ws, store, "cpu")
    sup.start()
    try:
        first_pid, first_claim = sup.proc.pid, sup.claim
        job = store.insert("k", "{}", "a.png", "a.png")
        store._con().execute("UPDATE jobs SET state = 'running', claim = ? WHERE id = ?", (first_claim, job.id))
        (ws.avatars / f".{job.id}.staging-0000abcd").mkdir()
        store.request_cancel(job.id)
        deadline = time.monotonic() + 30
        while store.get(job.id).state != CANCELLED and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.get(job.id).state == CANCELLED
        # the job is marked cancelled before the replacement worker is spawned: give the spawn its moment
        while not (sup.proc.pid and sup.proc.is_alive()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sup.proc.pid != first_pid and sup.claim != first_claim and sup.proc.is_alive()
        assert not list(ws.avatars.iterdir()), "the killed build's staging folder is removed"
    finally:
        sup.stop()
    assert not sup.proc.is_alive()
