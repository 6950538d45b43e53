"""The run store: one SQLite file that remembers every tracked notebook job and every pipeline run.

Why SQLite and not files per run: "which run produced this number?" is a query over many runs (filter by notebook,
status, parameter value), several processes finish runs at the same time, and a record must never be half-written.
SQLite in WAL mode gives atomic transactions, concurrent readers while one process writes, and a single file to back
up. Every write goes through :meth:`RunStore.transaction` (``BEGIN IMMEDIATE``), so two writers queue on the
database lock instead of losing an update.

The schema evolves through named migrations applied in order and recorded in ``schema_migrations``; a feature adds
its own migration to :data:`MIGRATIONS` instead of editing an older one, so a store written by an older nb2pipe is
upgraded in place on first open.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .errors import Nb2PipeError

HOME_ENV: Final = "NB2PIPE_HOME"
DEFAULT_HOME: Final = ".nb2pipe"
DB_NAME: Final = "runs.sqlite"

RUN_KINDS: Final = ("job", "pipeline")
RUN_STATUSES: Final = ("queued", "running", "succeeded", "failed", "timed-out", "cancelled")
ACTIVE_STATUSES: Final = ("queued", "running")
# A run whose heartbeat is older than this, and whose process is gone, was killed: see reap_orphans().
HEARTBEAT_STALE_SECONDS: Final = 30.0


class StoreError(Nb2PipeError):
    """The run store cannot be opened or written (unwritable folder, full disk, corrupt database)."""


class UnknownRunError(StoreError):
    """No run has the given id (or a unique prefix of it)."""


_INITIAL = """
CREATE TABLE environments (
    id          TEXT PRIMARY KEY,          -- sha256 of the python version and the frozen package list
    python      TEXT NOT NULL,
    platform    TEXT NOT NULL,
    packages    TEXT NOT NULL,             -- JSON list of "name==version", sorted
    created_at  REAL NOT NULL
);
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,     -- time-sortable: 20261127-011500-3fa9c2
    kind             TEXT NOT NULL CHECK (kind IN ('job', 'pipeline')),
    target           TEXT NOT NULL,        -- notebook or pipeline directory, as given
    target_hash      TEXT,                 -- sha256 of the notebook / pipeline definition
    parameters       TEXT NOT NULL DEFAULT '{}',  -- JSON object, typed values
    status           TEXT NOT NULL CHECK (status IN
                        ('queued', 'running', 'succeeded', 'failed', 'timed-out', 'cancelled')),
    status_detail    TEXT,                 -- e.g. 'kernel died', 'never started: no such kernel', 'killed'
    run_dir          TEXT,
    created_at       REAL NOT NULL,
    started_at       REAL,
    ended_at         REAL,
    heartbeat_at     REAL,
    host             TEXT,
    user             TEXT,
    pid              INTEGER,
    pgid             INTEGER,
    git_commit       TEXT,
    git_dirty        INTEGER,
    environment_id   TEXT REFERENCES environments(id),
    kernel           TEXT,
    executor         TEXT,
    worker           TEXT,
    error_cell       INTEGER,
    error_cell_id    TEXT,
    error_name       TEXT,
    error_message    TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    rerun_of         TEXT,
    deleted_at       REAL                  -- soft delete: history is never silently erased
);
CREATE INDEX runs_by_time ON runs (created_at DESC);
CREATE INDEX runs_by_target ON runs (target, created_at DESC);
CREATE INDEX runs_by_status ON runs (status, created_at DESC);
CREATE TABLE run_parameters (                  -- one row per parameter, so runs can be filtered by value
    run_id  TEXT NOT NULL REFERENCES runs(id),
    name    TEXT NOT NULL,
    value   TEXT NOT NULL,                     -- JSON
    PRIMARY KEY (run_id, name)
);
CREATE INDEX run_parameters_by_value ON run_parameters (name, value);
CREATE TABLE metrics (
    run_id       TEXT NOT NULL REFERENCES runs(id),
    name         TEXT NOT NULL,
    value        TEXT NOT NULL,                -- JSON
    recorded_at  REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE artifacts (
    run_id  TEXT NOT NULL REFERENCES runs(id),
    path    TEXT NOT NULL,                     -- relative to the run folder
    sha256  TEXT NOT NULL,
    size    INTEGER NOT NULL,
    PRIMARY KEY (run_id, path)
);
CREATE TABLE stage_runs (                      -- pipeline runs: one row per stage
    run_id      TEXT NOT NULL REFERENCES runs(id),
    stage       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'running', 'ran', 'cached', 'failed', 'skipped')),
    cache_key   TEXT,
    started_at  REAL,
    ended_at    REAL,
    outputs     TEXT,                          -- JSON: name -> {hash, location}
    error       TEXT,
    PRIMARY KEY (run_id, stage)
);
CREATE TABLE audit (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           REAL NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,                -- e.g. 'run.remove', 'schedule.remove'
    object_kind  TEXT NOT NULL,
    object_id    TEXT NOT NULL,
    detail       TEXT NOT NULL                 -- JSON snapshot of what was removed or changed
);
"""

# Tracked notebook jobs: the kernel's process (its own session, so cancel and orphan reaping can reach it), the
# declared output folder and the MLflow run a job was logged to; indexes so `job list` stays fast over 100,000 runs.
_JOBS = """
ALTER TABLE runs ADD COLUMN kernel_pid INTEGER;
ALTER TABLE runs ADD COLUMN output_dir TEXT;
ALTER TABLE runs ADD COLUMN mlflow_run_id TEXT;
CREATE INDEX runs_by_kind_time ON runs (kind, created_at DESC);
CREATE INDEX runs_active ON runs (status) WHERE status IN ('queued', 'running');
"""

# The scheduler (nb2pipe.scheduler): schedules, one row per (schedule, fire time, trigger) so a fire is decided once,
# one row per attempt (a tracked run whose id the scheduler allocates), and the scheduler processes watching them.
_SCHEDULES = """
CREATE TABLE schedules (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('job', 'pipeline')),
    target          TEXT NOT NULL,             -- absolute path of the notebook or pipeline directory
    cron            TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    parameters      TEXT NOT NULL DEFAULT '{}',  -- JSON object, typed when the schedule was added
    catchup         TEXT NOT NULL CHECK (catchup IN ('none', 'latest', 'all')),
    max_concurrent  INTEGER NOT NULL CHECK (max_concurrent >= 1),
    retries         INTEGER NOT NULL CHECK (retries >= 0),
    retry_delay     REAL NOT NULL CHECK (retry_delay >= 0),
    timeout         REAL CHECK (timeout IS NULL OR timeout > 0),
    created_at      REAL NOT NULL,
    paused_at       REAL,
    cursor          REAL NOT NULL,             -- every fire time <= cursor has been decided (queued or skipped)
    next_fire       REAL,                      -- first fire time after cursor; NULL when it never fires again
    deleted_at      REAL                       -- soft delete: history stays
);
CREATE UNIQUE INDEX schedules_live_name ON schedules (name) WHERE deleted_at IS NULL;
CREATE INDEX schedules_due ON schedules (next_fire) WHERE deleted_at IS NULL AND paused_at IS NULL;
CREATE TABLE schedule_fires (
    schedule_id  INTEGER NOT NULL REFERENCES schedules(id),
    fire_time    REAL NOT NULL,                -- UTC epoch seconds
    trigger      TEXT NOT NULL CHECK (trigger IN ('cron', 'manual')),
    status       TEXT NOT NULL CHECK (status IN
                    ('pending', 'running', 'succeeded', 'failed', 'timed-out', 'cancelled', 'skipped')),
    reason       TEXT,                         -- why it was skipped, or how the last attempt ended
    attempts     INTEGER NOT NULL DEFAULT 0,
    not_before   REAL NOT NULL,                -- a retry waits until then
    updated_at   REAL NOT NULL,
    PRIMARY KEY (schedule_id, fire_time, trigger)
);
CREATE INDEX schedule_fires_open ON schedule_fires (not_before) WHERE status = 'pending';
CREATE TABLE schedule_attempts (
    run_id       TEXT PRIMARY KEY,             -- the tracked run (runs.id), allocated here, passed as NB2PIPE_RUN_ID
    schedule_id  INTEGER NOT NULL,
    fire_time    REAL NOT NULL,
    trigger      TEXT NOT NULL,
    attempt      INTEGER NOT NULL,             -- 1 is the first try
    status       TEXT NOT NULL CHECK (status IN
                    ('starting', 'running', 'succeeded', 'failed', 'timed-out', 'cancelled')),
    detail       TEXT,
    owner        TEXT NOT NULL,                -- the scheduler instance that watches it (schedulers.id)
    host         TEXT NOT NULL,
    pid          INTEGER,                      -- the run's process, leader of its own process group
    exit_code    INTEGER,
    log_path     TEXT,
    started_at   REAL NOT NULL,
    ended_at     REAL,
    FOREIGN KEY (schedule_id, fire_time, trigger) REFERENCES schedule_fires (schedule_id, fire_time, trigger),
    UNIQUE (schedule_id, fire_time, trigger, attempt)
);
CREATE UNIQUE INDEX schedule_attempts_one_live ON schedule_attempts (schedule_id, fire_time, trigger)
    WHERE status IN ('starting', 'running');
