"""Sweeps, the kernel pool, the MLflow sink and the Dask executor, with real kernels and real services."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nb2pipe import jobs
from nb2pipe.cli import main
from nb2pipe.jobs.history import process_alive
from nb2pipe.jobs.pool import KernelPool
from nb2pipe.runstore import RunStore
from tests.helpers import make_notebook

pytestmark = pytest.mark.kernel

# Each run proves it got a fresh kernel: a name left by an earlier run in the same kernel would fail the assert.
FRESH = [
    ("n = 1\nlr = 0.1", ["parameters"]),
    (
        "import os, nb2pipe\n"
        "assert 'leftover' not in globals(), 'kernel reused'\n"
        "leftover = n\n"
        "nb2pipe.record('kernel_pid', os.getpid())\n"
        "nb2pipe.record('score', n * lr)",
        [],
    ),
]


def test_sweep_runs_the_grid_in_parallel_each_in_its_own_kernel(tmp_path: Path, capsys: Any) -> None:
    notebook = make_notebook(tmp_path, FRESH, name="grid.ipynb")
    home = tmp_path / "home"
    code = main(
        ["job", "sweep", str(notebook), "-p", "n", "1,2", "-p", "lr", "0.5,1", "--parallel", "2", "--home", str(home)]
    )
    assert code == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    runs = jobs.list(home=home)
    assert sorted((r["parameters"]["n"], r["parameters"]["lr"]) for r in runs) == [
        (1, 0.5),
        (1, 1.0),
        (2, 0.5),
        (2, 1.0),
    ]
    assert all(r["status"] == "succeeded" for r in runs)
    assert sorted(r["metrics"]["score"] for r in runs) == [0.5, 1.0, 1.0, 2.0]
    pids = [r["metrics"]["kernel_pid"] for r in runs]
    assert len(set(pids)) == 4  # four runs, four kernels: none reused
    time.sleep(0.5)
    assert not any(process_alive(p) for p in pids)  # and every one discarded


def test_a_failing_combination_does_not_stop_the_sweep(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path, [("n = 1", ["parameters"]), ("assert n != 2, 'two'", [])])
    results = jobs.sweep(notebook, {"n": [1, 2, 3]}, parallel=2, home=tmp_path / "home")
    assert [(r.parameters["n"], r.status) for r in results] == [(1, "succeeded"), (2, "failed"), (3, "succeeded")]
    assert results[1].error == {"cell": 2, "cell_id": "c1", "name": "AssertionError", "message": "two"}


def test_rerun_of_several_runs_in_parallel_from_a_pool_each_in_its_own_kernel(tmp_path: Path, capsys: Any) -> None:
    notebook = make_notebook(tmp_path, FRESH, name="grid.ipynb")
    home = tmp_path / "home"
    first = jobs.sweep(notebook, {"n": [1, 2, 3]}, parallel=1, pool=False, home=home)
    ids = [r.id for r in first]
    code = main(["job", "rerun", *ids, "--parallel", "2", "--json", "--home", str(home)])
    assert code == 0
    again = json.loads(capsys.readouterr().out)
    assert [r["parameters"] for r in again] == [r.parameters for r in first]  # in the order asked
    assert all(r["status"] == "succeeded" for r in again)
    assert [jobs.show(r["id"], home=home)["rerun_of"] for r in again] == ids
    pids = {r["metrics"]["kernel_pid"] for r in again} | {r.metrics["kernel_pid"] for r in first}
    assert len(pids) == 6  # a fresh kernel for every run
    time.sleep(0.5)
    assert not any(process_alive(p) for p in pids)
    assert main(["job", "rerun", ids[0], "nosuchrun", "--home", str(home)]) == 2  # checked before any starts
    assert "nosuchrun" in capsys.readouterr().err
    assert len(jobs.list(home=home, limit=None)) == 6


def test_the_pool_hands_out_each_kernel_once(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path, FRESH)
    with KernelPool("python3", size=1, cwd=tmp_path) as pool:
        assert pool.acquire("another-kernel") is None  # not this pool's kernel: the run starts its own
        first = jobs.run(notebook, pool=pool, home=tmp_path / "home")
        second = jobs.run(notebook, pool=pool, home=tmp_path / "home")
        assert first.status == second.status == "succeeded", (first, second)
        assert first.metrics["kernel_pid"] != second.metrics["kernel_pid"]
        assert len(set(pool.used)) == len(pool.used) == 2
    time.sleep(0.5)
    assert not process_alive(first.metrics["kernel_pid"])


def test_mlflow_sink_logs_to_a_real_file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    uri = (tmp_path / "mlruns").as_uri()
    notebook = make_notebook(
        tmp_path,
        [
            ("lr = 0.1", ["parameters"]),
            (
                "import os, nb2pipe\nnb2pipe.record('acc', 0.75)\nnb2pipe.record('labels', ['a', 'b'])\n"
                "open(os.path.join(nb2pipe.output_dir(), 'model.txt'), 'w').write('m')",
                [],
            ),
        ],
        name="train.ipynb",
    )
    home = tmp_path / "home"
    assert main(["job", "run", str(notebook), "-p", "lr", "0.5", "--mlflow", uri, "--home", str(home)]) == 0
    (run,) = jobs.list(home=home)
    with RunStore(home) as store:
        mlflow_id = store.get_run(run["id"])["mlflow_run_id"]
    assert mlflow_id
    logged = MlflowClient(tracking_uri=uri).get_run(mlflow_id)
    assert logged.data.params == {"lr": "0.5"}
    assert logged.data.metrics == {"acc": 0.75}
    assert logged.data.tags["nb2pipe.run_id"] == run["id"]
    assert logged.info.status == "FINISHED"
    client = MlflowClient(tracking_uri=uri)
    names = {a.path for a in client.list_artifacts(mlflow_id)}
    assert names == {"train.ipynb", "metrics.json", "outputs"}
    assert [a.path for a in client.list_artifacts(mlflow_id, "outputs")] == ["outputs/model.txt"]
    # Configured once in the environment instead of on every command:
    monkeypatch.setenv("NB2PIPE_MLFLOW", uri)
    again = jobs.run(notebook, home=home)
    with RunStore(home) as store:
        assert store.get_run(again.id)["mlflow_run_id"] not in (None, mlflow_id)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Any:
    pytest.importorskip("distributed")
    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler = subprocess.Popen(
        [*dask, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            address,
            "--nthreads",
            "2",
            "--host",
            "127.0.0.1",
            "--dashboard-address",
            ":0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for proc in (worker, scheduler):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_sweep_on_a_dask_cluster_records_each_run_with_its_worker(tmp_path: Path, dask_cluster: str) -> None:
    notebook = make_notebook(tmp_path, FRESH, name="grid.ipynb")
    home = tmp_path / "home"
    code = main(
        [
            "job",
            "sweep",
            str(notebook),
            "-p",
            "n",
            "1,2,3",
            "--executor",
            "dask",
            "--scheduler",
            dask_cluster,
            "--home",
            str(home),
        ]
    )
    assert code == 0
    with RunStore(home) as store:
        rows = store.query("SELECT status, executor, worker, pid FROM runs ORDER BY created_at")
    assert [r["status"] for r in rows] == ["succeeded"] * 3
    assert {r["executor"] for r in rows} == {"dask"}
    assert all(r["worker"] and r["worker"].startswith("tcp://127.0.0.1:") for r in rows)
    assert all(r["pid"] != os.getpid() for r in rows)  # executed (and recorded) in the worker process
    runs = jobs.list(home=home)
    assert sorted(r["metrics"]["score"] for r in runs) == pytest.approx([0.1, 0.2, 0.3])


def test_ctrl_c_cancels_every_run_of_a_sweep_and_starts_no_more(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path, [("n = 1", ["parameters"]), ("import time\ntime.sleep(120)", [])])
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nb2pipe.cli",
            "job",
            "sweep",
            str(notebook),
            "-p",
            "n",
            "1,2,3,4",
            "--parallel",
            "2",
            "--home",
            str(home),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (home / "runs.sqlite").exists():
                with RunStore(home) as store:
                    running = store.query("SELECT kernel_pid FROM runs WHERE status = 'running' AND kernel_pid > 0")
                if len(running) == 2:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("the sweep did not start two runs")
        time.sleep(1.0)  # both kernels inside their sleeping cell
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    runs = jobs.list(home=home)
    assert [r["status"] for r in runs] == ["cancelled", "cancelled"]  # the other two never started
    assert all(not process_alive(r["kernel_pid"]) for r in (jobs.show(r["id"], home=home) for r in runs))
