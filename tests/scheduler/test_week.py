"""A simulated week across a daylight-saving change, with downtime, crashes and restarts, on a fake clock.

Every fire time that actually ran (the ledger written by the real run processes) is checked against croniter's own
sequence for each schedule: 0 missed, 0 duplicated.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from nb2pipe.scheduler import Scheduler, ScheduleStore
from nb2pipe.scheduler.cron import iso_utc

from .helpers import FakeClock, add_schedule, ledger_launcher, read_ledger

SCHEDULES = {
    "daily-berlin": ("30 2 * * *", "Europe/Berlin"),  # 02:30 does not exist on spring-forward day
    "hourly-berlin": ("0 * * * *", "Europe/Berlin"),
    "night-london": ("*/30 1-3 * * *", "Europe/London"),  # fixed hours: once per wall time when clocks go back
    "weekdays-utc": ("0 9 * * 1-5", "UTC"),
    "sunday-berlin": ("15 2 * * 0", "Europe/Berlin"),
    "every-20-ny": ("*/20 * * * *", "America/New_York"),
}


def croniter_sequence(expr: str, tz: str, start: float, end: float) -> list[str]:
    """The oracle: croniter's fire times, minus the documented fall-back repeats of fixed-hour expressions."""
    zone = ZoneInfo(tz)
    it = croniter(expr, datetime.fromtimestamp(start, zone))
    out = []
    while (t := it.get_next(float)) <= end:
        if datetime.fromtimestamp(t, zone).fold == 1 and expr.split()[1] != "*":
            continue
        out.append(iso_utc(t))
    return out


@pytest.mark.parametrize("start", [datetime(2026, 3, 25, 12, tzinfo=UTC), datetime(2026, 10, 21, 12, tzinfo=UTC)])
def test_a_week_with_a_dst_change_downtime_and_restarts_misses_and_repeats_nothing(
    home: Path, ledger: Path, start: datetime
) -> None:
    clock = FakeClock(start.timestamp())
    for name, (expr, tz) in SCHEDULES.items():
        add_schedule(home, name, expr, tz=tz, now=clock.now(), catchup="all", max_concurrent=50)
    end = clock.now() + 7 * 24 * 3600
    rng = random.Random(5)
    crashed: list[Scheduler] = []  # kept referenced: their run processes are adopted, not garbage-collected

    def new() -> Scheduler:
        return Scheduler(home, launcher=ledger_launcher(ledger), clock=clock, stale_after=120)

    scheduler = new()
    events = {1: "crash-and-down", 3: "clean-restart", 4: "crash-and-restart", 5: "down"}
    day_seen: set[int] = set()
    adopted = 0
    while clock.now() < end:
        clock.advance(min(rng.randint(1, 47) * 60 + rng.random(), end - clock.now()))
        report = scheduler.tick()
        adopted += len(report.adopted)
        day = int((clock.now() - start.timestamp()) // 86400)
        event = events.get(day) if day not in day_seen else None
        day_seen.add(day)
        if event in ("crash-and-down", "crash-and-restart") and report.launched:
            crashed.append(scheduler)  # dies between launching runs and seeing them end
            if event == "crash-and-down":
                clock.advance(7 * 3600)  # nobody runs for seven hours
            scheduler = new()
            continue
        scheduler.drain(timeout=60)
        if event == "clean-restart":
            scheduler.stop()
            clock.advance(30 * 60)
            scheduler = new()
        elif event == "down":
            scheduler.stop()
            clock.advance(11 * 3600)
            scheduler = new()
    while scheduler.tick().launched or scheduler.watching:
        scheduler.drain(timeout=60)
    clock.advance(121)  # past stale_after: adopt anything a crashed instance still held
    adopted += len(scheduler.tick().adopted)
    scheduler.drain(timeout=60)
    assert len(crashed) == 2
    assert adopted >= 2  # the crashed instances' runs were taken over, not lost and not run again

    ran: dict[str, list[str]] = {}
    for name, fire_time, _run in read_ledger(ledger):
        ran.setdefault(name, []).append(fire_time)
    store = ScheduleStore.open(home)
    for name, (expr, tz) in SCHEDULES.items():
        expected = croniter_sequence(expr, tz, start.timestamp(), clock.now())
        assert sorted(ran.get(name, [])) == expected, name
        history = store.history(store.get(name).id)
        assert {(f["status"], f["attempts"]) for f in history} == {("succeeded", 1)}, name
    store.close()
    assert len(ran["daily-berlin"]) == 7
    assert len(ran["hourly-berlin"]) == 7 * 24
