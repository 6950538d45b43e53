"""The Dask executor against a real scheduler and real workers, started as separate processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nb2pipe.runner.executors import ExecutorError
from tests.helpers import make_notebook
from tests.runner.conftest import EXAMPLES, run, statuses

DASK = Path(sys.executable).with_name("dask")


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a scheduler with two single-threaded workers, each its own process."""
    tmp = tmp_path_factory.mktemp("dask")
    info = tmp / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [
        subprocess.Popen(
            [
                str(DASK),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(info),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [str(DASK), "worker", address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
            )
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_example_on_a_real_cluster_matches_the_local_runner(tmp_path: Path, scheduler: str) -> None:
    nb = tmp_path / "classification.ipynb"
    shutil.copy(EXAMPLES / "classification.ipynb", nb)
    local = run(nb, tmp_path / "local")
    remote = run(nb, tmp_path / "dask", executor="dask", executor_options={"scheduler": scheduler})
    assert remote.status == "succeeded", [o.failure for o in remote.stages]
    assert remote.executor == "dask"
    assert {o.status for o in remote.stages} == {"ran"}
    # Same values, bit for bit: every output's content hash is the one the local runner computed.
    assert [o.outputs for o in remote.stages] == [o.outputs for o in local.stages]
    assert "accuracy = " in remote.stages[-1].stdout
    # A second run on the cluster is served from the cache.
    assert set(
        statuses(run(nb, tmp_path / "dask", executor="dask", executor_options={"scheduler": scheduler})).values()
    ) == {"cached"}


def test_failures_and_parallel_branches_on_the_cluster(tmp_path: Path, scheduler: str) -> None:
    cells = [
        ("n = 3", ["parameters"]),
        ("import os\nleft = [os.getpid()] * n", ["stage:left"]),
        ("import os\nright = [os.getpid()] * n", ["stage:right"]),
        ("both = left + right\nbad = 1 / (len(both) - 2 * n)", ["stage:join"]),
        ("after = bad", ["stage:after"]),
    ]
    report = run(
        make_notebook(tmp_path, cells), tmp_path / "store", executor="dask", executor_options={"scheduler": scheduler}
    )
    assert statuses(report) == {"left": "ran", "right": "ran", "join": "failed", "after": "skipped"}
    failure = report.stages[2].failure
    assert failure is not None and failure.ename == "ZeroDivisionError" and failure.cell_id == "c3"


def test_unreachable_scheduler_is_a_clean_error(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path, [("x = 1", ["stage:one"])])
    with pytest.raises(ExecutorError, match="cannot reach the Dask scheduler"):
        run(nb, tmp_path / "store", executor="dask", executor_options={"scheduler": "tcp://127.0.0.1:9"})


def test_local_cluster_when_no_address_is_given(tmp_path: Path) -> None:
    cells = [("a = 2", ["stage:one"]), ("b = a * 21", ["stage:two"]), ("c = b", ["stage:three"])]
    report = run(make_notebook(tmp_path, cells), tmp_path / "store", executor="dask", workers=1)
    assert report.status == "succeeded" and {o.status for o in report.stages} == {"ran"}


def test_identity_across_stages_holds_on_the_cluster(tmp_path: Path, scheduler: str) -> None:
    # Workers are other processes, possibly other machines: references into producers' bundles resolve there too.
    from nb2pipe.runner import serialize

    cells = [
        ("models = [{'score': 0.5}, {'score': 0.9}]", ["stage:make"]),
        ("best = max(models, key=lambda m: m['score'])\nalso = models", ["stage:pick"]),
        (
            "same = best is models[1] and also is models\nbest['seen'] = True\nseen = 'seen' in models[1]",
            ["stage:check"],
        ),
        ("result = (same, seen)", ["stage:report"]),
    ]
    report = run(
        make_notebook(tmp_path, cells), tmp_path / "store", executor="dask", executor_options={"scheduler": scheduler}
    )
    assert report.status == "succeeded", [o.failure for o in report.stages]
    values = serialize.load(Path(report.stages[2].location or "") / "values.bin")
    assert (values["same"], values["seen"]) == (True, True)
