"""Warm scheduled runs: a real scheduler, real standby processes with real kernels, a real SQLite store.

The scheduler's clock is a fake one (fires come when the test says), but everything else is real: the standby is
``python -m nb2pipe.jobs.standby`` with a started kernel, the run it is handed is ``nb2pipe job run`` executing the
notebook, and the endings are read back from the store.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nb2pipe import jobs
from nb2pipe.jobs.history import KILLED, process_alive
from nb2pipe.runstore import RunStore
from nb2pipe.scheduler import Scheduler, ScheduleStore
from nb2pipe.scheduler.standby import Standby, Standbys
from tests.helpers import make_notebook

from .helpers import FakeClock, add_schedule, wait_for

pytestmark = pytest.mark.kernel

#: 01:00:00 UTC, the first fire of an hourly schedule added at the fake clock's start (00:00:30).
FIRE = datetime(2026, 1, 5, 1, 0, 0, tzinfo=UTC).timestamp()
RECORD_FIRE = "import os, nb2pipe\nnb2pipe.record('fire', os.environ.get('NB2PIPE_SCHEDULED_FOR'))\nprint(n * 2)"


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return make_notebook(tmp_path, [("n = 3", ["parameters"]), (RECORD_FIRE, [])], name="nightly.ipynb")


@pytest.fixture
def scheduler(home: Path, clock: FakeClock) -> Iterator[Scheduler]:
    scheduler = Scheduler(home, clock=clock, standbys=2, warm_ahead=60)
    yield scheduler
    scheduler.stop()
    scheduler.drain(timeout=60)
    scheduler.close()


def standbys(scheduler: Scheduler) -> Standbys:
    pool = scheduler.launcher.standbys  # type: ignore[attr-defined]
    assert isinstance(pool, Standbys)
    return pool


def ready_standby(scheduler: Scheduler) -> Standby:
    """Tick until the scheduler keeps a standby, then wait (real time) until its kernel is ready."""
    scheduler.tick()
    pool = standbys(scheduler)
    assert len(pool.waiting) == 1
    standby = pool.waiting[0]
    wait_for(lambda: standby.refresh() == "ready", timeout=120)
    assert standby.kernel_pid is not None and process_alive(standby.kernel_pid)
    return standby


def warm_before_first_fire(scheduler: Scheduler, clock: FakeClock, notebook: Path, n: int) -> Standby:
    """An hourly schedule of ``notebook``, 30 s before its first fire, with its standby ready."""
    add_schedule(scheduler.home, "nightly", "0 * * * *", now=clock.now(), target=str(notebook), parameters={"n": n})
    clock.t = FIRE - 30
    return ready_standby(scheduler)


def fire(scheduler: Scheduler, clock: FakeClock, at: float) -> str:
    clock.t = at
    report = scheduler.tick()
    assert len(report.launched) == 1
    return report.launched[0]


def run_row(home: Path, run_id: str) -> dict[str, Any]:
    """The run as recorded ({} before its job process recorded it)."""
    with RunStore(home) as store:
        rows = store.query("SELECT id FROM runs WHERE id = ?", (run_id,))
        return dict(store.get_run(run_id)) if rows else {}


def test_a_warm_scheduled_run_is_recorded_exactly_like_a_cold_one(
    home: Path, clock: FakeClock, notebook: Path, scheduler: Scheduler
) -> None:
    standby = warm_before_first_fire(scheduler, clock, notebook, 21)
    warm_id = fire(scheduler, clock, FIRE)
    assert standbys(scheduler).handed == 1 and not standbys(scheduler).waiting  # 02:00 is not within 60 s
    scheduler.drain(timeout=120)
    cold_id = scheduler.run_now("nightly")  # no standby is waiting: this one starts cold
    assert cold_id is not None and standbys(scheduler).handed == 1
    scheduler.drain(timeout=120)

    warm, cold = run_row(home, warm_id), run_row(home, cold_id)
    assert warm["pid"] == standby.pid and warm["pgid"] == standby.pid  # the standby became the job process
    assert warm["kernel_pid"] == standby.kernel_pid  # and ran the notebook in the kernel it had started
    assert cold["pid"] == cold["pgid"] and cold["pid"] != standby.pid
    for run in (warm, cold):
        assert run["status"] == "succeeded" and run["schedule"] == "nightly"
        assert run["parameters"] == {"n": 21} and run["metrics"]["fire"] == run["scheduled_for"]
    assert warm["scheduled_for"] == "2026-01-05T01:00:00Z"
    same = ("kind", "target", "target_hash", "kernel", "executor", "host", "user", "git_commit", "environment_id")
    assert {k: warm[k] for k in same} == {k: cold[k] for k in same}
    assert {k for k, v in warm.items() if v is None} == {k for k, v in cold.items() if v is None}
    store = ScheduleStore.open(home)
    history = store.history(store.get("nightly").id)
    store.close()
    assert {(f["trigger"], f["status"], f["runs"][0]["run_id"]) for f in history} == {
        ("cron", "succeeded", warm_id),
        ("manual", "succeeded", cold_id),
    }
    log = home / "schedules" / "logs" / f"{warm_id}.log"
    assert f'"id": "{warm_id}"' in log.read_text()  # the run's --json output, in the run's own log
    assert not list(log.parent.glob("standby-*.log"))  # the standby's log became the run's
    wait_for(lambda: not process_alive(standby.kernel_pid))  # used for one run, then discarded


def slow_warm_run(scheduler: Scheduler, clock: FakeClock, tmp_path: Path) -> tuple[Standby, str]:
    """A notebook that sleeps, fired into a ready standby, running in the standby's kernel."""
    nb = make_notebook(tmp_path, [("n = 3", ["parameters"]), ("import time\ntime.sleep(300)", [])], name="slow.ipynb")
    standby = warm_before_first_fire(scheduler, clock, nb, 3)
    run_id = fire(scheduler, clock, FIRE)
    wait_for(lambda: run_row(scheduler.home, run_id).get("kernel_pid") == standby.kernel_pid)
    assert run_row(scheduler.home, run_id)["status"] == "running"
    clock.t = FIRE + 5
    return standby, run_id


