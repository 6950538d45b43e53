"""Cron parsing, time zones and daylight saving, checked against wall clocks and croniter's own sequence."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from nb2pipe.scheduler.cron import Cron, CronError, iso_utc, local

BERLIN = ZoneInfo("Europe/Berlin")


def wall(t: float, tz: ZoneInfo = BERLIN) -> str:
    return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M %Z")


def at(*args: int, tz: ZoneInfo = BERLIN) -> float:
    return datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


def test_spring_forward_a_0230_daily_job_runs_once_at_0300() -> None:
    # 2026-03-29: Berlin clocks jump from 02:00 CET to 03:00 CEST; 02:30 does not exist that day.
    times = Cron("30 2 * * *", "Europe/Berlin").fire_times(at(2026, 3, 28), at(2026, 3, 31))
    assert [wall(t) for t in times] == ["2026-03-28 02:30 CET", "2026-03-29 03:00 CEST", "2026-03-30 02:30 CEST"]


def test_fall_back_a_0230_daily_job_runs_once_at_its_first_occurrence() -> None:
    # 2026-10-25: Berlin clocks go back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
    times = Cron("30 2 * * *", "Europe/Berlin").fire_times(at(2026, 10, 24), at(2026, 10, 27))
    assert [wall(t) for t in times] == ["2026-10-24 02:30 CEST", "2026-10-25 02:30 CEST", "2026-10-26 02:30 CET"]


def test_fall_back_an_hourly_job_fires_in_both_copies_of_the_repeated_hour() -> None:
    times = Cron("0 * * * *", "Europe/Berlin").fire_times(at(2026, 10, 25, 1, 30), at(2026, 10, 25, 3, 30))
    assert [wall(t) for t in times] == [
        "2026-10-25 02:00 CEST",
        "2026-10-25 02:00 CET",
        "2026-10-25 03:00 CET",
    ]
    assert times[1] - times[0] == 3600


def test_fall_back_a_fixed_hour_job_fires_once_per_wall_time() -> None:
    times = Cron("*/20 1-3 * * *", "Europe/Berlin").fire_times(at(2026, 10, 25, 1, 50), at(2026, 10, 25, 3, 10))
    assert [wall(t) for t in times] == [
        "2026-10-25 02:00 CEST",
        "2026-10-25 02:20 CEST",
        "2026-10-25 02:40 CEST",
        "2026-10-25 03:00 CET",
    ]


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"])
@pytest.mark.parametrize("expr", ["30 2 * * *", "0 * * * *", "*/20 1-3 * * *", "15 2 * * 0", "0 0 1 * *"])
@pytest.mark.parametrize("month", [3, 4, 10, 11])  # both DST changes, in both hemispheres
def test_restarting_from_any_fire_time_gives_croniters_sequence(expr: str, tz: str, month: int) -> None:
    zone = ZoneInfo(tz)
    start, end = datetime(2026, month, 1, tzinfo=zone), datetime(2026, month + 1, 1, tzinfo=zone)
    it = croniter(expr, start)
    expected = []
    while (t := it.get_next(float)) <= end.timestamp():
        repeated = datetime.fromtimestamp(t, zone).fold == 1
        if not (repeated and expr.split()[1] != "*"):  # documented: fixed-hour jobs fire once when clocks go back
            expected.append(t)
    cron = Cron(expr, tz)
    assert cron.fire_times(start.timestamp(), end.timestamp()) == expected
    # A scheduler restarting from its cursor (the last fire it decided) continues the same sequence.
    for previous, following in itertools.pairwise(expected):
        assert cron.next_after(previous) == following


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("30 2 * *", "has 4 fields"),
        ("61 * * * *", "is not valid"),
        ("every day", "has 2 fields"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_bad_expressions_are_refused_with_the_reason(expr: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        Cron(expr)


def test_unknown_time_zone_suggests_a_close_name() -> None:
    with pytest.raises(CronError, match="did you mean 'Europe/Berlin'"):
        Cron("* * * * *", "Europe/Berln")


def test_six_fields_fire_every_second_and_show_upcoming() -> None:
    cron = Cron("* * * * * */10")
    assert cron.upcoming(at(2026, 1, 1, tz=ZoneInfo("UTC")), 3) == [
        at(2026, 1, 1, 0, 0, s, tz=ZoneInfo("UTC")) for s in (10, 20, 30)
    ]


def test_formatting() -> None:
    t = at(2026, 3, 29, 3, 0)
    assert iso_utc(t) == "2026-03-29T01:00:00Z"
    assert local(t, "Europe/Berlin") == "2026-03-29 03:00:00 CEST"
