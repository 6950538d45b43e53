"""Job history without kernels: filters, reaping of killed runs, cancel of a dead run, removal, record(), grids."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat import v4

from nb2pipe.errors import ParameterError
from nb2pipe.jobs import history
from nb2pipe.jobs.execute import _inject, write_ending
from nb2pipe.jobs.record import METRIC_MIME, SCRAPBOOK_MIME, metrics_from_notebook, record
from nb2pipe.jobs.sweeps import combinations, grid_from_pairs, split_values
from nb2pipe.parameters import Declared
from nb2pipe.runstore import RunStore
from tests.helpers import make_notebook


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _saved_notebook(run_dir: Path, name: str = "nb.ipynb") -> Path:
    nb = v4.new_notebook()
    cell = v4.new_code_cell("import time; time.sleep(60)")
    cell.metadata["papermill"] = {"status": "running"}
    nb.cells.append(cell)
    run_dir.mkdir(parents=True)
    path = run_dir / name
    nbformat.write(nb, path)
    return path


def test_a_run_whose_process_is_gone_is_marked_failed_and_its_notebook_agrees(tmp_path: Path) -> None:
    with RunStore(tmp_path / "home") as store:
        saved = _saved_notebook(tmp_path / "runs" / "a")
        dead = store.create_run(
            "job", str(tmp_path / "nb.ipynb"), status="running", pid=_dead_pid(), run_dir=str(saved.parent)
        )
        alive = store.create_run("job", "b.ipynb", status="running", pid=os.getpid())
        elsewhere_fresh = store.create_run("job", "c.ipynb", status="running", pid=1, host="another-host")
        elsewhere_stale = store.create_run(
            "job", "d.ipynb", status="running", pid=1, host="another-host", heartbeat_at=time.time() - 3600
        )
        assert sorted(history.reap(store)) == sorted([dead, elsewhere_stale])
        assert store.get_run(dead)["status"] == "failed"
        assert store.get_run(dead)["status_detail"] == history.KILLED
        assert store.get_run(alive)["status"] == "running"
        assert store.get_run(elsewhere_fresh)["status"] == "running"
        nb = nbformat.read(saved, as_version=4)
        assert nb.metadata.nb2pipe["status"] == "failed"
        assert nb.cells[0].metadata.papermill["status"] == "failed"
        assert history.reap(store) == []  # nothing left to reap


def test_a_recycled_pid_does_not_keep_a_dead_run_alive(tmp_path: Path) -> None:
    # Our own pid is alive, but this process started long after a run created "a day ago": not the same process.
    assert history.process_alive(os.getpid())
    assert not history.process_alive(os.getpid(), not_after=time.time() - 86400)
    with RunStore(tmp_path) as store:
        run_id = store.create_run("job", "a.ipynb", status="running", pid=os.getpid())
        store.update_run(run_id, created_at=time.time() - 86400)
        assert history.reap(store) == [run_id]


def test_cancel_of_a_run_whose_process_is_gone(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        run_id = store.create_run("job", "a.ipynb", status="running", pid=_dead_pid())
        run = history.cancel(store, run_id, grace=0)
        assert run["status"] == "cancelled"
        assert run["cancel_requested"] == 1
        # Cancelling a run that already ended changes nothing.
        assert history.cancel(store, run_id)["status"] == "cancelled"
        # A queued run is cancelled without signalling anyone (its pid is whoever queued it: here, this process).
        queued = store.create_run("job", "a.ipynb", status="queued", pid=os.getpid())
        run = history.cancel(store, queued, grace=0)
        assert (run["status"], run["status_detail"]) == ("cancelled", "cancelled before it started")


def _seed(store: RunStore, target: str, params: dict[str, object], status: str, at: float) -> str:
    run_id = store.create_run("job", target, parameters=params, status="running")
    store.update_run(run_id, created_at=at, started_at=at)
    store.finish_run(run_id, status)
    return run_id


def test_list_filters_by_notebook_status_parameter_and_time(tmp_path: Path) -> None:
    now = time.time()
    with RunStore(tmp_path) as store:
        a = _seed(store, "/p/train.ipynb", {"lr": 0.1, "depth": 3, "name": "x"}, "succeeded", now - 7200)
        b = _seed(store, "/p/train.ipynb", {"lr": 0.01, "depth": 3, "name": "y"}, "failed", now - 60)
        c = _seed(store, "/q/eval.ipynb", {"lr": 1.0}, "succeeded", now - 30)
        store.record_metric(a, "acc", 0.9)
        ids = lambda **kw: [r["id"] for r in history.list_runs(store, **kw)]  # noqa: E731
        assert ids() == [c, b, a]
        assert ids(notebook="train.ipynb") == [b, a]
        assert ids(notebook="/q/eval.ipynb") == [c]
        assert ids(status="failed") == [b]
        assert ids(parameters={"lr": "0.1"}) == [a]  # command-line text matches the typed value
        assert ids(parameters={"lr": "1"}) == [c]  # an int given for a float parameter
        assert ids(parameters={"depth": 3, "name": "y"}) == [b]
        assert ids(since=history.parse_time("1h")) == [c, b]
        assert ids(until=now - 3600) == [a]
        assert ids(limit=1) == [c]
        assert history.list_runs(store, status="failed")[0]["parameters"] == {"lr": 0.01, "depth": 3, "name": "y"}
        assert history.list_runs(store, notebook="train.ipynb")[1]["metrics"] == {"acc": 0.9}
        with pytest.raises(history.QueryError, match="unknown status"):
            history.list_runs(store, status="done")
        with pytest.raises(history.QueryError, match="cannot read the time"):
            history.parse_time("yesterday-ish")


def test_remove_hides_a_run_and_keeps_an_audit_record(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        run_id = _seed(store, "/p/a.ipynb", {"n": 1}, "succeeded", time.time())
        active = store.create_run("job", "/p/a.ipynb", status="running", pid=os.getpid())
        with pytest.raises(history.ActiveRunError, match="cancel it first"):
            history.remove(store, active)
        history.remove(store, run_id)
        assert [r["id"] for r in history.list_runs(store)] == [active]
        assert [r["id"] for r in history.list_runs(store, removed=True)] == [active, run_id]
        audit = store.query("SELECT action, object_id, detail FROM audit")
        assert [(a["action"], a["object_id"]) for a in audit] == [("run.remove", run_id)]
        assert json.loads(audit[0]["detail"])["parameters"] == {"n": 1}


def test_compare_puts_parameters_and_metrics_side_by_side(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        a = _seed(store, "/p/a.ipynb", {"lr": 0.1}, "succeeded", time.time())
        b = _seed(store, "/p/a.ipynb", {"lr": 0.2, "depth": 2}, "succeeded", time.time())
        store.record_metric(b, "acc", 0.8)
        table = history.compare(store, [a, b])
        assert table["parameters"] == {"depth": [None, 2], "lr": [0.1, 0.2]}
        assert table["metrics"] == {"acc": [None, 0.8]}


def test_record_outside_a_job_only_shows_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    os.environ.pop("NB2PIPE_RUN_ID", None)
    record("acc", 0.5)
    record("hidden", 1, display=False)
    assert capsys.readouterr().out == "acc = 0.5\n"
    with pytest.raises(TypeError, match="cannot record a object"):
        record("bad", object())


def test_metrics_are_read_from_our_outputs_and_from_scrapbook_scraps() -> None:
    nb = v4.new_notebook()
    cell = v4.new_code_cell("")
    cell.outputs = [
        v4.new_output("display_data", data={METRIC_MIME: {"name": "acc", "value": 0.5}}),
        v4.new_output("display_data", data={SCRAPBOOK_MIME: {"name": "loss", "data": [1, 2], "encoder": "json"}}),
        v4.new_output("display_data", data={METRIC_MIME: {"name": "acc", "value": 0.75}}),
    ]
    nb.cells.append(cell)
    assert metrics_from_notebook(nb) == {"acc": 0.75, "loss": [1, 2]}


def test_parameters_are_injected_as_literals_after_the_parameters_cell() -> None:
    nb = v4.new_notebook()
    nb.cells = [v4.new_code_cell("import os"), v4.new_code_cell("name = 'a'\nxs = (1,)"), v4.new_code_cell("x")]
    nb.cells[1].metadata["tags"] = ["parameters"]
    old = v4.new_code_cell("name = 'stale'")
    old.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(2, old)
    where = _inject(nb, {"name": 'it\'s "quoted"; import os', "xs": (1, 2)})
    assert where == 2 and len(nb.cells) == 4
    namespace: dict[str, object] = {}
    exec(nb.cells[2].source, namespace)  # the injected cell is plain literals: safe to evaluate
    assert namespace["name"] == 'it\'s "quoted"; import os' and namespace["xs"] == (1, 2)


def test_write_ending_marks_a_running_cell_failed(tmp_path: Path) -> None:
    saved = _saved_notebook(tmp_path / "r")
    nb = nbformat.read(saved, as_version=4)
    write_ending(nb, saved, "r1", "cancelled", "cancelled: SIGTERM", None)
    back = nbformat.read(saved, as_version=4)
    assert back.metadata.nb2pipe == {
        "run_id": "r1",
        "status": "cancelled",
        "status_detail": "cancelled: SIGTERM",
        "error": None,
    }
    assert back.metadata.papermill["exception"] is True
    assert back.cells[0].metadata.papermill["status"] == "failed"


def test_sweep_grid_values_are_split_and_typed(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path, [("lr = 0.1\ndepth = 3\nname = 'a'\nlayers = [1]", ["parameters"]), ("x", [])])
    assert split_values(Declared("lr", "float", 0.1, "0.1"), "0.1,0.01") == [0.1, 0.01]
    assert split_values(Declared("name", "str", "a", "'a'"), "a,b") == ["a", "b"]
    grid = grid_from_pairs(nb, [("lr", "0.1,1"), ("depth", "3,5"), ("layers", "[1,2],[3]")])
    assert grid == {"lr": [0.1, 1], "depth": [3, 5], "layers": [[1, 2], [3]]}
    runs = combinations(nb, grid)
    assert len(runs) == 8
    assert runs[-1] == {"lr": 1.0, "depth": 5, "layers": [3]}
    assert isinstance(runs[-1]["lr"], float)
    with pytest.raises(ParameterError, match="did you mean 'depth'"):
        combinations(nb, {"deph": [1]})
    with pytest.raises(ParameterError, match="is not a int"):
        combinations(nb, grid_from_pairs(nb, [("depth", "3,x")]))


def test_job_list_imports_no_papermill() -> None:
    code = (
        "import sys; from nb2pipe.cli import build_parser; build_parser(); import nb2pipe.jobs.history; "
        "heavy = [m for m in ('papermill', 'nbclient', 'jupyter_server', 'nbconvert') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert socket.gethostname()


def test_artifacts_are_the_files_written_during_the_run(tmp_path: Path) -> None:
    from nb2pipe.jobs.execute import _artifacts

    run_dir = tmp_path / "run"
    inside = run_dir / "outputs"
    (inside / "sub").mkdir(parents=True)
    (inside / "sub" / "model.bin").write_bytes(b"abc")
    declared = tmp_path / "declared"
    declared.mkdir()
    old = declared / "old.csv"
    old.write_text("from an earlier run")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    (declared / "new.csv").write_text("x")
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert _artifacts(inside, run_dir, time.time()) == [("outputs/sub/model.bin", sha, 3)]
    found = _artifacts(declared, run_dir, time.time())
    assert [(Path(p).name, size) for p, _, size in found] == [("new.csv", 1)]  # not the earlier run's file
    assert Path(found[0][0]).is_absolute()
    assert _artifacts(tmp_path / "missing", run_dir, time.time()) == []