def test_cancelling_a_warm_scheduled_run_kills_its_kernel(
    home: Path, clock: FakeClock, tmp_path: Path, scheduler: Scheduler
) -> None:
    standby, run_id = slow_warm_run(scheduler, clock, tmp_path)
    cancelled = jobs.cancel(run_id, home=home, grace=20)
    assert cancelled["status"] == "cancelled"
    assert cancelled["status_detail"].startswith(("cancelled: requested with 'nb2pipe job cancel'", "cancelled: SIG"))
    wait_for(lambda: not process_alive(standby.kernel_pid), timeout=30)
    wait_for(lambda: standby.process.poll() is not None, timeout=30)
    assert scheduler.tick().finished == [(run_id, "cancelled")]


def test_a_warm_run_whose_process_is_killed_is_found_and_marked_failed(
    home: Path, clock: FakeClock, tmp_path: Path, scheduler: Scheduler
) -> None:
    standby, run_id = slow_warm_run(scheduler, clock, tmp_path)
    os.kill(standby.pid, signal.SIGKILL)  # the job process only: its kernel is left behind
    wait_for(lambda: standby.process.poll() is not None)
    jobs.list(home=home)  # any job command reaps
    run = run_row(home, run_id)
    assert (run["status"], run["status_detail"]) == ("failed", KILLED)
    wait_for(lambda: not process_alive(standby.kernel_pid), timeout=30)
    assert scheduler.tick().finished == [(run_id, "failed")]


