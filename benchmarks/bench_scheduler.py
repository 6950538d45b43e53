"""How long one scheduler tick takes with 1,000 schedules in the store (target: under 50 ms, runs not counted).

Run it as a plain script from the repository root::

    python benchmarks/bench_scheduler.py

Fills a fresh run store with 1,000 schedules (a mix of minutely, hourly, daily and weekly expressions in several
time zones), then times :meth:`nb2pipe.scheduler.Scheduler.tick` on a fake clock in three situations:

1. ``idle``: nothing is due (the usual tick: one indexed query);
2. ``busy``: the tick at the top of an hour, when every hourly and minutely schedule fires (hundreds of fires
   decided, claimed and started);
3. ``all due``: every one of the 1,000 schedules fires in the same tick.

Starting runs is not counted: the launcher hands back a run that has already ended (its ending is recorded on the
next tick, which is what is timed in ``idle``). Prints a table, writes ``benchmarks/results/scheduler.json``, and
exits 1 when the median ``busy`` tick misses the 50 ms target.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from nb2pipe.scheduler import LaunchRequest, Scheduler, ScheduleStore

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scheduler.json"
TARGET_MS = 50.0
EXPRESSIONS = ["* * * * *", "0 * * * *", "15 * * * *", "30 2 * * *", "0 9 * * 1-5", "*/5 * * * *", "0 0 * * 0"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


class Ended:
    """A run that is already over (the benchmark does not count running it)."""

    pid = None

    def poll(self) -> int | None:
        return 0

    def wait(self, timeout: float | None = None) -> int | None:
        return 0

    def signal(self, sig: int) -> None:
        pass


class NoRun:
    def launch(self, request: LaunchRequest) -> Ended:
        return Ended()


def timed(scheduler: Scheduler) -> tuple[float, int]:
    started = time.perf_counter()
    report = scheduler.tick()
    return (time.perf_counter() - started) * 1000, len(report.launched)


def main() -> int:
    rng = random.Random(0)
    start = datetime(2026, 3, 2, 8, 0, 30, tzinfo=UTC).timestamp()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = ScheduleStore.open(tmp)
        for i in range(1000):
            store.add(
                name=f"s{i:04}",
                kind="job",
                target="nb.ipynb",
                cron=rng.choice(EXPRESSIONS),
                timezone=rng.choice(ZONES),
                parameters={"i": i},
                catchup="latest",
                max_concurrent=1,
                retries=0,
                retry_delay=60,
                timeout=None,
                now=start,
            )
        store.close()
        clock = Clock(start)
        scheduler = Scheduler(tmp, launcher=NoRun(), clock=clock)
        idle, busy = [], []
        for minute in range(1, 11):
            clock.t = start + minute * 60 - 29.5  # hh:mm:01: the minute's fires are due
            busy.append(timed(scheduler))
            clock.t += 0.5
            idle.append(timed(scheduler))  # records the endings; nothing new is due
        # Everything due at once: move every schedule's next fire into the past.
        scheduler.store.runs.query("SELECT 1")
        with scheduler.store.runs.transaction() as db:
            db.execute("UPDATE schedules SET next_fire = ?, cursor = ? - 1", (clock.t, clock.t))
            db.execute("UPDATE schedules SET cron = '* * * * * *'")
        clock.t += 0.5
        all_due = [timed(scheduler)]
        scheduler.stop()
        scheduler.close()
    for name, samples in (("idle", idle), ("busy (top of the minute)", busy), ("all 1,000 due", all_due)):
        times = [ms for ms, _ in samples]
        rows.append(
            {
                "case": name,
                "median_ms": round(statistics.median(times), 2),
                "max_ms": round(max(times), 2),
                "runs_started_per_tick": round(statistics.median([n for _, n in samples]), 1),
            }
        )
    print("| tick | median | max | runs started per tick |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['case']} | {r['median_ms']} ms | {r['max_ms']} ms | {r['runs_started_per_tick']} |")
    ok = rows[1]["median_ms"] < TARGET_MS
    print(f"target: a busy tick under {TARGET_MS:g} ms: {'PASS' if ok else 'FAIL'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"schedules": 1000, "python": platform.python_version(), "ticks": rows}, indent=2) + "\n"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
