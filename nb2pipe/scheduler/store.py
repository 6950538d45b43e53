"""Schedules, their fire times and the runs they started, in the run store.

The tables are created by the run store's migration ``0003_schedules``.

Exactly-once is a property of the database, not of timing: a fire is a row keyed by (schedule, fire time, trigger),
inserted once whoever computes it first; a run is started only by the process whose conditional ``UPDATE`` moved
that fire from ``pending`` to ``running`` inside a ``BEGIN IMMEDIATE`` transaction; and a partial unique index allows
one live attempt per fire. Two schedulers on one store therefore split the work instead of doubling it.

Removing a schedule is a soft delete with an audit record: its fires and runs stay queryable (``history``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from ..errors import Nb2PipeError
from ..runstore import RunStore, to_json
from .cron import Cron

CATCHUP: Final = ("none", "latest", "all")
FIRE_FINAL: Final = ("succeeded", "failed", "timed-out", "cancelled", "skipped")
ATTEMPT_LIVE: Final = ("starting", "running")


class ScheduleError(Nb2PipeError):
    """A schedule that cannot be added or found (bad name, duplicate, unknown target)."""


class UnknownScheduleError(ScheduleError):
    """No live schedule has that name."""

    def __init__(self, message: str, *, name: str) -> None:
        #: The name asked for.
        self.name = name
        super().__init__(message)


@dataclass(frozen=True)
class Schedule:
    """A schedule as stored."""

    id: int
    name: str
    #: ``job`` (a notebook) or ``pipeline`` (a converted pipeline directory).
    kind: str
    target: str
    cron: str
    timezone: str
    parameters: Mapping[str, Any]
    catchup: str
    max_concurrent: int
    retries: int
    #: Seconds between a failed attempt and the next.
    retry_delay: float
    #: Seconds a run may take before it is killed and recorded as timed-out; None for no limit.
    timeout: float | None
    created_at: float
    paused_at: float | None
    #: Every cron fire time up to here has been decided.
    cursor: float
    next_fire: float | None
    deleted_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Schedule:
        values = {name: row[name] for name in _SCHEDULE_FIELDS}
        values["parameters"] = json.loads(row["parameters"])
        return cls(**values)

    @property
    def paused(self) -> bool:
        return self.paused_at is not None


_SCHEDULE_FIELDS: Final = tuple(f.name for f in fields(Schedule))


class ScheduleStore:
    """Schedule tables on top of a :class:`~nb2pipe.runstore.RunStore` (which applies the migration)."""

    def __init__(self, runs: RunStore) -> None:
        self.runs = runs
        self._batch: sqlite3.Connection | None = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Run the writes inside as one transaction (a tick touching hundreds of fires commits once)."""
        if self._batch is not None:
            yield
            return
        with self.runs.transaction() as db:
            self._batch = db
            try:
                yield
            finally:
                self._batch = None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self._batch is not None:
            yield self._batch
        else:
            with self.runs.transaction() as db:
                yield db

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> ScheduleStore:
        return cls(RunStore(home))

    def close(self) -> None:
        self.runs.close()

    # -- schedules ------------------------------------------------------------------------------------------------

    def add(
        self,
        *,
        name: str,
        kind: str,
        target: str,
        cron: str,
        timezone: str,
        parameters: Mapping[str, Any],
        catchup: str,
        max_concurrent: int,
        retries: int,
        retry_delay: float,
        timeout: float | None,
        now: float,
    ) -> Schedule:
        """Insert a schedule (expression and zone checked); it fires at cron times strictly after ``now``."""
        next_fire = Cron(cron, timezone).next_after(now)
        row = {
            "name": name,
            "kind": kind,
            "target": target,
            "cron": cron,
            "timezone": timezone,
            "parameters": to_json(dict(parameters)),
            "catchup": catchup,
            "max_concurrent": max_concurrent,
            "retries": retries,
            "retry_delay": retry_delay,
            "timeout": timeout,
            "created_at": now,
            "cursor": now,
            "next_fire": next_fire,
        }
        columns = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        try:
            with self.runs.transaction() as db:
                db.execute(f"INSERT INTO schedules ({columns}) VALUES ({marks})", row)  # noqa: S608 - our columns
        except sqlite3.IntegrityError:
            raise ScheduleError(
                f"a schedule named {name!r} already exists; pick another name or remove it first "
                f"(nb2pipe schedule rm {name})"
            ) from None
        return self.get(name)

    def get(self, name: str) -> Schedule:
        rows = self.runs.query("SELECT * FROM schedules WHERE name = ? AND deleted_at IS NULL", (name,))
        if not rows:
            import difflib

            names = [s.name for s in self.all()]
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; schedules: {', '.join(names) or 'none'}"
            raise UnknownScheduleError(f"no schedule named {name!r}{hint}", name=name)
        return Schedule.from_row(rows[0])

    def get_any(self, name: str) -> Schedule:
        """The live schedule ``name``, else the most recently removed one (history outlives the schedule)."""
        rows = self.runs.query(
            "SELECT * FROM schedules WHERE name = ? ORDER BY deleted_at IS NOT NULL, deleted_at DESC LIMIT 1", (name,)
        )
        if not rows:
            return self.get(name)  # raises with a close match
        return Schedule.from_row(rows[0])

    def by_id(self, schedule_id: int) -> Schedule:
        return Schedule.from_row(self.runs.query("SELECT * FROM schedules WHERE id = ?", (schedule_id,))[0])

    def by_ids(self, ids: Iterator[int] | list[int]) -> dict[int, Schedule]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        marks = ", ".join("?" * len(wanted))
        rows = self.runs.query(f"SELECT * FROM schedules WHERE id IN ({marks})", wanted)  # noqa: S608 - marks only
        return {r["id"]: Schedule.from_row(r) for r in rows}

    def all(self) -> list[Schedule]:
        rows = self.runs.query("SELECT * FROM schedules WHERE deleted_at IS NULL ORDER BY name")
        return [Schedule.from_row(r) for r in rows]

    def due(self, now: float) -> list[Schedule]:
        """Live, unpaused schedules whose next cron fire time has come (one indexed query)."""
        rows = self.runs.query(
            "SELECT * FROM schedules WHERE deleted_at IS NULL AND paused_at IS NULL AND next_fire <= ? "
            "ORDER BY next_fire",
            (now,),
        )
        return [Schedule.from_row(r) for r in rows]

    def upcoming(self, now: float, until: float) -> list[sqlite3.Row]:
        """``(kind, target, fire_time)`` of the fires expected up to ``until``: cron fires and pending ones."""
        return self.runs.query(
            "SELECT kind, target, next_fire AS fire_time FROM schedules "
            "WHERE deleted_at IS NULL AND paused_at IS NULL AND next_fire <= ? "
            "UNION ALL SELECT s.kind, s.target, f.not_before FROM schedule_fires f "
            "JOIN schedules s ON s.id = f.schedule_id "
            "WHERE f.status = 'pending' AND f.not_before <= ? AND s.deleted_at IS NULL",
            (until, until),
        )

    def next_wakeup(self, now: float) -> float | None:
        """The next instant after ``now`` when a cron fire or a waiting retry becomes due (None: nothing is coming)."""
        row = self.runs.query(
            "SELECT min(t) FROM (SELECT min(next_fire) AS t FROM schedules "
            "WHERE deleted_at IS NULL AND paused_at IS NULL AND next_fire > ? "
            "UNION ALL SELECT min(not_before) FROM schedule_fires WHERE status = 'pending' AND not_before > ?)",
            (now, now),
        )
        value = row[0][0] if row else None
        return float(value) if value is not None else None

    def pause(self, name: str, now: float) -> Schedule:
        schedule = self.get(name)
        with self.runs.transaction() as db:
            db.execute("UPDATE schedules SET paused_at = ? WHERE id = ? AND paused_at IS NULL", (now, schedule.id))
        return self.get(name)

    def resume(self, name: str, now: float) -> tuple[Schedule, int]:
        """Unpause; fire times that fell due while paused are recorded as skipped, not run. Returns how many."""
        schedule = self.get(name)
        if not schedule.paused:
            return schedule, 0
        cron = Cron(schedule.cron, schedule.timezone)
        skipped = cron.fire_times(schedule.cursor, now)
        next_fire = cron.next_after(now)
        with self.runs.transaction() as db:
            cur = db.execute(
                "UPDATE schedules SET paused_at = NULL, cursor = ?, next_fire = ? WHERE id = ? AND paused_at = ?",
                (now, next_fire, schedule.id, schedule.paused_at),
            )
            if cur.rowcount == 1:
                self._insert_fires(db, schedule.id, [(t, "skipped", "the schedule was paused") for t in skipped], now)
        return self.get(name), len(skipped)

    def remove(self, name: str, now: float) -> Schedule:
        """Soft-delete: the schedule stops firing, its fires and runs stay, and the audit log keeps a snapshot."""
        schedule = self.get(name)
        snapshot = {k: v for k, v in schedule.__dict__.items()}
        snapshot["parameters"] = dict(schedule.parameters)
        with self.runs.transaction() as db:
            db.execute("UPDATE schedules SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL", (now, schedule.id))
            db.execute(
                "UPDATE schedule_fires SET status = 'skipped', reason = 'the schedule was removed', updated_at = ? "
                "WHERE schedule_id = ? AND status = 'pending'",
                (now, schedule.id),
            )
        self.runs.audit("schedule.remove", "schedule", f"{schedule.id}:{schedule.name}", snapshot)
        return self.by_id(schedule.id)

    # -- fires ----------------------------------------------------------------------------------------------------

    def advance(
        self, schedule: Schedule, decided: list[tuple[float, str, str | None]], cursor: float, next_fire: float | None
    ) -> bool:
        """Record cron fires (``pending`` or ``skipped`` with a reason) and move the cursor, if nobody did it first.

        Compare-and-set on the cursor: when two schedulers compute the same fires, one records them and the other's
        call returns False and changes nothing.
        """
        with self._tx() as db:
            cur = db.execute(
                "UPDATE schedules SET cursor = ?, next_fire = ? WHERE id = ? AND cursor = ? AND deleted_at IS NULL "
                "AND paused_at IS NULL",
                (cursor, next_fire, schedule.id, schedule.cursor),
            )
            if cur.rowcount != 1:
                return False
            self._insert_fires(db, schedule.id, decided, schedule.cursor)
        return True

    def _insert_fires(
        self, db: sqlite3.Connection, schedule_id: int, decided: list[tuple[float, str, str | None]], now: float
    ) -> None:
        db.executemany(
            "INSERT OR IGNORE INTO schedule_fires (schedule_id, fire_time, trigger, status, reason, not_before, "
            "updated_at) VALUES (?, ?, 'cron', ?, ?, ?, ?)",
            [(schedule_id, t, status, reason, t, now) for t, status, reason in decided],
        )

    def add_manual_fire(self, schedule: Schedule, now: float) -> float:
        """A ``run-now`` fire at ``now`` (nudged by a millisecond if another manual fire has that instant)."""
        with self.runs.transaction() as db:
            t = now
            while True:
                cur = db.execute(
                    "INSERT OR IGNORE INTO schedule_fires (schedule_id, fire_time, trigger, status, not_before, "
                    "updated_at) VALUES (?, ?, 'manual', 'pending', ?, ?)",
                    (schedule.id, t, now, now),
                )
                if cur.rowcount == 1:
                    return t
                t += 0.001

    def pending(self, now: float) -> list[sqlite3.Row]:
        """Fires ready to start, oldest first, with their schedule's settings."""
        return self.runs.query(
            "SELECT f.*, s.name, s.catchup, s.max_concurrent FROM schedule_fires f "
            "JOIN schedules s ON s.id = f.schedule_id "
            "WHERE f.status = 'pending' AND f.not_before <= ? AND s.deleted_at IS NULL "
            "ORDER BY f.not_before, f.fire_time",
            (now,),
        )

    def live_attempts(self, schedule_id: int | None = None) -> list[sqlite3.Row]:
        where = "status IN ('starting', 'running')" + (" AND schedule_id = ?" if schedule_id is not None else "")
        args = (schedule_id,) if schedule_id is not None else ()
        return self.runs.query(f"SELECT * FROM schedule_attempts WHERE {where}", args)  # noqa: S608 - fixed text

    def skip(self, schedule_id: int, fire_time: float, trigger: str, reason: str, now: float) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE schedule_fires SET status = 'skipped', reason = ?, updated_at = ? "
                "WHERE schedule_id = ? AND fire_time = ? AND trigger = ? AND status = 'pending'",
                (reason, now, schedule_id, fire_time, trigger),
            )
        return cur.rowcount == 1

    def claim(
        self, fire: sqlite3.Row, *, run_id: str, owner: str, now: float, max_concurrent: int, log_path: str | None
    ) -> int | None:
        """Take a pending fire for this scheduler: returns the attempt number, or None when someone else has it.

        The fire's move from pending to running, the concurrency check and the attempt row are one transaction.
        """
        key = (fire["schedule_id"], fire["fire_time"], fire["trigger"])
        with self._tx() as db:
            live = db.execute(
                "SELECT count(*) FROM schedule_attempts WHERE schedule_id = ? AND status IN ('starting', 'running')",
                (fire["schedule_id"],),
            ).fetchone()[0]
            if live >= max_concurrent:
                return None
            cur = db.execute(
                "UPDATE schedule_fires SET status = 'running', attempts = attempts + 1, updated_at = ? "
                "WHERE schedule_id = ? AND fire_time = ? AND trigger = ? AND status = 'pending' AND not_before <= ?",
                (now, *key, now),
            )
            if cur.rowcount != 1:
                return None
            attempt: int = db.execute(
                "SELECT attempts FROM schedule_fires WHERE schedule_id = ? AND fire_time = ? AND trigger = ?", key
            ).fetchone()[0]
            db.execute(
                "INSERT INTO schedule_attempts (run_id, schedule_id, fire_time, trigger, attempt, status, owner, "
                "host, log_path, started_at) VALUES (?, ?, ?, ?, ?, 'starting', ?, ?, ?, ?)",
                (run_id, *key, attempt, owner, socket.gethostname(), log_path, now),
            )
        return attempt

    def launched(self, run_id: str, pid: int | None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE schedule_attempts SET status = 'running', pid = ? WHERE run_id = ? AND status = 'starting'",
                (pid, run_id),
            )

    def finish_attempt(
        self,
        run_id: str,
        status: str,
        detail: str | None,
        *,
        owner: str,
        now: float,
        exit_code: int | None = None,
        retry_at: float | None = None,
    ) -> bool:
        """Record how an attempt ended and settle its fire: final, or pending again until ``retry_at``.

        Only the attempt's current owner may do this, once (a scheduler that lost ownership changes nothing).
        """
        with self._tx() as db:
            cur = db.execute(
                "UPDATE schedule_attempts SET status = ?, detail = ?, exit_code = ?, ended_at = ? "
                "WHERE run_id = ? AND owner = ? AND status IN ('starting', 'running')",
                (status, detail, exit_code, now, run_id, owner),
            )
            if cur.rowcount != 1:
                return False
            a = db.execute(
                "SELECT schedule_id, fire_time, trigger FROM schedule_attempts WHERE run_id = ?", (run_id,)
            ).fetchone()
            removed = db.execute("SELECT deleted_at IS NOT NULL FROM schedules WHERE id = ?", (a[0],)).fetchone()[0]
            if retry_at is None or removed:  # a removed schedule is not retried
                db.execute(
                    "UPDATE schedule_fires SET status = ?, reason = ?, updated_at = ? "
                    "WHERE schedule_id = ? AND fire_time = ? AND trigger = ? AND status = 'running'",
                    (status, detail, now, *a),
                )
            else:
                db.execute(
                    "UPDATE schedule_fires SET status = 'pending', reason = ?, not_before = ?, updated_at = ? "
                    "WHERE schedule_id = ? AND fire_time = ? AND trigger = ? AND status = 'running'",
                    (f"retrying after {status}: {detail}", retry_at, now, *a),
                )
        return True

    # -- scheduler instances --------------------------------------------------------------------------------------

    def register_scheduler(self, instance: str, now: float) -> None:
        with self.runs.transaction() as db:
            db.execute(
                "INSERT INTO schedulers (id, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)",
                (instance, socket.gethostname(), os.getpid(), now, now),
            )

    def scheduler_heartbeat(self, instance: str, now: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE schedulers SET heartbeat_at = ? WHERE id = ?", (now, instance))

    def scheduler_stopped(self, instance: str, now: float) -> None:
        with self.runs.transaction() as db:
            db.execute("UPDATE schedulers SET stopped_at = ? WHERE id = ?", (now, instance))

    def orphaned_attempts(self, instance: str, now: float, stale_after: float) -> list[sqlite3.Row]:
        """Live attempts whose scheduler stopped, died (same host, process gone) or stopped heartbeating."""
        from ..runstore import pid_alive

        rows = self.runs.query(
            "SELECT a.*, s.host AS owner_host, s.pid AS owner_pid, s.heartbeat_at AS owner_heartbeat, "
            "s.stopped_at AS owner_stopped FROM schedule_attempts a LEFT JOIN schedulers s ON s.id = a.owner "
            "WHERE a.status IN ('starting', 'running') AND a.owner != ?",
            (instance,),
        )
        host = socket.gethostname()
        out = []
        for r in rows:
            gone = (
                r["owner_heartbeat"] is None
                or r["owner_stopped"] is not None
                or r["owner_heartbeat"] < now - stale_after
                or (r["owner_host"] == host and not pid_alive(r["owner_pid"]))
            )
            if gone:
                out.append(r)
        return out

    def take_over(self, run_id: str, old_owner: str, instance: str) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE schedule_attempts SET owner = ? WHERE run_id = ? AND owner = ? "
                "AND status IN ('starting', 'running')",
                (instance, run_id, old_owner),
            )
        return cur.rowcount == 1

    # -- history --------------------------------------------------------------------------------------------------

    def link(self, run_id: str) -> dict[str, Any] | None:
        """The schedule, fire time and attempt a tracked run belongs to (for ``job show``), or None."""
        rows = self.runs.query(
            "SELECT s.name AS schedule, a.fire_time, a.trigger, a.attempt FROM schedule_attempts a "
            "JOIN schedules s ON s.id = a.schedule_id WHERE a.run_id = ?",
            (run_id,),
        )
        return dict(rows[0]) if rows else None

    def history(self, schedule_id: int, limit: int | None = None) -> list[dict[str, Any]]:
        """Fires newest first, each with its attempts (run id, status, detail) and the tracked run's status."""
        fires = self.runs.query(
            "SELECT * FROM schedule_fires WHERE schedule_id = ? ORDER BY fire_time DESC, trigger LIMIT ?",
            (schedule_id, -1 if limit is None else limit),
        )
        attempts: dict[tuple[float, str], list[dict[str, Any]]] = {}
        for a in self.runs.query(
            "SELECT a.*, r.status AS run_status FROM schedule_attempts a LEFT JOIN runs r ON r.id = a.run_id "
            "WHERE a.schedule_id = ? ORDER BY a.attempt",
            (schedule_id,),
        ):
            attempts.setdefault((a["fire_time"], a["trigger"]), []).append(dict(a))
        return [{**dict(f), "runs": attempts.get((f["fire_time"], f["trigger"]), [])} for f in fires]