def test_a_standby_that_dies_is_replaced_and_the_fire_still_runs(
    home: Path, clock: FakeClock, notebook: Path, scheduler: Scheduler
) -> None:
    first = warm_before_first_fire(scheduler, clock, notebook, 1)
    os.killpg(first.pid, signal.SIGKILL)
    wait_for(lambda: not process_alive(first.kernel_pid), timeout=30)  # its kernel follows it, none is leaked
    clock.t = FIRE - 20
    scheduler.tick()  # the dead standby is noticed and replaced
    pool = standbys(scheduler)
    assert pool.started == 2 and len(pool.waiting) == 1 and pool.waiting[0].pid != first.pid
    second = pool.waiting[0]
    wait_for(lambda: second.refresh() == "ready", timeout=120)
    run_id = fire(scheduler, clock, FIRE)
    scheduler.drain(timeout=120)
    run = run_row(home, run_id)
    assert run["status"] == "succeeded" and run["pid"] == second.pid

    # The standby for the next fire dies just before it: no time to replace it, the run starts cold.
    clock.t = FIRE + 3600 - 30
    third = ready_standby(scheduler)
    os.killpg(third.pid, signal.SIGKILL)
    wait_for(lambda: third.process.poll() is not None)
    run_id = fire(scheduler, clock, FIRE + 3600)
    scheduler.drain(timeout=120)
    run = run_row(home, run_id)
    assert run["status"] == "succeeded" and run["pid"] not in (first.pid, second.pid, third.pid)
    assert run["metrics"]["fire"] == "2026-01-05T02:00:00Z"
    assert pool.handed == 1


def test_a_run_handed_to_a_standby_still_warming_waits_for_it_and_succeeds(home: Path, notebook: Path) -> None:
    pool = Standbys(1)
    pool.want({"python3": 1}, home / "schedules" / "logs")
    standby = pool.take("python3")
    assert standby is not None and standby.state == "warming"
    env = {**os.environ, "NB2PIPE_HOME": str(home), "NB2PIPE_RUN_ID": "20260105-010000-aaaaaa",
           "NB2PIPE_SCHEDULE": "nightly", "NB2PIPE_SCHEDULED_FOR": "2026-01-05T01:00:00Z"}  # fmt: skip
    log = home / "schedules" / "logs" / "handed.log"
    assert standby.hand_over(["job", "run", str(notebook), "-p", "n", "4"], env, log)
    assert standby.process.wait(timeout=120) == 0, log.read_text()
    run = run_row(home, "20260105-010000-aaaaaa")
    assert run["status"] == "succeeded" and run["pid"] == standby.pid
    assert run["metrics"]["fire"] == run["scheduled_for"] == "2026-01-05T01:00:00Z"
    assert "run 20260105-010000-aaaaaa succeeded" in log.read_text()
    pool.close()


def test_a_standby_whose_kernel_dies_says_so_and_is_replaced(home: Path) -> None:
    pool = Standbys(1)
    logs = home / "schedules" / "logs"
    pool.want({"python3": 1}, logs)
    (first,) = pool.waiting
    wait_for(lambda: first.refresh() == "ready", timeout=120)
    assert first.kernel_pid is not None
    os.killpg(first.kernel_pid, signal.SIGKILL)  # the kernel only
    wait_for(lambda: first.refresh() == "dead", timeout=30)
    pool.want({"python3": 1}, logs)
    (second,) = pool.waiting
    assert second.pid != first.pid and pool.started == 2
    wait_for(lambda: first.process.poll() is not None, timeout=30)
    pool.close()  # ends the waiting one too
    wait_for(lambda: second.process.poll() is not None, timeout=30)


def test_the_jupyter_server_host_fires_warm_runs_too(home: Path, notebook: Path) -> None:
    """The server extension hosts the same Scheduler (real clock): a seconds-level fire goes to a standby."""
    from nb2pipe.server.scheduling import SchedulerHost

    at = datetime.now(UTC).timestamp() + 20
    moment = datetime.fromtimestamp(at, UTC)
    add_schedule(home, "soon", f"{moment.minute} {moment.hour} * * * {moment.second}", now=time.time(),
                 target=str(notebook))  # fmt: skip
    host = SchedulerHost(home)
    assert host.ensure_started()
    try:
        scheduler = host.scheduler
        wait_for(lambda: standbys(scheduler).handed == 1, timeout=120)
        wait_for(lambda: _statuses(home) == ["succeeded"], timeout=120)
    finally:
        host.stop()
    with RunStore(home) as store:
        (run,) = store.query("SELECT pid, schedule FROM runs")
    assert run["schedule"] == "soon"


def _statuses(home: Path) -> list[str]:
    with RunStore(home) as store:
        return [r[0] for r in store.query("SELECT status FROM runs")]