CREATE TABLE schedulers (
    id            TEXT PRIMARY KEY,            -- host:pid:token
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    REAL NOT NULL,
    heartbeat_at  REAL NOT NULL,               -- in the scheduler's clock
    stopped_at    REAL
);
"""

# A run started by the scheduler names its schedule and fire time (ISO-8601 UTC), so the history of a run answers
# "which schedule started this?" without a join through the scheduler's own tables.
_SCHEDULE_LINK = """
ALTER TABLE runs ADD COLUMN schedule TEXT;
ALTER TABLE runs ADD COLUMN scheduled_for TEXT;
"""

# Append only. Each entry: (unique name, SQL script). Never edit a migration that has shipped.
MIGRATIONS: list[tuple[str, str]] = [
    ("0001_initial", _INITIAL),
    ("0002_jobs_kernel_and_indexes", _JOBS),
    ("0003_schedules", _SCHEDULES),
    ("0004_run_schedule_link", _SCHEDULE_LINK),
    # Pipeline runs: the code version each stage ran (or was cached) with, so a result traces back to its code.
    ("0005_runner_stage_versions", "ALTER TABLE stage_runs ADD COLUMN version TEXT;"),
]


def scheduled_run() -> tuple[str, dict[str, str]] | None:
    """The run id and schedule fields a scheduler passed to a run command, or ``None`` outside a scheduled run.

    The scheduler allocates the run id (so it can record the fire before the run starts) and passes it with the
    schedule's name and fire time in ``NB2PIPE_RUN_ID``, ``NB2PIPE_SCHEDULE`` and ``NB2PIPE_SCHEDULED_FOR``. Both the
    id and the schedule must be present: a run id alone is what a job's kernel sees, and a command run from inside
    a job's notebook must not adopt its parent's id.
    """
    run_id, schedule = os.environ.get("NB2PIPE_RUN_ID"), os.environ.get("NB2PIPE_SCHEDULE")
    if not run_id or not schedule:
        return None
    return run_id, {"schedule": schedule, "scheduled_for": os.environ.get("NB2PIPE_SCHEDULED_FOR", "")}


def store_home(home: str | os.PathLike[str] | None = None) -> Path:
    """Where the store lives: the argument, else ``$NB2PIPE_HOME``, else ``.nb2pipe/`` in the current directory."""
    if home is not None:
        return Path(home)
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME)


def new_run_id(now: float | None = None) -> str:
    """A unique id that sorts by creation time and is short enough to type (a prefix is accepted too)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


