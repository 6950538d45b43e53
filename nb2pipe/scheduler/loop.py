"""The scheduler loop: one class, hosted by ``nb2pipe scheduler`` or (later) the Jupyter server extension.

Each :meth:`Scheduler.tick` does four things, all decided in the database so that any number of schedulers may share
a store:

1. watch the runs this instance started: record endings, kill runs past their ``--timeout``, queue retries;
2. adopt runs whose scheduler died (same host and process gone, or heartbeat stale) or stopped cleanly;
3. decide every cron fire time that has come since the schedule's cursor: queued, or skipped with the reason
   (``--catchup``), and move the cursor in the same transaction;
4. start queued fires, oldest first, up to ``--max-concurrent`` live runs per schedule.

Time comes from an injectable :class:`Clock`, so tests simulate a week without sleeping. Process facts (is a pid
alive, has a child exited) come from the operating system.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ..runstore import new_run_id
from .cron import Cron, local
from .launch import AdoptedHandle, Handle, Launcher, LaunchRequest, SubprocessLauncher, Upcoming
from .store import Schedule, ScheduleStore

log = logging.getLogger("nb2pipe.scheduler")

RUN_FINAL = ("succeeded", "failed", "timed-out", "cancelled")
#: At most this many fire times are decided per schedule per transaction (a long outage is worked off in chunks).
CHUNK = 1000


class Clock(Protocol):
    """Where the scheduler reads the time (UTC epoch seconds)."""

    def now(self) -> float: ...


class SystemClock:
    """The real time."""

    def now(self) -> float:
        return time.time()


@dataclass
class TickReport:
    """What one tick did (for logs, ``--once`` and tests)."""

    #: Run ids started.
    launched: list[str] = field(default_factory=list)
    #: (run id, status) of attempts that ended.
    finished: list[tuple[str, str]] = field(default_factory=list)
    #: Run ids taken over from a scheduler that died or stopped.
    adopted: list[str] = field(default_factory=list)
    #: Fire times recorded as skipped.
    skipped: int = 0


@dataclass
class _Watched:
    handle: Handle | None  # None: adopted while starting, no pid known yet
    schedule: Schedule
    attempt: int
    started_at: float
    deadline: float | None
    kill_after: float | None = None  # monotonic time to escalate to SIGKILL


class Scheduler:
    """Fires schedules from one run store. Call :meth:`tick` yourself, or :meth:`start` / :meth:`stop` a thread.

    Args:
        home: the run store folder (default ``$NB2PIPE_HOME`` or ``.nb2pipe``).
        launcher: starts runs (default: the ``nb2pipe job run`` / ``nb2pipe run`` CLI in a subprocess).
        clock: the time source (default: the system clock).
        interval: seconds between ticks in :meth:`run`.
        grace: how late a fire may start and still count as on time (``--catchup none``).
        stale_after: a scheduler whose heartbeat is this old is presumed dead and its runs are adopted.
        launch_grace: an adopted run with no process yet is given this long to record itself.
        kill_grace: seconds between SIGTERM and SIGKILL for a run past its timeout.
        standbys: with the default launcher, at most this many standby job processes (Python, the job runner and a
            kernel already started) are kept for notebook fires coming within ``warm_ahead`` seconds, so those runs
            start warm (:mod:`nb2pipe.scheduler.standby`); 0 starts every run cold.
        warm_ahead: how far ahead (seconds) a coming fire gets a standby.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        launcher: Launcher | None = None,
        clock: Clock | None = None,
        interval: float = 1.0,
        grace: float = 60.0,
        stale_after: float = 60.0,
        launch_grace: float = 60.0,
        kill_grace: float = 10.0,
        standbys: int = 2,
        warm_ahead: float = 60.0,
    ) -> None:
        self.store = ScheduleStore.open(home)
        self.home = self.store.runs.home
        self.launcher: Launcher = launcher or SubprocessLauncher(standbys=standbys)
        self.warm_ahead = warm_ahead
        self.clock: Clock = clock or SystemClock()
        self.interval = interval
        self.grace = grace
        self.stale_after = stale_after
        self.launch_grace = launch_grace
        self.kill_grace = kill_grace
        #: This instance's id in the ``schedulers`` table.
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._watched: dict[str, _Watched] = {}
        self._crons: dict[tuple[str, str], Cron] = {}
        self._logs = self.home / "schedules" / "logs"
        self._dying: list[tuple[Handle, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.store.register_scheduler(self.instance, self.clock.now())
        reaped = self.store.runs.reap_orphans()
        if reaped:
            log.info("marked %d orphaned run(s) failed: %s", len(reaped), ", ".join(reaped))

    # -- hosting --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="nb2pipe-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop ticking and hand over the runs still going (they keep running; the next scheduler adopts them)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            self.store.scheduler_stopped(self.instance, self.clock.now())
            close = getattr(self.launcher, "close", None)
            if close is not None:
                close()  # waiting standbys end with their kernels; runs handed to one go on

    def run(self) -> None:
        """Tick every ``interval`` seconds until :meth:`stop` (or a signal handler calling it) says so."""
        log.info("scheduler %s watching %s", self.instance, self.store.runs.path)
        while not self._stop.is_set():
            wait = self.interval
            try:
                self.tick()
                wake = self.store.next_wakeup(now := self.clock.now())
                if wake is not None:  # wake up at the fire, not up to an interval after it
                    wait = min(wait, max(wake - now, 0.001))
            except Exception:  # a locked or full store, a bug: say so, keep the schedules going next tick
                log.exception("tick failed; trying again in %g s", self.interval)
            self._stop.wait(wait)
        log.info("scheduler %s stopped", self.instance)

    def request_stop(self) -> None:
        """Ask :meth:`run` to return after the current tick (safe from a signal handler)."""
        self._stop.set()

    def close(self) -> None:
        close = getattr(self.launcher, "close", None)
        if close is not None:
            close()  # standbys of a scheduler that was never stopped
        self.store.close()

    @property
    def running(self) -> bool:
        """True while the thread started by :meth:`start` is ticking."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def watching(self) -> list[str]:
        """Run ids this instance is watching."""
        return list(self._watched)

    def drain(self, timeout: float | None = None) -> TickReport:
        """Wait for the runs this instance watches to end and record them (``--once``); no new fires are decided."""
        report = TickReport()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._watched or self._dying:
            with self._lock:
                self._watch(self.clock.now(), report)
            if not self._watched and not self._dying:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            for w in list(self._watched.values()):
                if w.handle is not None:
                    w.handle.wait(0.2)
                    break
            else:
                time.sleep(0.2)
        return report

    # -- the tick -------------------------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """One pass: watch, adopt, decide due fires, start what may start. Returns what it did."""
        with self._lock:
            now = self.clock.now()
            report = TickReport()
            self.store.scheduler_heartbeat(self.instance, now)
            self._watch(now, report)
            self._adopt(now, report)
            due = self.store.due(now)
            if due:
                with self.store.batch():
                    for schedule in due:
                        report.skipped += self._decide(schedule, now)
            self._start_pending(now, report)
            self._prepare(now)
            return report

    def _prepare(self, now: float) -> None:
        """Let the launcher get ready for the fires coming within ``warm_ahead`` (standbys); never fails a tick."""
        prepare = getattr(self.launcher, "prepare", None)
        if prepare is None:
            return
        try:
            rows = self.store.upcoming(now, now + self.warm_ahead)
            prepare([Upcoming(r["kind"], r["target"], r["fire_time"], self.home) for r in rows])
        except Exception:
            log.exception("could not prepare standbys; runs start cold")

    def run_now(self, name: str) -> str | None:
        """Queue a manual fire of ``name`` now and start it if its concurrency allows; returns the run id."""
        with self._lock:
            now = self.clock.now()
            schedule = self.store.get(name)
            fire_time = self.store.add_manual_fire(schedule, now)
            report = TickReport()
            self._start_pending(now, report, only=(schedule.id, fire_time))
        return report.launched[0] if report.launched else None

    def _cron(self, schedule: Schedule) -> Cron:
        key = (schedule.cron, schedule.timezone)
        cron = self._crons.get(key)
        if cron is None:
            cron = self._crons[key] = Cron(*key)
        return cron

    def _decide(self, schedule: Schedule, now: float) -> int:
        """Record the cron fires of ``schedule`` up to ``now``: queued or skipped, per its catch-up policy."""
        cron = self._cron(schedule)
        skipped = 0
        while True:
            chunk, following = cron.window(schedule.cursor, now, limit=CHUNK)
            if not chunk:
                return skipped
            more = following is not None and following <= now
            decided: list[tuple[float, str, str | None]] = []
            for i, t in enumerate(chunk):
                latest = not more and i == len(chunk) - 1
                reason = self._missed_reason(schedule, t, now, latest)
                decided.append((t, "skipped", reason) if reason else (t, "pending", None))
            next_fire = following
            if not self.store.advance(schedule, decided, chunk[-1], next_fire):
                return skipped  # another scheduler decided these fires first
            for t, status, reason in decided:
                if status == "skipped":
                    skipped += 1
                    log.info("%s: skipped the fire at %s: %s", schedule.name, local(t, schedule.timezone), reason)
            if not more:
                return skipped
            schedule = replace(schedule, cursor=chunk[-1], next_fire=next_fire)

    def _missed_reason(self, schedule: Schedule, t: float, now: float, latest: bool) -> str | None:
        if schedule.catchup == "all":
            return None
        if schedule.catchup == "latest" and latest:
            return None
        if schedule.catchup == "none" and latest and now - t <= self.grace:
            return None
        since = local(schedule.cursor, schedule.timezone)
        rule = (
            "--catchup latest runs only the most recent missed fire"
            if schedule.catchup == "latest"
            else f"--catchup none runs only fires less than {self.grace:g} s late"
        )
        return f"missed: no scheduler was running from {since} until {local(now, schedule.timezone)} ({rule})"

    def _start_pending(self, now: float, report: TickReport, only: tuple[int, float] | None = None) -> None:
        """Claim what may start (one transaction), start those runs, record their processes (one transaction)."""
        pending = self.store.pending(now)
        if not pending:
            return
        by_schedule: dict[int, list[sqlite3.Row]] = {}
        for fire in pending:
            by_schedule.setdefault(fire["schedule_id"], []).append(fire)
        schedules = self.store.by_ids(list(by_schedule))
        claimed: list[tuple[Schedule, sqlite3.Row, str, int]] = []
        with self.store.batch():
            for schedule_id, fires in by_schedule.items():
                schedule = schedules[schedule_id]
                if schedule.paused:
                    fires = [f for f in fires if f["trigger"] == "manual"]
                fires = self._coalesce(schedule, fires, now, report)
                for fire in fires:
                    if only is not None and (fire["schedule_id"], fire["fire_time"]) != only:
                        continue
                    run_id = new_run_id(now)
                    attempt = self.store.claim(
                        fire,
                        run_id=run_id,
                        owner=self.instance,
                        now=now,
                        max_concurrent=schedule.max_concurrent,
                        log_path=str(self._log_path(run_id)),
                    )
                    if attempt is None:
                        if schedule.catchup == "none" and fire["trigger"] == "cron" and fire["attempts"] == 0:
                            reason = f"max-concurrent {schedule.max_concurrent} reached: a run was still in progress"
                            if self.store.skip(schedule.id, fire["fire_time"], "cron", reason, now):
                                report.skipped += 1
                        break
                    claimed.append((schedule, fire, run_id, attempt))
        started: list[tuple[str, int | None]] = []
        failed: list[tuple[str, Schedule, int, str]] = []
        for schedule, fire, run_id, attempt in claimed:
            handle = self._launch(schedule, fire, run_id, attempt, now)
            if isinstance(handle, str):
                failed.append((run_id, schedule, attempt, handle))
            else:
                started.append((run_id, handle.pid))
                report.launched.append(run_id)
        with self.store.batch():
            for run_id, pid in started:
                self.store.launched(run_id, pid)
            for run_id, schedule, attempt, detail in failed:
                self._finish(run_id, schedule, attempt, "failed", detail, now, report)

    def _coalesce(self, schedule: Schedule, fires: list[sqlite3.Row], now: float, report: TickReport) -> list[Any]:
        """With ``--catchup latest``, of several first-try cron fires waiting for a free slot only the newest stays."""
        if schedule.catchup != "latest":
            return fires
        waiting = [f for f in fires if f["trigger"] == "cron" and f["attempts"] == 0]
        if len(waiting) < 2:
            return fires
        newest = max(waiting, key=lambda f: f["fire_time"])
        when = local(newest["fire_time"], schedule.timezone)
        reason = f"superseded by the fire at {when} while max-concurrent {schedule.max_concurrent} was reached"
        for f in waiting:
            if f is not newest and self.store.skip(schedule.id, f["fire_time"], "cron", reason, now):
                report.skipped += 1
        return [f for f in fires if f is newest or f not in waiting]

    def _log_path(self, run_id: str) -> Path:
        return self._logs / f"{run_id}.log"

    def _launch(self, schedule: Schedule, fire: sqlite3.Row, run_id: str, attempt: int, now: float) -> Handle | str:
        """Start one claimed attempt: its handle, or why it could not start."""
        request = LaunchRequest(
            run_id=run_id,
            schedule=schedule.name,
            kind=schedule.kind,
            target=schedule.target,
            parameters=schedule.parameters,
            scheduled_for=fire["fire_time"],
            attempt=attempt,
            home=self.home,
            log_path=self._log_path(run_id),
        )
        try:
            handle = self.launcher.launch(request)
        except OSError as exc:
            return f"could not start: {exc}"
        deadline = now + schedule.timeout if schedule.timeout else None
        self._watched[run_id] = _Watched(handle, schedule, attempt, now, deadline)
        when = local(fire["fire_time"], schedule.timezone)
        log.info("%s: started run %s for %s (attempt %d)", schedule.name, run_id, when, attempt)
        return handle

    # -- watching runs --------------------------------------------------------------------------------------------

    def _watch(self, now: float, report: TickReport) -> None:
        """Poll the runs this instance watches; record every ending of this tick in one transaction."""
        for handle, kill_at in list(self._dying):
            if handle.poll() is not None:
                self._dying.remove((handle, kill_at))
            elif time.monotonic() >= kill_at:
                handle.signal(signal.SIGKILL)
                self._dying.remove((handle, kill_at))
        ended: list[tuple[str, _Watched, str, str | None, int | None]] = []
        for run_id, w in list(self._watched.items()):
            if w.handle is None:
                run = self._run_row(run_id)
                if run is not None and run["pid"]:
                    w.handle = AdoptedHandle(run["pid"])
                elif now - w.started_at >= self.launch_grace:
                    never = "never started: its scheduler stopped before the run's process was recorded"
                    ended.append((run_id, w, "failed", never, None))
                    continue
                else:
                    continue
            code = w.handle.poll()
            if code is None:
                if w.deadline is not None and now >= w.deadline:
                    ended.append((run_id, w, "timed-out", self._time_out(run_id, w), None))
                continue
            status, outcome = self._outcome(run_id, code)
            ended.append((run_id, w, status, outcome, code))
        if ended:
            with self.store.batch():
                for run_id, w, status, detail, code in ended:
                    self._finish(run_id, w.schedule, w.attempt, status, detail, now, report, exit_code=code)

    def _time_out(self, run_id: str, w: _Watched) -> str:
        assert w.schedule.timeout is not None and w.handle is not None
        detail = f"timed out after {w.schedule.timeout:g} s (--timeout)"
        # Record the ending first, so the run's own SIGTERM handler cannot turn it into "cancelled".
        self.store.runs.finish_run(run_id, "timed-out", status_detail=detail)
        w.handle.signal(signal.SIGTERM)
        self._dying.append((w.handle, time.monotonic() + self.kill_grace))
        return detail

    def _outcome(self, run_id: str, code: int) -> tuple[str, str | None]:
        """How an attempt ended: the tracked run's own record wins; the exit code speaks when there is none."""
        run = self._run_row(run_id)
        if run is not None and run["status"] in RUN_FINAL:
            return str(run["status"]), run["status_detail"] or run["error_message"]
        if code == 0 and run is None:
            return "succeeded", None
        detail: str
        if code == 0:
            detail = "the run's process exited without recording an ending"
        elif code > 0:
            detail = f"exited with code {code}"
        elif code == -1:
            detail = "killed: the run's process ended without a result"
        else:
            detail = f"killed by signal {-code}"
        if run is not None:
            self.store.runs.finish_run(run_id, "failed", status_detail=detail)
        return "failed", detail

    def _finish(
        self,
        run_id: str,
        schedule: Schedule,
        attempt: int,
        status: str,
        detail: str | None,
        now: float,
        report: TickReport,
        exit_code: int | None = None,
    ) -> None:
        retry = status in ("failed", "timed-out") and attempt <= schedule.retries
        retry_at = now + schedule.retry_delay if retry else None
        self._watched.pop(run_id, None)
        if self.store.finish_attempt(
            run_id, status, detail, owner=self.instance, now=now, exit_code=exit_code, retry_at=retry_at
        ):
            report.finished.append((run_id, status))
            then = f"; retry {attempt}/{schedule.retries} at {local(retry_at, schedule.timezone)}" if retry_at else ""
            log.info("%s: run %s %s%s%s", schedule.name, run_id, status, f" ({detail})" if detail else "", then)

    def _adopt(self, now: float, report: TickReport) -> None:
        for row in self.store.orphaned_attempts(self.instance, now, self.stale_after):
            if not self.store.take_over(row["run_id"], row["owner"], self.instance):
                continue
            schedule = self.store.by_id(row["schedule_id"])
            handle = AdoptedHandle(row["pid"]) if row["pid"] else None
            deadline = row["started_at"] + schedule.timeout if schedule.timeout else None
            self._watched[row["run_id"]] = _Watched(handle, schedule, row["attempt"], row["started_at"], deadline)
            report.adopted.append(row["run_id"])
            log.info("%s: adopted run %s from scheduler %s", schedule.name, row["run_id"], row["owner"])
        if report.adopted:
            self._watch(now, report)

    def _run_row(self, run_id: str) -> sqlite3.Row | None:
        rows = self.store.runs.query(
            "SELECT status, status_detail, error_message, pid FROM runs WHERE id = ?", (run_id,)
        )
        return rows[0] if rows else None


def install_signal_handlers(scheduler: Scheduler) -> Callable[[], None]:
    """SIGTERM and SIGINT stop the loop after the current tick; returns a function restoring the old handlers."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        scheduler.request_stop()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
