"""Real scheduler processes in real time: two racing on one store, SIGKILL mid-run, SIGTERM/SIGINT shutdown."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nb2pipe.runstore import RunStore
from nb2pipe.scheduler import Scheduler, ScheduleStore

from .helpers import add_schedule, read_ledger, tracked_launcher, wait_for

ROOT = Path(__file__).resolve().parents[2]

# A scheduler process running the same Scheduler class as `nb2pipe scheduler`, with a test launcher.
SCHEDULER = """
import sys
from pathlib import Path
from nb2pipe.scheduler import Scheduler
from nb2pipe.scheduler.loop import install_signal_handlers
from tests.scheduler.helpers import ledger_launcher, tracked_launcher
kind, home, ledger = sys.argv[1:4]
launcher = (ledger_launcher if kind == "ledger" else tracked_launcher)(Path(ledger))
scheduler = Scheduler(home, launcher=launcher, interval=0.05)
install_signal_handlers(scheduler)
scheduler.run()
scheduler.stop()
scheduler.close()
"""


def start_scheduler(kind: str, home: Path, ledger: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", SCHEDULER, kind, str(home), str(ledger)], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )


def once_at(seconds_from_now: float) -> str:
    """A six-field cron expression that fires once a day, ``seconds_from_now`` from now (UTC)."""
    t = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return f"{t.minute} {t.hour} * * * {t.second}"


def test_known_failure_two_real_scheduler_processes_on_one_store_run_each_second_once(home: Path, ledger: Path) -> None:
    add_schedule(home, "race", "* * * * * *", now=time.time(), catchup="all", max_concurrent=20)
    procs = [start_scheduler("ledger", home, ledger) for _ in range(2)]
    try:
        wait_for(lambda: len(read_ledger(ledger)) >= 6, timeout=60)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=30) for p in procs]
    assert codes == [0, 0]
    times = [line[1] for line in read_ledger(ledger)]
    assert len(times) == len(set(times))  # no fire ran twice
    store = ScheduleStore.open(home)
    history = list(reversed(store.history(store.get("race").id)))
    seconds = [f["fire_time"] for f in history]
    assert all(b - a == 1 for a, b in itertools.pairwise(seconds))  # no second missed
    launched = [a["run_id"] for f in history for a in f["runs"]]
    assert sorted(launched) == sorted(line[2] for line in read_ledger(ledger))
    assert all(f["attempts"] <= 1 for f in history)
    stopped = store.runs.query("SELECT stopped_at FROM schedulers")
    assert len(stopped) == 2 and all(r[0] is not None for r in stopped)  # both shut down cleanly
    store.close()


def _attempt(home: Path) -> dict[str, object]:
    store = ScheduleStore.open(home)
    try:
        rows = store.runs.query("SELECT * FROM schedule_attempts ORDER BY attempt")
        return dict(rows[0]) if rows else {}
    finally:
        store.close()


def _run_status(home: Path, run_id: object) -> str:
    with RunStore(home) as store:
        return str(store.get_run(str(run_id))["status"])


def test_known_failure_sigkill_mid_run_marks_the_orphan_failed_and_retries_it(home: Path, ledger: Path) -> None:
    add_schedule(home, "k", once_at(2), now=time.time(), retries=1, parameters={"modes": "hang,ok"})
    proc = start_scheduler("tracked", home, ledger)
    try:
        wait_for(lambda: len(read_ledger(ledger)) == 1, timeout=60)  # the run is up and recorded itself
    finally:
        proc.kill()  # SIGKILL: no chance to record anything
        proc.wait(timeout=30)
    first = _attempt(home)
    os.killpg(int(first["pid"]), signal.SIGKILL)  # the run dies with it, as under systemd's KillMode=control-group
    wait_for(lambda: subprocess.run(["ps", "-p", str(first["pid"])], capture_output=True).returncode != 0)
    assert first["status"] == "running" and _run_status(home, first["run_id"]) == "running"  # stuck, for now

    restarted = Scheduler(home, launcher=tracked_launcher(ledger))
    report = restarted.tick()
    assert report.adopted == [first["run_id"]]
    assert report.finished == [(first["run_id"], "failed")]
    assert len(report.launched) == 1  # the retry, per --retries 1
    restarted.drain(timeout=60)
    restarted.stop()
    restarted.close()
    with RunStore(home) as store:
        orphan = store.get_run(str(first["run_id"]))
        assert orphan["status"] == "failed"
        assert orphan["status_detail"] == "killed: the run's process ended without a result"
        assert _run_status(home, report.launched[0]) == "succeeded"
    store2 = ScheduleStore.open(home)
    (fire,) = store2.history(store2.get("k").id)
    store2.close()
    assert (fire["status"], fire["attempts"]) == ("succeeded", 2)
    assert len({line[1] for line in read_ledger(ledger)}) == 1  # both attempts are the same fire


def test_sigkilled_scheduler_whose_run_survived_is_adopted_and_not_run_again(home: Path, ledger: Path) -> None:
    add_schedule(home, "k", once_at(2), now=time.time(), retries=3, parameters={"modes": "slow"})
    proc = start_scheduler("tracked", home, ledger)
    try:
        wait_for(lambda: len(read_ledger(ledger)) == 1, timeout=60)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    first = _attempt(home)
    restarted = Scheduler(home, launcher=tracked_launcher(ledger))
    assert restarted.tick().adopted == [first["run_id"]]
    restarted.drain(timeout=60)
    restarted.stop()
    restarted.close()
    assert _run_status(home, first["run_id"]) == "succeeded"
    assert _attempt(home)["status"] == "succeeded"
    assert len(read_ledger(ledger)) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_nb2pipe_scheduler_logs_to_stderr_and_stops_cleanly_on_signals(home: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nb2pipe", "scheduler", "--home", str(home), "--interval", "0.1"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "watching" in line and str(home) in line
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0
    rest = proc.stderr.read()
    assert f"received {sig.name}, stopping" in rest and "stopped" in rest
    with RunStore(home) as store:
        assert store.query("SELECT stopped_at IS NOT NULL FROM schedulers")[0][0] == 1


def test_a_host_can_run_the_loop_in_a_thread_and_stop_it(home: Path, ledger: Path) -> None:
    """What the Jupyter server extension will do: start(), let it fire in real time, stop()."""
    add_schedule(home, "t", "* * * * * *", now=time.time(), parameters={"modes": "ok"})
    scheduler = Scheduler(home, launcher=tracked_launcher(ledger), interval=0.05)
    scheduler.start()
    assert scheduler.running
    try:
        wait_for(lambda: len(read_ledger(ledger)) >= 2, timeout=60)
    finally:
        scheduler.stop(timeout=30)
    assert not scheduler.running
    scheduler.drain(timeout=60)
    scheduler.close()
    with RunStore(home) as store:
        statuses = {r[0] for r in store.query("SELECT status FROM runs")}
        assert statuses == {"succeeded"}
        assert store.query("SELECT stopped_at IS NOT NULL FROM schedulers")[0][0] == 1