def to_json(value: Any) -> str:
    """Canonical JSON (sorted keys) so equal values compare equal in SQL; non-JSON values are stored as repr."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


@dataclass(frozen=True)
class Environment:
    """The interpreter and packages a run used; stored once per distinct environment."""

    python: str
    platform: str
    packages: tuple[str, ...]

    @property
    def id(self) -> str:
        text = to_json([self.python, self.platform, list(self.packages)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class RunStore:
    """A handle on the SQLite run store. Cheap to create; one connection per instance (not shared across threads)."""

    def __init__(self, home: str | os.PathLike[str] | None = None, *, create: bool = True) -> None:
        self.home = store_home(home)
        self.path = self.home / DB_NAME
        if not create and not self.path.exists():
            raise StoreError(f"{self.path}: no run store here (nothing has run yet?)")
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout=30000")
            self._enable_wal()
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the run store: {exc}") from exc

    # -- plumbing -------------------------------------------------------------------------------------------------

    def _enable_wal(self, deadline: float = 30.0) -> None:
        """Switch a new database to WAL. The switch needs an exclusive lock and SQLite does not run the busy handler
        for it, so several processes opening a brand-new store at once get "database is locked": retry instead."""
        give_up = time.monotonic() + deadline
        delay = 0.01
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > give_up:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: ``BEGIN IMMEDIATE`` takes the write lock up front, so concurrent writers queue."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot write the run store: {exc}") from exc
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:  # disk full, I/O error: the transaction is rolled back, nothing half-written
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: cannot write the run store: {exc}") from exc

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        return self._db.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        self._db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        applied = {row[0] for row in self._db.execute("SELECT name FROM schema_migrations")}
        pending = [(name, sql) for name, sql in MIGRATIONS if name not in applied]
        if not pending:
            return
        with self.transaction() as db:
            # Re-read under the write lock: another process may have migrated meanwhile.
            applied = {row[0] for row in db.execute("SELECT name FROM schema_migrations")}
            for name, sql in pending:
                if name in applied:
                    continue
                for statement in _statements(sql):
                    db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time()))

    @property
    def schema_version(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT name FROM schema_migrations ORDER BY name")]

    # -- runs -----------------------------------------------------------------------------------------------------

    def create_run(
        self,
        kind: str,
        target: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        status: str = "queued",
        run_id: str | None = None,
        **fields: Any,
    ) -> str:
        """Insert a run and its parameters in one transaction; returns its id."""
        if kind not in RUN_KINDS:
            raise ValueError(f"unknown run kind {kind!r}")
        run_id = run_id or new_run_id()
        now = time.time()
        row: dict[str, Any] = {
            "id": run_id,
            "kind": kind,
            "target": target,
            "parameters": to_json(dict(parameters or {})),
            "status": status,
            "created_at": now,
            "heartbeat_at": now,
            "host": socket.gethostname(),
            "user": _user(),
            **fields,
        }
        columns = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        with self.transaction() as db:
            db.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", row)  # noqa: S608 - column names are ours
            db.executemany(
                "INSERT INTO run_parameters VALUES (?, ?, ?)",
                [(run_id, name, to_json(value)) for name, value in (parameters or {}).items()],
            )
        return run_id

    def update_run(self, run_id: str, *, only_if_active: bool = False, **fields: Any) -> bool:
        """Set columns of a run. With ``only_if_active``, a run that already ended is left alone (returns False)."""
        if not fields:
            return True
        assignments = ", ".join(f"{k} = :{k}" for k in fields)
        guard = " AND status IN ('queued', 'running')" if only_if_active else ""
        with self.transaction() as db:
            cur = db.execute(
                f"UPDATE runs SET {assignments} WHERE id = :_id{guard}",  # noqa: S608 - column names are ours
                {**fields, "_id": run_id},
            )
        return cur.rowcount == 1

    def finish_run(self, run_id: str, status: str, **fields: Any) -> bool:
        """Record how a run ended. The first ending wins: a run cancelled meanwhile is not turned into a success."""
        if status not in RUN_STATUSES or status in ACTIVE_STATUSES:
            raise ValueError(f"not a final status: {status!r}")
        return self.update_run(run_id, only_if_active=True, status=status, ended_at=time.time(), **fields)

    def heartbeat(self, run_id: str) -> None:
        self.update_run(run_id, only_if_active=True, heartbeat_at=time.time())

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run by id or unique id prefix, with parameters decoded and its metrics and artifacts attached."""
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            rows = self.query("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 2", (_like_prefix(run_id),))
        if len(rows) != 1:
            reason = "is ambiguous" if rows else "matches no run"
            raise UnknownRunError(f"run id {run_id!r} {reason} in {self.path}")
        run = dict(rows[0])
        run["parameters"] = json.loads(run["parameters"])
        run["metrics"] = {
            r["name"]: json.loads(r["value"])
            for r in self.query("SELECT name, value FROM metrics WHERE run_id = ? ORDER BY name", (run["id"],))
        }
        run["artifacts"] = [
            dict(r)
            for r in self.query("SELECT path, sha256, size FROM artifacts WHERE run_id = ? ORDER BY path", (run["id"],))
        ]
        return run

    def record_metric(self, run_id: str, name: str, value: Any) -> None:
        """Record (or overwrite: the last value wins, as with scrapbook's glue) a metric of a run."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO metrics VALUES (?, ?, ?, ?) ON CONFLICT (run_id, name) DO UPDATE "
                "SET value = excluded.value, recorded_at = excluded.recorded_at",
                (run_id, name, to_json(value), time.time()),
            )

    def record_artifact(self, run_id: str, path: str, sha256: str, size: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)",
                (run_id, path, sha256, size),
            )

    def ensure_environment(self, env: Environment) -> str:
        """Store an environment once (many runs share it) and return its id."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO environments VALUES (?, ?, ?, ?, ?)",
                (env.id, env.python, env.platform, to_json(list(env.packages)), time.time()),
            )
        return env.id

    def audit(self, action: str, object_kind: str, object_id: str, detail: Any) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO audit (at, actor, action, object_kind, object_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), _user(), action, object_kind, object_id, to_json(detail)),
            )

    def reap_orphans(self, *, stale_after: float = HEARTBEAT_STALE_SECONDS, now: float | None = None) -> list[str]:
        """Mark runs whose process died without recording an ending (SIGKILL, power loss) as failed.

        A run counts as orphaned when its heartbeat is stale and, if it ran on this host, its process is gone. Runs
        on other hosts are judged by the heartbeat alone. Returns the ids it marked.
        """
        now = time.time() if now is None else now
        host = socket.gethostname()
        candidates = self.query(
            "SELECT id, host, pid FROM runs WHERE status IN ('queued', 'running') AND heartbeat_at < ?",
            (now - stale_after,),
        )
        reaped = []
        for row in candidates:
            if row["host"] == host and row["pid"] and pid_alive(row["pid"]):
                continue
            if self.finish_run(row["id"], "failed", status_detail="killed: the run's process ended without a result"):
                reaped.append(row["id"])
        return reaped


def _statements(script: str) -> list[str]:
    """Split a migration into statements, so each runs inside our transaction (executescript would commit)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
