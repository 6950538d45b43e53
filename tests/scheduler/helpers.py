"""Real launchers for scheduler tests: each attempt is a real process in its own process group.

- :func:`ledger_launcher`: ``sh`` appends "schedule fire-time run-id" to a ledger file and exits (cheap enough
  for a simulated week of fires); the ledger is the ground truth of what actually ran.
- :func:`tracked_launcher`: a Python child that behaves like ``nb2pipe job run`` will: it records the tracked run
  under ``NB2PIPE_RUN_ID`` in the run store, then succeeds, fails, crashes without an ending, or hangs
  (heartbeating), or takes three seconds, as the schedule's ``modes`` parameter says for that attempt
  (``"fail,ok"``: fail, then succeed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nb2pipe.scheduler import LaunchRequest, ScheduleStore, SubprocessLauncher

CHILD = r"""
import os, sys, time
from nb2pipe.runstore import RunStore
mode = sys.argv[1]
run_id = os.environ["NB2PIPE_RUN_ID"]
store = RunStore(os.environ["NB2PIPE_HOME"])
store.create_run("job", "fake.ipynb", run_id=run_id, status="running", pid=os.getpid(), started_at=time.time())
with open(sys.argv[2], "a") as ledger:
    ledger.write(f"{os.environ['NB2PIPE_SCHEDULE']} {os.environ['NB2PIPE_SCHEDULED_FOR']} {run_id}\n")
if mode == "ok":
    store.finish_run(run_id, "succeeded")
elif mode == "fail":
    store.finish_run(run_id, "failed", error_name="ValueError", error_message="boom")
    sys.exit(1)
elif mode == "crash":
    os._exit(3)
elif mode == "slow":
    for _ in range(15):
        store.heartbeat(run_id)
        time.sleep(0.2)
    store.finish_run(run_id, "succeeded")
elif mode == "hang":
    while True:
        store.heartbeat(run_id)
        time.sleep(0.2)
"""


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def ledger_launcher(ledger: Path) -> SubprocessLauncher:
    def command(request: LaunchRequest) -> Sequence[str]:
        line = '"$NB2PIPE_SCHEDULE" "$NB2PIPE_SCHEDULED_FOR" "$NB2PIPE_RUN_ID"'
        return ["sh", "-c", f'echo {line} >> "{ledger}"']

    return SubprocessLauncher(command)


def tracked_launcher(ledger: Path) -> SubprocessLauncher:
    def command(request: LaunchRequest) -> Sequence[str]:
        modes = str(request.parameters.get("modes", "ok")).split(",")
        mode = modes[min(request.attempt, len(modes)) - 1]
        return [sys.executable, "-c", CHILD, mode, str(ledger)]

    return SubprocessLauncher(command)


def add_schedule(home: Path, name: str, cron: str, *, now: float, tz: str = "UTC", **options: Any) -> None:
    """Add a schedule straight into the store (the CLI path is tested separately)."""
    settings: dict[str, Any] = {
        "kind": "job",
        "target": "fake.ipynb",
        "parameters": {},
        "catchup": "all",
        "max_concurrent": 1,
        "retries": 0,
        "retry_delay": 0.0,
        "timeout": None,
    }
    settings.update(options)
    store = ScheduleStore.open(home)
    try:
        store.add(name=name, cron=cron, timezone=tz, now=now, **settings)
    finally:
        store.close()


def read_ledger(ledger: Path) -> list[tuple[str, str, str]]:
    if not ledger.exists():
        return []
    return [tuple(line.split()) for line in ledger.read_text().splitlines()]  # type: ignore[misc]


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    """Poll a real-world condition (a process started, a row appeared); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
