"""Tracked notebook jobs with real kernels, a real SQLite store and real job processes.

Every ending is checked twice: in the run store and in the saved output notebook, which must agree.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nb2pipe import jobs
from nb2pipe.cli import main
from nb2pipe.errors import NotebookFormatError, ParameterError
from nb2pipe.jobs.execute import JobError
from nb2pipe.jobs.history import process_alive
from nb2pipe.runstore import RunStore
from tests.helpers import make_notebook

pytestmark = pytest.mark.kernel

NB2PIPE = [sys.executable, "-m", "nb2pipe.cli"]

TRAIN = [
    ("n = 2\nlr: float = 0.1\nname = 'model'", ["parameters"]),
    (
        "import os, nb2pipe\n"
        "nb2pipe.record('acc', n * lr)\n"
        "nb2pipe.glue('label', name)\n"
        "with open(os.path.join(nb2pipe.output_dir(), 'model.txt'), 'w') as f:\n"
        "    f.write(name * n)",
        [],
    ),
    ("print(type(n).__name__, type(lr).__name__, name)", []),
]


def _store_runs(home: Path) -> list[dict[str, Any]]:
    with RunStore(home) as store:
        return [dict(r) for r in store.query("SELECT * FROM runs ORDER BY created_at")]


def _saved(result_or_path: Any) -> Any:
    path = getattr(result_or_path, "notebook", result_or_path)
    return nbformat.read(path, as_version=4)


def _statuses(nb: Any) -> list[str]:
    return [c.metadata.get("papermill", {}).get("status") for c in nb.cells]


def _wait_for(predicate: Callable[[], Any], what: str, limit: float = 60.0) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_successful_run_records_provenance_metrics_and_artifacts(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path, TRAIN, name="train.ipynb")
    home = tmp_path / "home"
    result = jobs.run(notebook, {"n": 3}, pairs=[("lr", "1"), ("name", "it's")], home=home)
    assert result.status == "succeeded" and result.exit_code == 0
    assert result.parameters == {"n": 3, "lr": 1.0, "name": "it's"}
    assert result.metrics == {"acc": 3.0, "label": "it's"}
    run = jobs.show(result.id, home=home)
    assert run["target"] == str(notebook.absolute())
    assert run["target_hash"] == __import__("hashlib").sha256(notebook.read_bytes()).hexdigest()
    assert run["kernel"] == "python3" and run["executor"] == "local"
    assert run["host"] and run["user"] and run["pid"] == os.getpid()
    assert run["started_at"] <= run["ended_at"] and run["duration"] >= 0
    assert run["git_commit"] is None  # tmp_path is not in a git repository
    assert run["environment"]["python"] == sys.version.split()[0]
    assert any(p.lower().startswith("nbclient==") for p in run["environment"]["packages"])
    model = result.run_dir / "outputs" / "model.txt"
    assert model.read_text() == "it'sit'sit's"
    digest = __import__("hashlib").sha256(model.read_bytes()).hexdigest()
    assert run["artifacts"] == [{"path": "outputs/model.txt", "sha256": digest, "size": 12}]
    nb = _saved(result)
    assert nb.metadata.nb2pipe["status"] == "succeeded"
    assert "injected-parameters" in nb.cells[1].metadata.tags
    assert _statuses(nb) == ["completed"] * 4
    assert nb.cells[3].outputs[0]["text"] == "int float it's\n"  # typed values reached the kernel
    # A second run in the same environment stores the environment once.
    again = jobs.run(notebook, home=home)
    with RunStore(home) as store:
        assert store.query("SELECT count(*) FROM environments")[0][0] == 1
    assert jobs.show(again.id, home=home)["parameters"] == {}


def test_a_failing_cell_is_named_and_later_cells_stay_pending(tmp_path: Path, capsys: Any) -> None:
    notebook = make_notebook(
        tmp_path,
        [
            ("n = 1", ["parameters"]),
            ("import nb2pipe; nb2pipe.record('before', 1)", []),
            ("raise ValueError(f'bad {n}')", []),
            ("x = 1", []),
        ],
    )
    home = tmp_path / "home"
    code = main(["job", "run", str(notebook), "-p", "n", "7", "--home", str(home)])
    assert code == 1
    assert "failed at cell 3 (id c2): ValueError: bad 7" in capsys.readouterr().err
    (run,) = _store_runs(home)
    assert (run["status"], run["error_cell"], run["error_cell_id"], run["error_name"], run["error_message"]) == (
        "failed",
        3,
        "c2",
        "ValueError",
        "bad 7",
    )
    nb = _saved(Path(run["run_dir"]) / "nb.ipynb")
    assert nb.metadata.nb2pipe["status"] == "failed"
    assert nb.metadata.nb2pipe["error"]["cell"] == 3
    assert _statuses(nb) == ["completed", "completed", "completed", "failed", "pending"]
    assert jobs.show(run["id"], home=home)["metrics"] == {"before": 1}


def test_whole_run_and_per_cell_timeouts_end_timed_out(tmp_path: Path) -> None:
    notebook = make_notebook(
        tmp_path, [("t = 60", ["parameters"]), ("import time\ntime.sleep(t)", []), ("print('after')", [])]
    )
    home = tmp_path / "home"
    whole = jobs.run(notebook, home=home, timeout=4)
    cell = jobs.run(notebook, home=home, cell_timeout=1)
    for result, limit in (
        (whole, "the run exceeded its timeout of 4 s"),
        (cell, "the cell exceeded its timeout of 1 s"),
    ):
        assert result.status == "timed-out" and result.exit_code == 124
        assert result.detail == limit
        assert result.error is not None and result.error["cell"] == 2
        nb = _saved(result)
        assert nb.metadata.nb2pipe["status"] == "timed-out"
        assert _statuses(nb) == ["completed", "failed", "pending"]  # papermill would say all "completed"


def test_a_dead_kernel_is_reported_as_such(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path, [("import os\nos._exit(3)", []), ("print('after')", [])])
    result = jobs.run(notebook, home=tmp_path / "home")
    assert (result.status, result.detail, result.exit_code) == ("failed", "kernel died", 1)
    assert _statuses(_saved(result)) == ["failed", "pending"]


def test_an_unknown_kernel_is_recorded_as_never_started(tmp_path: Path, capsys: Any) -> None:
    notebook = make_notebook(tmp_path, [("print('hi')", [])])
    home = tmp_path / "home"
    assert main(["job", "run", str(notebook), "--kernel", "no-such-kernel", "--home", str(home)]) == 2
    assert "never started: no such kernel 'no-such-kernel'" in capsys.readouterr().err
    (run,) = _store_runs(home)
    assert run["status"] == "failed" and run["status_detail"].startswith("never started")
    nb = _saved(Path(run["run_dir"]) / "nb.ipynb")
    assert nb.metadata.nb2pipe["status"] == "failed"
    assert nb.metadata.nb2pipe["status_detail"] == run["status_detail"]
    assert nb.cells[0].outputs == [] and nb.cells[0].execution_count is None


def test_bad_input_is_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path, [("depth = 1", ["parameters"]), ("depth", [])])
    no_params = make_notebook(tmp_path, [("n = 1", [])], name="plain.ipynb")
    corrupt = tmp_path / "corrupt.ipynb"
    corrupt.write_text('{"cells": [', encoding="utf-8")
    home = tmp_path / "home"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(NotebookFormatError, match="no such file"):
        jobs.run(tmp_path / "missing.ipynb", home=home)
    with pytest.raises(NotebookFormatError, match="not valid JSON"):
        jobs.run(corrupt, home=home)
    with pytest.raises(ParameterError, match="unknown parameter 'deph'; did you mean 'depth'"):
        jobs.run(notebook, pairs=[("deph", "2")], home=home)
    with pytest.raises(ParameterError, match="'x' is not a int"):
        jobs.run(notebook, pairs=[("depth", "x")], home=home)
    with pytest.raises(ParameterError, match="no cell tagged 'parameters'"):
        jobs.run(no_params, {"n": 2}, home=home)
    with pytest.raises(JobError, match="cannot create the run folder"):
        jobs.run(notebook, home=home, runs_dir=blocker / "runs")
    assert _store_runs(home) == [] if (home / "runs.sqlite").exists() else True
    assert not (home / "runs").exists() or list((home / "runs").iterdir()) == []


SLOW = [("t = 120", ["parameters"]), ("import time\nprint('started', flush=True)\ntime.sleep(t)", []), ("x = 1", [])]


_STARTED: list[tuple[subprocess.Popen[str], Path]] = []


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Any:
    """Whatever a failing test leaves running (job processes, their kernels) is killed at teardown."""
    yield
    while _STARTED:
        proc, home = _STARTED.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for run in _store_runs(home) if (home / "runs.sqlite").exists() else []:
            if run["kernel_pid"] and process_alive(run["kernel_pid"], run["created_at"]):
                os.killpg(run["kernel_pid"], signal.SIGKILL)


def _start_job(tmp_path: Path, home: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    notebook = make_notebook(tmp_path, SLOW, name="slow.ipynb")
    proc = subprocess.Popen(
        [*NB2PIPE, "job", "run", str(notebook), "--home", str(home), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # like a job started from its own terminal
        env={**os.environ, **(env or {})},
    )
    _STARTED.append((proc, home))
    return proc


def _running_with_kernel(home: Path) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        if not (home / "runs.sqlite").exists():
            return None
        runs = _store_runs(home)
        if not runs or not runs[0]["kernel_pid"]:
            return None
        nb_path = Path(runs[0]["run_dir"]) / "slow.ipynb"
        try:  # wait until the sleeping cell runs
            return runs[0] if _statuses(_saved(nb_path))[1] == "running" else None
        except (OSError, ValueError, IndexError, KeyError):
            return None

    run: dict[str, Any] = _wait_for(ready, "the job to run its slow cell")
    return run


def test_sigkill_of_the_job_process_is_marked_failed_by_the_next_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = _start_job(tmp_path, home)
    run = _running_with_kernel(home)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    listed = subprocess.run([*NB2PIPE, "job", "list", "--json", "--home", str(home)], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["status"] == "failed"
    assert entry["status_detail"].startswith("killed")
    _wait_for(lambda: not process_alive(run["kernel_pid"]), "the orphaned kernel to be killed", 10)
    nb = _saved(Path(run["run_dir"]) / "slow.ipynb")
    assert nb.metadata.nb2pipe["status"] == "failed"
    assert _statuses(nb)[1] == "failed"


@pytest.mark.parametrize("how", ["job cancel", "SIGINT"])
def test_cancel_stops_the_job_and_its_kernel(tmp_path: Path, how: str) -> None:
    home = tmp_path / "home"
    proc = _start_job(tmp_path, home)
    run = _running_with_kernel(home)
    if how == "job cancel":
        out = subprocess.run(
            [*NB2PIPE, "job", "cancel", run["id"][:17], "--home", str(home)], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert "cancelled" in out.stdout
    else:
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C in the job's terminal
    assert proc.wait(timeout=60) == 130
    (after,) = _store_runs(home)
    assert after["status"] == "cancelled"
    assert after["status_detail"] == ("cancelled: SIGTERM" if how == "job cancel" else "cancelled: SIGINT")
    assert not process_alive(run["kernel_pid"])
    nb = _saved(Path(run["run_dir"]) / "slow.ipynb")
    assert nb.metadata.nb2pipe["status"] == "cancelled"
    assert _statuses(nb) == ["completed", "failed", "pending"]


def test_a_cancel_request_in_the_store_reaches_a_job_it_cannot_signal(tmp_path: Path) -> None:
    # As from another host: only the store is shared, so the job's heartbeat must notice the request.
    home = tmp_path / "home"
    proc = _start_job(tmp_path, home, env={"NB2PIPE_HEARTBEAT_SECONDS": "0.2"})
    run = _running_with_kernel(home)
    with RunStore(home) as store:
        store.update_run(run["id"], cancel_requested=1)
    assert proc.wait(timeout=60) == 130
    (after,) = _store_runs(home)
    assert after["status"] == "cancelled"
    assert after["status_detail"] == "cancelled: requested with 'nb2pipe job cancel'"
    assert after["heartbeat_at"] > after["created_at"]


def test_concurrent_job_processes_lose_no_record(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path, [("i = 0", ["parameters"]), ("import nb2pipe; nb2pipe.record('i', i)", [])])
    home = tmp_path / "home"
    procs = [
        subprocess.Popen(
            [*NB2PIPE, "job", "run", str(notebook), "-p", "i", str(i), "--home", str(home)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0], [p.stderr.read() for p in procs if p.stderr]
    runs = jobs.list(home=home)
    assert sorted(r["metrics"]["i"] for r in runs) == [0, 1, 2, 3]
    assert all(r["status"] == "succeeded" for r in runs)


def test_history_commands(tmp_path: Path, capsys: Any) -> None:
    notebook = make_notebook(
        tmp_path, [("lr = 0.1", ["parameters"]), ("import nb2pipe; nb2pipe.record('acc', lr * 2)", [])]
    )
    home = tmp_path / "home"
    h = ["--home", str(home)]
    assert main(["job", "run", str(notebook), "-p", "lr", "0.5", "--json", "--html", *h]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["metrics"] == {"acc": 1.0}
    assert "acc" in Path(first["notebook"]).with_suffix(".html").read_text()
    assert main(["job", "rerun", first["id"], "--json", *h]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["parameters"] == {"lr": 0.5} and second["id"] != first["id"]
    assert jobs.show(second["id"], home=home)["rerun_of"] == first["id"]
    third = jobs.run(notebook, home=home)
    assert main(["job", "list", "-p", "lr", "0.5", "--json", *h]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [second["id"], first["id"]]
    assert main(["job", "compare", first["id"], third.id, *h]) == 0
    table = capsys.readouterr().out
    assert "* lr" in table and "* acc" in table
    assert main(["job", "show", third.id, *h]) == 0
    assert "acc = 0.2" in capsys.readouterr().out
    assert main(["job", "open", third.id, *h]) == 0
    assert Path(capsys.readouterr().out.strip()).is_file()
    assert main(["job", "open", third.id, "--json", *h]) == 0
    assert json.loads(capsys.readouterr().out)["notebook"] == str(third.notebook)
    assert main(["job", "rm", first["id"], "--json", *h]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == first["id"]
    assert main(["job", "list", "--json", *h]) == 0
    assert first["id"] not in [r["id"] for r in json.loads(capsys.readouterr().out)]
    assert main(["job", "show", "nope", *h]) == 2
    assert "matches no run" in capsys.readouterr().err


def test_papermill_itself_finds_the_engine(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path, [("import time; time.sleep(30)", []), ("x = 1", [])])
    out = tmp_path / "out.ipynb"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            "--engine",
            "nb2pipe",
            "-k",
            "python3",
            str(notebook),
            str(out),
            "--execution-timeout",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1  # papermill ran our engine (found through its entry point)...
    assert "timed-out: the cell exceeded its timeout of 1 s" in proc.stderr
    assert _statuses(_saved(out)) == ["failed", "pending"]  # ...and the timed-out notebook says so


def test_a_full_disk_while_saving_the_notebook_is_a_clear_failure(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes every write past 1 MB fail with EFBIG, as a full disk fails with ENOSPC.
    notebook = make_notebook(tmp_path, [("print('x' * 3_000_000)", []), ("y = 1", [])])
    home = tmp_path / "home"
    RunStore(home).close()

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    proc = subprocess.run(
        [*NB2PIPE, "job", "run", str(notebook), "--home", str(home)],
        capture_output=True,
        text=True,
        preexec_fn=small_disk,
    )
    assert proc.returncode == 1, proc.stderr
    (run,) = _store_runs(home)
    assert run["status"] == "failed"
    assert run["status_detail"].startswith("cannot write the executed notebook")
    assert "File too large" in run["status_detail"]
    assert run["ended_at"] is not None
    assert [p.name for p in Path(run["run_dir"]).iterdir() if p.name.endswith(".tmp")] == []


def test_a_queued_run_starts_once_and_never_after_a_cancel(tmp_path: Path) -> None:
    # What a scheduler does: record the run as queued, start it later (maybe from another process).
    notebook = make_notebook(tmp_path, [("n = 1", ["parameters"]), ("import nb2pipe; nb2pipe.record('n', n)", [])])
    home = tmp_path / "home"
    with RunStore(home) as store:
        queued = store.create_run("job", str(notebook), parameters={"n": 2}, status="queued")
        doomed = store.create_run("job", str(notebook), parameters={"n": 3}, status="queued")
        jobs.cancel(doomed, home=home)
    result = jobs.run(notebook, {"n": 2}, home=home, queued_run=queued)
    assert (result.id, result.status, result.metrics) == (queued, "succeeded", {"n": 2})
    with pytest.raises(JobError, match="is succeeded, not queued"):
        jobs.run(notebook, home=home, queued_run=queued)
    skipped = jobs.run(notebook, {"n": 3}, home=home, queued_run=doomed)
    assert (skipped.status, skipped.detail) == ("cancelled", "cancelled before it started")
    assert not skipped.notebook.exists()  # nothing ran
    assert len(_store_runs(home)) == 2


def test_the_run_path_imports_no_server_stack(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path, [("x = 1", [])])
    code = (
        "import sys; from nb2pipe import jobs; "
        f"r = jobs.run({str(notebook)!r}, home={str(tmp_path / 'home')!r}); assert r.status == 'succeeded'; "
        "print([m for m in ('jupyter_server', 'notebook', 'nbconvert', 'mlflow', 'distributed') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_ctrl_c_through_the_python_api_is_recorded_and_raised(tmp_path: Path) -> None:
    home = tmp_path / "home"
    notebook = make_notebook(tmp_path, SLOW, name="slow.ipynb")
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from nb2pipe import jobs\n"
        "try:\n"
        f"    jobs.run({str(notebook)!r}, home={str(home)!r}, handle_signals=False)\n"
        "except KeyboardInterrupt:\n"
        "    print('KeyboardInterrupt')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    _STARTED.append((proc, home))
    run = _running_with_kernel(home)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.communicate(timeout=60)[0].strip() == "KeyboardInterrupt"
    (after,) = _store_runs(home)
    assert (after["status"], after["status_detail"]) == ("cancelled", "cancelled: KeyboardInterrupt")
    assert not process_alive(run["kernel_pid"])
    assert _saved(Path(run["run_dir"]) / "slow.ipynb").metadata.nb2pipe["status"] == "cancelled"


def test_a_full_disk_for_the_store_is_a_clear_error_with_nothing_recorded(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path, [("x = 1", [])])
    home = tmp_path / "home"
    RunStore(home).close()

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    proc = subprocess.run(
        [*NB2PIPE, "job", "run", str(notebook), "--home", str(home)],
        capture_output=True,
        text=True,
        preexec_fn=full_disk,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("nb2pipe: error: ") and "run store" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert _store_runs(home) == []
    assert list((home / "runs").iterdir()) == [] if (home / "runs").exists() else True


def test_a_kernel_that_does_not_start_leaves_every_cell_pending(tmp_path: Path, monkeypatch: Any) -> None:
    spec = tmp_path / "share" / "kernels" / "broken"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-c", "import sys; sys.exit(3)", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "broken", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share"))
    notebook = make_notebook(tmp_path, [("x = 1", []), ("y = 2", [])])
    result = jobs.run(notebook, kernel="broken", home=tmp_path / "home")
    assert result.status == "failed" and result.exit_code == 2
    assert result.detail is not None and result.detail.startswith("never started: the kernel did not start")
    nb = _saved(result)
    assert nb.metadata.nb2pipe["status_detail"] == result.detail
    assert _statuses(nb) == ["pending", "pending"]  # papermill would mark them "completed"
