"""The launcher ties a run the server started to the run store row its command wrote, whichever id that row has."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from nb2pipe.runstore import RunStore
from nb2pipe.server import launcher as launcher_module
from nb2pipe.server.launcher import Launcher
from nb2pipe.server.runs import list_runs, show_run

# A stand-in for a run command: it records a run under an id of its own (ignoring NB2PIPE_RUN_ID), with its pid,
# waits, finishes it, and prints a --json summary naming the id, as `nb2pipe run --json` does.
COMMAND = """
import json, os, sys, time
from nb2pipe.runstore import RunStore
with RunStore() as store:
    run_id = store.create_run("pipeline", sys.argv[1], status="running", pid=os.getpid(), started_at=time.time())
time.sleep(float(sys.argv[2]))
with RunStore() as store:
    store.finish_run(run_id, "succeeded")
print(json.dumps({"run_id": run_id, "status": "succeeded"}))
"""


@pytest.fixture
def own_id_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def argv(kind: str, target: str, parameters: dict[str, object]) -> list[str]:
        return [sys.executable, "-c", COMMAND, target, str(parameters.get("sleep", 1.5))]

    monkeypatch.setattr(launcher_module, "cli_argv", argv)


def wait_until(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_run_recorded_under_its_own_id_is_found_by_pid_then_by_summary(tmp_path: Path, own_id_command: None):
    home = tmp_path / ".nb2pipe"
    RunStore(home).close()
    launcher = Launcher(tmp_path, home)
    launch = launcher.start("pipeline", "demo.ipynb", {"sleep": 1.5})
    with RunStore(home) as store:
        wait_until(lambda: store.query("SELECT 1 FROM runs"))
        (run,) = list_runs(store, launcher)  # one row, not the launch and the row side by side
        assert run["id"] != launch.id and run["launch_id"] == launch.id and run["status"] == "running"
        shown = show_run(store, launcher, launch.id)
        assert shown is not None and shown["id"] == run["id"]
        wait_until(lambda: launch.returncode() is not None)
        assert launch.summary_id() == run["id"]
        (done,) = list_runs(store, launcher, target="demo.ipynb")
        assert done["status"] == "succeeded" and done["exit_code"] == 0


def test_a_command_that_fails_before_recording_is_listed_with_its_error(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(
        launcher_module, "cli_argv", lambda *a: [sys.executable, "-c", "import sys; sys.exit('no such command')"]
    )
    launcher = Launcher(tmp_path, tmp_path / ".nb2pipe")
    launch = launcher.start("job", "demo.ipynb", {})
    wait_until(lambda: launch.returncode() is not None)
    (run,) = list_runs(None, launcher)
    assert run["id"] == launch.id and run["status"] == "failed" and "no such command" in run["stderr"]
    assert launcher.cancel(launch.id) is False


def test_cancel_stops_the_process_group(tmp_path: Path, own_id_command: None):
    launcher = Launcher(tmp_path, tmp_path / ".nb2pipe")
    launch = launcher.start("pipeline", "demo.ipynb", {"sleep": 60})
    assert launcher.cancel(launch.id) is True
    wait_until(lambda: launch.returncode() is not None, timeout=10)
    assert launch.as_json()["status"] == "failed"
