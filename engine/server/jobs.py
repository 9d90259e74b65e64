"""The durable job queue: SQLite (WAL, busy timeout, synchronous=FULL) shared by the server and its workers.

States: queued -> running -> succeeded | failed | cancelled. A worker claims a job with a token; every write it
makes afterwards names that token, so a worker that lost its claim (server killed and restarted, job re-queued)
can no longer touch the job. No HTTP here.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
RETRYABLE_CODES = ("internal", "out_of_memory", "worker_crashed", "no_gpu", "verify_failed")
"""Failure codes a resubmission of the same input re-queues (bad input fails the same way again)."""


def native_crash_error(reason: str) -> tuple[str, str, str]:
    """(code, message, hint) of a build process ended by a crash in native code (locally or on Ray)."""
    return (
        "native_crash",
        f"the build process crashed in native code on this photo ({reason})",
        "the same photo crashes again: crop it around the face or re-save it as an ordinary JPEG, then submit that",
    )


def worker_crashed_error(attempts: int, reason: str) -> tuple[str, str, str]:
    """(code, message, hint) of a build process that kept stopping without a result (locally or on Ray)."""
    return (
        "worker_crashed",
        f"the build process stopped unexpectedly {attempts} time{'' if attempts == 1 else 's'} ({reason})",
        "the machine may be short of memory; try quality draft or a smaller photo",
    )


SCHEMA_VERSION = 2
"""2: ``warnings`` (JSON list of the build's warnings, e.g. several faces in the photo)."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    stage TEXT,
    progress REAL NOT NULL DEFAULT 0,
    eta_s REAL,
    avatar_id TEXT,
    error_code TEXT,
    error_message TEXT,
    error_hint TEXT,
    options TEXT NOT NULL,
    input_name TEXT NOT NULL,
    input_file TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claim TEXT,
    cancel_requested REAL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    started REAL,
    finished REAL,
    warnings TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
"""


def job_key(image: bytes, options_canonical: str, engine_version: str) -> str:
    """sha256 over the image bytes, the canonical options JSON and the engine version (length-prefixed)."""
    h = hashlib.sha256()
    for part in (image, options_canonical.encode(), engine_version.encode()):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def canonical_json(options: dict) -> str:
    return json.dumps(options, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class Job:
    """One row of the queue. Times are seconds since the epoch."""

    id: str
    key: str
    state: str
    stage: str | None
    progress: float
    eta_s: float | None
    avatar_id: str | None
    error_code: str | None
    error_message: str | None
    error_hint: str | None
    options: str
    input_name: str
    input_file: str
    attempts: int
    claim: str | None
    cancel_requested: float | None
    created: float
    updated: float
    started: float | None
    finished: float | None
    warnings: str | None = None
    """JSON list of the build's warnings (the manifest's ``warnings`` messages), set when it succeeded."""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def options_dict(self) -> dict:
        return json.loads(self.options)


class JobStore:
    """All reads and writes of the job table. Thread-safe: one connection per thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        con = self._con()
        con.executescript(_SCHEMA)
        if "warnings" not in {r["name"] for r in con.execute("PRAGMA table_info(jobs)")}:
            con.execute("ALTER TABLE jobs ADD COLUMN warnings TEXT")  # a version-1 workspace
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA busy_timeout = 30000")
            con.execute("PRAGMA synchronous = FULL")
            self._local.con = con
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def _write(self, sql: str, args: tuple = ()) -> int:
        cur = self._con().execute(sql, args)
        return cur.rowcount

    @staticmethod
    def _job(row: sqlite3.Row | None) -> Job | None:
        return Job(**dict(row)) if row is not None else None

    # -- reads ------------------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        return self._job(self._con().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def by_key(self, key: str) -> Job | None:
        return self._job(self._con().execute("SELECT * FROM jobs WHERE key = ?", (key,)).fetchone())

    def count(self, state: str) -> int:
        return int(self._con().execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0])

    def input_files(self) -> set[str]:
        return {r[0] for r in self._con().execute("SELECT input_file FROM jobs").fetchall()}

    def running_with_claim(self, claim: str) -> list[Job]:
        rows = self._con().execute("SELECT * FROM jobs WHERE state = ? AND claim = ?", (RUNNING, claim)).fetchall()
        return [self._job(r) for r in rows]

    # -- server side ------------------------------------------------------------------------------------------

    def insert(self, key: str, options: str, input_name: str, input_file: str, job_id: str | None = None) -> Job:
        """Queue a new job; raises sqlite3.IntegrityError when ``key`` already exists."""
        job_id = job_id or uuid.uuid4().hex
        now = time.time()
        self._write(
            "INSERT INTO jobs (id, key, state, options, input_name, input_file, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, key, QUEUED, options, input_name, input_file, now, now),
        )
        return self.get(job_id)

    def requeue(self, job_id: str) -> bool:
        """Put a cancelled or retryable failed job back in the queue (a resubmission)."""
        n = self._write(
            "UPDATE jobs SET state = ?, stage = NULL, progress = 0, eta_s = NULL, avatar_id = NULL, error_code = NULL,"
            " error_message = NULL, error_hint = NULL, attempts = 0, claim = NULL, cancel_requested = NULL,"
            " started = NULL, finished = NULL, updated = ? WHERE id = ? AND state IN (?, ?, ?)",
            (QUEUED, time.time(), job_id, CANCELLED, FAILED, SUCCEEDED),
        )
        return n == 1

    def request_cancel(self, job_id: str) -> Job | None:
        """Queued -> cancelled at once; running -> flagged for its worker; terminal -> unchanged."""
        now = time.time()
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute(
                "UPDATE jobs SET state = ?, finished = ?, updated = ?, eta_s = NULL WHERE id = ? AND state = ?",
                (CANCELLED, now, now, job_id, QUEUED),
            )
            con.execute(
                "UPDATE jobs SET cancel_requested = ?, updated = ? WHERE id = ? AND state = ?"
                " AND cancel_requested IS NULL",
                (now, now, job_id, RUNNING),
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return self.get(job_id)

    def release(
        self, claim: str | None, max_attempts: int, reason: str, refund: bool = False, native_crash: bool = False
    ) -> list[str]:
        """Jobs left running by a dead worker (``claim``) or by a killed server (``claim`` None: all of them):
        cancelled if a cancel was asked, failed after ``max_attempts`` starts, otherwise re-queued (``refund``:
        without counting the start, for a graceful stop). ``native_crash``: the worker was ended by a crash in
        native code (abort, segfault), which the same photo repeats: failed at once, not retried on resubmission."""
        now = time.time()
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            where, args = ("state = ?", (RUNNING,)) if claim is None else ("state = ? AND claim = ?", (RUNNING, claim))
            rows = con.execute(f"SELECT id, attempts, cancel_requested FROM jobs WHERE {where}", args).fetchall()
            for r in rows:
                if r["cancel_requested"] is not None:
                    con.execute(
                        "UPDATE jobs SET state = ?, claim = NULL, eta_s = NULL, finished = ?, updated = ? WHERE id = ?",
                        (CANCELLED, now, now, r["id"]),
                    )
                elif native_crash:
                    con.execute(
                        "UPDATE jobs SET state = ?, claim = NULL, eta_s = NULL, error_code = ?,"
                        " error_message = ?, error_hint = ?, finished = ?, updated = ? WHERE id = ?",
                        (FAILED, *native_crash_error(reason), now, now, r["id"]),
                    )
                elif r["attempts"] >= max_attempts and not refund:
                    con.execute(
                        "UPDATE jobs SET state = ?, claim = NULL, eta_s = NULL, error_code = ?,"
                        " error_message = ?, error_hint = ?, finished = ?, updated = ? WHERE id = ?",
                        (FAILED, *worker_crashed_error(r["attempts"], reason), now, now, r["id"]),
                    )
                else:
                    con.execute(
                        "UPDATE jobs SET state = ?, claim = NULL, stage = NULL, progress = 0, eta_s = NULL,"
                        " attempts = MAX(attempts - ?, 0), updated = ? WHERE id = ?",
                        (QUEUED, int(refund), now, r["id"]),
                    )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return [r["id"] for r in rows]

    def force_cancel(self, job_id: str, claim: str) -> bool:
        """Mark a running job cancelled after its worker was killed for ignoring the cancel."""
        now = time.time()
        n = self._write(
            "UPDATE jobs SET state = ?, claim = NULL, eta_s = NULL, finished = ?, updated = ?"
            " WHERE id = ? AND claim = ? AND state = ?",
            (CANCELLED, now, now, job_id, claim, RUNNING),
        )
        return n == 1

    # -- worker side ------------------------------------------------------------------------------------------

    def claim_next(self, claim: str) -> Job | None:
        """Atomically take the oldest queued job for the worker holding ``claim``."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute("SELECT id FROM jobs WHERE state = ? ORDER BY created, id LIMIT 1", (QUEUED,)).fetchone()
            if row is None:
                con.execute("COMMIT")
                return None
            now = time.time()
            con.execute(
                "UPDATE jobs SET state = ?, claim = ?, attempts = attempts + 1, stage = NULL, progress = 0,"
                " eta_s = NULL, started = ?, updated = ? WHERE id = ?",
                (RUNNING, claim, now, now, row["id"]),
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return self.get(row["id"])

    def set_progress(self, job_id: str, claim: str, stage: str, progress: float, eta_s: float | None) -> bool:
        n = self._write(
            "UPDATE jobs SET stage = ?, progress = ?, eta_s = ?, updated = ? WHERE id = ? AND claim = ? AND state = ?",
            (stage, float(progress), eta_s, time.time(), job_id, claim, RUNNING),
        )
        return n == 1

    def should_stop(self, job_id: str, claim: str) -> bool:
        """True when a cancel was asked or the job is no longer this worker's."""
        row = self._con().execute("SELECT claim, state, cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is None or row["claim"] != claim or row["state"] != RUNNING or row["cancel_requested"] is not None

    def finish(
        self,
        job_id: str,
        claim: str,
        state: str,
        avatar_id: str | None = None,
        error: tuple[str, str, str] | None = None,
        warnings: list[str] | None = None,
    ) -> bool:
        """Move a claimed running job to a terminal state; False if the claim was lost meanwhile."""
        assert state in TERMINAL
        now = time.time()
        code, message, hint = error or (None, None, None)
        progress_sql = ", progress = 1" if state == SUCCEEDED else ""
        n = self._write(
            f"UPDATE jobs SET state = ?, avatar_id = ?, error_code = ?, error_message = ?, error_hint = ?,"
            f" warnings = ?, eta_s = NULL, finished = ?, updated = ?{progress_sql}"
            " WHERE id = ? AND claim = ? AND state = ?",
            (state, avatar_id, code, message, hint, json.dumps(warnings or []), now, now, job_id, claim, RUNNING),
        )
        return n == 1
