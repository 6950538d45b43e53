"""The loop's policies on a fake clock with real run processes: catch-up, concurrency, retries, timeouts, pause,
removal, run-now, and the known failures of the best-known scheduler, each as a test."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nb2pipe.runstore import RunStore
from nb2pipe.scheduler import Scheduler, ScheduleStore
from nb2pipe.scheduler.cron import iso_utc

from .helpers import FakeClock, add_schedule, ledger_launcher, read_ledger, tracked_launcher, wait_for


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def settle(scheduler: Scheduler) -> None:
    """Tick and wait for the runs until nothing more starts at this instant."""
    while True:
        report = scheduler.tick()
        scheduler.drain(timeout=60)
        if not report.launched:
            return


def fires(home: Path, name: str = "s") -> list[dict[str, Any]]:
    store = ScheduleStore.open(home)
    try:
        return list(reversed(store.history(store.get_any(name).id)))
    finally:
        store.close()


def runs(home: Path) -> list[sqlite3.Row]:
    with RunStore(home) as store:
        return store.query("SELECT id, status, status_detail FROM runs ORDER BY created_at, id")


# -- catch-up: the best-known tool drops every run that fell due while its server was down ---------------------


@pytest.mark.parametrize(
    ("catchup", "ran", "skipped"),
    [("all", ["01", "02", "03", "04", "05"], 0), ("latest", ["05"], 4), ("none", [], 5)],
)
def test_known_failure_fires_missed_while_down_follow_the_catchup_policy(
    home: Path, ledger: Path, clock: FakeClock, catchup: str, ran: list[str], skipped: int
) -> None:
    add_schedule(home, "s", "0 * * * *", now=clock.now(), catchup=catchup)
    first = Scheduler(home, launcher=ledger_launcher(ledger), clock=clock)
    settle(first)
    first.stop()
    clock.t = utc(2026, 1, 5, 5, 30)  # down from 00:00:30 to 05:30: five hourly fires missed
    second = Scheduler(home, launcher=ledger_launcher(ledger), clock=clock)
    settle(second)
    assert [line[1] for line in read_ledger(ledger)] == [f"2026-01-05T{h}:00:00Z" for h in ran]
    done = fires(home)
    assert len(done) == 5
    missed = [f for f in done if f["status"] == "skipped"]
    assert len(missed) == skipped
    for f in missed:
        assert f["reason"].startswith("missed: no scheduler was running from 2026-01-05 00:00:30 UTC")
        assert f"--catchup {catchup}" in f["reason"]
    assert all(f["status"] == "succeeded" for f in done if f not in missed)


def test_catchup_none_still_runs_a_fire_that_is_only_a_little_late(home: Path, ledger: Path, clock: FakeClock) -> None:
    add_schedule(home, "s", "0 * * * *", now=clock.now(), catchup="none")
    clock.t = utc(2026, 1, 5, 3, 0, 30)
    settle(Scheduler(home, launcher=ledger_launcher(ledger), clock=clock, grace=60))
    assert [line[1] for line in read_ledger(ledger)] == ["2026-01-05T03:00:00Z"]
    assert [f["status"] for f in fires(home)] == ["skipped", "skipped", "succeeded"]


def test_a_long_outage_is_decided_in_chunks_without_losing_a_fire(home: Path, ledger: Path, clock: FakeClock) -> None:
    add_schedule(home, "s", "* * * * *", now=clock.now(), catchup="latest")
    clock.advance(3 * 24 * 3600)  # 4,320 minutely fires missed: more than one chunk
    settle(Scheduler(home, launcher=ledger_launcher(ledger), clock=clock))
    done = fires(home)
    assert len(done) == 3 * 24 * 60
    assert [f["status"] for f in done].count("succeeded") == 1
    assert done[-1]["status"] == "succeeded"
    assert len(read_ledger(ledger)) == 1


# -- concurrency ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("catchup", "statuses"),
    [
        ("all", ["running", "pending", "pending"]),
        ("latest", ["running", "skipped", "pending"]),
        ("none", ["running", "skipped", "skipped"]),
    ],
)
def test_max_concurrent_queues_supersedes_or_skips(
    home: Path, ledger: Path, clock: FakeClock, catchup: str, statuses: list[str]
) -> None:
    add_schedule(home, "s", "* * * * *", now=clock.now(), catchup=catchup, parameters={"modes": "hang"})
    scheduler = Scheduler(home, launcher=tracked_launcher(ledger), clock=clock)
    for _ in range(3):
        clock.advance(60)
        scheduler.tick()
    assert [f["status"] for f in fires(home)] == statuses
    reasons = [f["reason"] for f in fires(home) if f["status"] == "skipped"]
    if catchup == "latest":
        assert reasons == ["superseded by the fire at 2026-01-05 00:03:00 UTC while max-concurrent 1 was reached"]
    if catchup == "none":
        assert reasons == ["max-concurrent 1 reached: a run was still in progress"] * 2


def test_max_concurrent_two_runs_two_at_once(home: Path, ledger: Path, clock: FakeClock) -> None:
    add_schedule(home, "s", "* * * * *", now=clock.now(), max_concurrent=2, parameters={"modes": "hang"})
    scheduler = Scheduler(home, launcher=tracked_launcher(ledger), clock=clock)
    clock.advance(3 * 60)
    scheduler.tick()
    assert [f["status"] for f in fires(home)] == ["running", "running", "pending"]


# -- retries and timeouts ------------------------------------------------------------------------------------------


def test_failed_runs_are_retried_after_the_delay_each_as_a_new_tracked_run(
    home: Path, ledger: Path, clock: FakeClock
) -> None:
    add_schedule(
        home, "s", "0 * * * *", now=clock.now(), retries=2, retry_delay=300, parameters={"modes": "fail,crash,ok"}
    )
    scheduler = Scheduler(home, launcher=tracked_launcher(ledger), clock=clock)
    clock.t = utc(2026, 1, 5, 1, 0, 1)
    settle(scheduler)
    assert fires(home)[0]["status"] == "pending"
    assert fires(home)[0]["reason"] == "retrying after failed: boom"
    clock.advance(299)
    assert scheduler.tick().launched == []  # the delay is respected
    clock.advance(1)
    settle(scheduler)
    clock.advance(300)
    settle(scheduler)
    fire = fires(home)[0]
    assert (fire["status"], fire["attempts"]) == ("succeeded", 3)
    assert [a["status"] for a in fire["runs"]] == ["failed", "failed", "succeeded"]
    assert [a["detail"] for a in fire["runs"]] == ["boom", "exited with code 3", None]
    # Every attempt is a normal tracked run under the id the scheduler allocated, linked to the same fire time.
    assert [r["status"] for r in runs(home)] == ["failed", "failed", "succeeded"]
    assert [r["id"] for r in runs(home)] == [a["run_id"] for a in fire["runs"]]
    assert {line[1] for line in read_ledger(ledger)} == {"2026-01-05T01:00:00Z"}
    store = ScheduleStore.open(home)
    assert store.link(fire["runs"][1]["run_id"]) == {
        "schedule": "s",
        "fire_time": utc(2026, 1, 5, 1),
        "trigger": "cron",
        "attempt": 2,
    }
    assert store.link("not-a-scheduled-run") is None
    store.close()


def test_retries_run_out(home: Path, ledger: Path, clock: FakeClock) -> None:
    add_schedule(home, "s", "0 * * * *", now=clock.now(), retries=1, parameters={"modes": "fail"})
    clock.t = utc(2026, 1, 5, 1, 0, 1)
    settle(Scheduler(home, launcher=tracked_launcher(ledger), clock=clock))
    fire = fires(home)[0]
    assert (fire["status"], fire["attempts"], fire["reason"]) == ("failed", 2, "boom")


def test_a_run_past_its_timeout_is_killed_recorded_as_timed_out_and_retried(
    home: Path, ledger: Path, clock: FakeClock
) -> None:
    add_schedule(home, "s", "0 * * * *", now=clock.now(), timeout=600, retries=1, parameters={"modes": "hang,ok"})
    scheduler = Scheduler(home, launcher=tracked_launcher(ledger), clock=clock, kill_grace=5)
    clock.t = utc(2026, 1, 5, 1, 0, 1)
    first = scheduler.tick().launched[0]
    wait_for(lambda: len(read_ledger(ledger)) == 1)  # the run process is up and recorded itself
    pid = fires(home)[0]["runs"][0]["pid"]
    clock.advance(599)
    assert scheduler.tick().finished == []
    clock.advance(1)
    report = scheduler.tick()
    assert report.finished == [(first, "timed-out")]
    assert len(report.launched) == 1  # the retry
    scheduler.drain(timeout=60)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the hung process group is gone
    fire = fires(home)[0]
    assert [a["status"] for a in fire["runs"]] == ["timed-out", "succeeded"]
    assert fire["runs"][0]["detail"] == "timed out after 600 s (--timeout)"
    # The tracked run says timed-out too, not "cancelled" by the SIGTERM that stopped it.
    assert [r["status"] for r in runs(home)] == ["timed-out", "succeeded"]


# -- pause, resume, run-now, removal -------------------------------------------------------------------------------


def test_pause_skips_fires_with_the_reason_and_run_now_still_works(home: Path, ledger: Path, clock: FakeClock) -> None:
    add_schedule(home, "s", "0 * * * *", now=clock.now())
    scheduler = Scheduler(home, launcher=ledger_launcher(ledger), clock=clock)
    store = ScheduleStore.open(home)
    store.pause("s", clock.now())
    clock.t = utc(2026, 1, 5, 3, 30)
    settle(scheduler)
    assert read_ledger(ledger) == []
    run_id = scheduler.run_now("s")
    scheduler.drain(timeout=60)
    assert read_ledger(ledger) == [("s", iso_utc(clock.now()), run_id)]
    _, skipped = store.resume("s", clock.now())
    assert skipped == 3
    clock.t = utc(2026, 1, 5, 4, 0, 1)
    settle(scheduler)
    store.close()
    done = fires(home)
    assert [(f["trigger"], f["status"]) for f in done] == [("cron", "skipped")] * 3 + [
        ("manual", "succeeded"),
        ("cron", "succeeded"),
    ]
    assert done[0]["reason"] == "the schedule was paused"


def test_known_failure_removing_a_schedule_keeps_its_history_and_an_audit_record(
    home: Path, ledger: Path, clock: FakeClock
) -> None:
    add_schedule(home, "s", "0 * * * *", now=clock.now(), parameters={"modes": "ok"})
    scheduler = Scheduler(home, launcher=tracked_launcher(ledger), clock=clock)
    clock.t = utc(2026, 1, 5, 2, 0, 1)
    settle(scheduler)
    store = ScheduleStore.open(home)
    store.remove("s", clock.now())
    assert store.all() == []
    clock.t = utc(2026, 1, 5, 5, 0, 1)
    settle(scheduler)
    assert len(read_ledger(ledger)) == 2  # nothing fires after removal
    history = fires(home)
    assert [f["status"] for f in history] == ["succeeded", "succeeded"]
    assert all(r["status"] == "succeeded" for r in runs(home))
    audit = store.runs.query("SELECT action, object_kind, detail FROM audit")
    assert [(a["action"], a["object_kind"]) for a in audit] == [("schedule.remove", "schedule")]
    assert '"cron":"0 * * * *"' in audit[0]["detail"]
    # The name is free again; the old history is still there under the old schedule's id.
    add_schedule(home, "s", "0 * * * *", now=clock.now())
    assert store.get("s").id != store.get_any("s").id or store.get("s").deleted_at is None
    assert len(store.history(history[0]["schedule_id"])) == 2
    store.close()


# -- several schedulers, restarts ----------------------------------------------------------------------------------


def test_known_failure_two_schedulers_on_one_store_never_run_a_fire_twice(
    home: Path, ledger: Path, clock: FakeClock
) -> None:
    add_schedule(home, "s", "*/5 * * * *", now=clock.now(), max_concurrent=3)
    a = Scheduler(home, launcher=ledger_launcher(ledger), clock=clock)
    b = Scheduler(home, launcher=ledger_launcher(ledger), clock=clock)
    for _ in range(36):  # three hours, both ticking at every instant
        clock.advance(300)
        launched = a.tick().launched + b.tick().launched + a.tick().launched
        assert len(launched) == 1
        a.drain(timeout=60)
        b.drain(timeout=60)
    times = [line[1] for line in read_ledger(ledger)]
    assert len(times) == len(set(times)) == 36


def test_a_crashed_schedulers_run_is_adopted_not_repeated(home: Path, ledger: Path, clock: FakeClock) -> None:
    add_schedule(home, "s", "0 * * * *", now=clock.now(), retries=3, parameters={"modes": "ok"})
    crashed = Scheduler(home, launcher=tracked_launcher(ledger), clock=clock, stale_after=60)
    clock.t = utc(2026, 1, 5, 1, 0, 1)
    (run_id,) = crashed.tick().launched  # then it stops ticking without a word (same process: pid still alive)
    successor = Scheduler(home, launcher=tracked_launcher(ledger), clock=clock, stale_after=60)
    assert successor.tick().adopted == []  # its owner's heartbeat is fresh: hands off
    clock.advance(61)
    report = successor.tick()
    assert report.adopted == [run_id]
    successor.drain(timeout=60)
    fire = fires(home)[0]
    assert (fire["status"], fire["attempts"]) == ("succeeded", 1)
    assert len(read_ledger(ledger)) == 1


def test_a_stopped_schedulers_runs_are_adopted_at_once(home: Path, ledger: Path, clock: FakeClock) -> None:
    add_schedule(home, "s", "0 * * * *", now=clock.now(), parameters={"modes": "ok"})
    first = Scheduler(home, launcher=tracked_launcher(ledger), clock=clock)
    clock.t = utc(2026, 1, 5, 1, 0, 1)
    (run_id,) = first.tick().launched
    first.stop()  # clean shutdown: the run goes on, the next scheduler takes it over
    second = Scheduler(home, launcher=tracked_launcher(ledger), clock=clock)
    assert second.tick().adopted == [run_id]
    second.drain(timeout=60)
    assert fires(home)[0]["status"] == "succeeded"


def test_deciding_and_claiming_a_fire_are_database_decisions(home: Path, clock: FakeClock) -> None:
    """Two schedulers that read the same state: the first write wins, the second changes nothing."""
    add_schedule(home, "s", "0 * * * *", now=clock.now(), max_concurrent=5)
    store = ScheduleStore.open(home)
    stale = store.get("s")
    t = utc(2026, 1, 5, 1)
    assert store.advance(stale, [(t, "pending", None)], t, t + 3600)
    assert not store.advance(stale, [(t, "pending", None)], t, t + 3600)  # cursor moved meanwhile
    (fire,) = store.pending(t + 1)  # both read the pending row...
    assert store.claim(fire, run_id="a", owner="A", now=t + 1, max_concurrent=5, log_path=None) == 1
    assert store.claim(fire, run_id="b", owner="B", now=t + 1, max_concurrent=5, log_path=None) is None
    assert [r["run_id"] for r in store.live_attempts()] == ["a"]
    # Only the owner records the ending, once.
    assert not store.finish_attempt("a", "succeeded", None, owner="B", now=t + 2)
    assert store.finish_attempt("a", "succeeded", None, owner="A", now=t + 2)
    assert not store.finish_attempt("a", "failed", None, owner="A", now=t + 3)
    store.close()
    assert [(f["status"], f["attempts"]) for f in fires(home)] == [("succeeded", 1)]


def test_a_run_of_a_removed_schedule_finishes_and_is_not_retried(home: Path, ledger: Path, clock: FakeClock) -> None:
    add_schedule(home, "s", "0 * * * *", now=clock.now(), retries=2, parameters={"modes": "fail"})
    scheduler = Scheduler(home, launcher=tracked_launcher(ledger), clock=clock)
    clock.t = utc(2026, 1, 5, 1, 0, 1)
    assert len(scheduler.tick().launched) == 1
    store = ScheduleStore.open(home)
    store.remove("s", clock.now())
    store.close()
    scheduler.drain(timeout=60)
    settle(scheduler)
    fire = fires(home)[0]
    assert (fire["status"], fire["attempts"]) == ("failed", 1)
    assert len(read_ledger(ledger)) == 1
