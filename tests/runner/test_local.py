"""The local runner on small generated notebooks: cache keys, failures, serialization, selection, the run store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from nb2pipe.errors import ParameterError
from nb2pipe.runner.run import RunError
from tests.helpers import make_notebook
from tests.runner.conftest import cli, ran, run, statuses

CHAIN = [
    ("a = 1\nb = 2\nscale = 10", ["parameters"]),
    ("x = [a, a + 1]\nprint('made x')", ["stage:make"]),
    ("y = sum(x) * scale\nprint('y =', y)", ["stage:use_scale"]),
    ("z = len(x) + b", ["stage:use_b"]),
    ("total = y + z", ["stage:combine"]),
]


def test_first_run_runs_everything_and_rerun_runs_nothing(tmp_path: Path, home: Path) -> None:
    nb = make_notebook(tmp_path, CHAIN)
    first = run(nb, home)
    assert first.status == "succeeded"
    assert statuses(first) == {"make": "ran", "use_scale": "ran", "use_b": "ran", "combine": "ran"}
    assert "made x" in first.stages[0].stdout
    second = run(nb, home)
    assert set(statuses(second).values()) == {"cached"}
    # The cached outputs are the same content as the ones computed.
    assert [o.outputs for o in second.stages] == [o.outputs for o in first.stages]


def test_a_notebook_is_converted_again_when_the_converter_changed(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nb2pipe.runner import target

    nb = make_notebook(tmp_path, CHAIN)
    run(nb, home)
    run(nb, home)
    assert len(list((home / "packages").iterdir())) == 1  # the same converter: the package is reused
    monkeypatch.setattr(target, "converter_fingerprint", lambda: "a converter edited on a developer's checkout")
    again = run(nb, home)
    assert len(list((home / "packages").iterdir())) == 2
    # Same code out of the new converter here: the stages' versions, so their cache entries, are the same.
    assert set(statuses(again).values()) == {"cached"}


def test_comment_only_edit_runs_no_stage(tmp_path: Path, home: Path) -> None:
    run(make_notebook(tmp_path, CHAIN), home)
    edited = [*CHAIN]
    edited[2] = ("# scaled sum of x\ny = sum(x) * scale  # the scale parameter\n\nprint('y =', y)", ["stage:use_scale"])
    report = run(make_notebook(tmp_path, edited), home)
    assert ran(report) == set()


def test_one_parameter_change_reruns_only_its_readers_and_their_dependants(tmp_path: Path, home: Path) -> None:
    nb = make_notebook(tmp_path, CHAIN)
    run(nb, home)
    report = run(nb, home, pairs=[("scale", "3")])
    assert ran(report) == {"use_scale", "combine"}
    assert report.parameters["scale"] == 3
    report = run(nb, home, pairs=[("b", "5")])
    assert ran(report) == {"use_b", "combine"}
    # The same values from a parameters file: nothing to run.
    params = tmp_path / "params.yaml"
    params.write_text("b: 5\n")
    assert ran(run(nb, home, files=[str(params)])) == set()


def test_output_unchanged_after_rerun_stops_the_cascade(tmp_path: Path, home: Path) -> None:
    cells = [
        ("n = 3", ["parameters"]),
        ("size = min(n, 2)", ["stage:clip"]),
        ("big = [0] * size", ["stage:grow"]),
    ]
    nb = make_notebook(tmp_path, cells)
    run(nb, home)
    # clip re-runs (its parameter changed) but produces the same value, so grow stays cached.
    assert statuses(run(nb, home, pairs=[("n", "4")])) == {"clip": "ran", "grow": "cached"}


def test_data_file_edit_reruns_exactly_its_readers(tmp_path: Path, home: Path) -> None:
    (tmp_path / "data.csv").write_text("v\n1\n2\n")
    (tmp_path / "other.txt").write_text("hello")
    cells = [
        ("import pandas as pd", ["shared"]),
        ("df = pd.read_csv('data.csv')", ["stage:load"]),
        ("with open('other.txt') as fh:\n    text = fh.read()", ["stage:load_text"]),
        ("n = len(df) + len(text)", ["stage:combine"]),
        ("flag = True", ["stage:independent"]),
    ]
    nb = make_notebook(tmp_path, cells)
    first = run(nb, home)
    assert ran(first) == {"load", "load_text", "combine", "independent"}
    (tmp_path / "data.csv").write_text("v\n1\n2\n3\n")
    second = run(nb, home)
    assert ran(second) == {"load", "combine"}
    # And the new data is what the pipeline computed with: never a stale result.
    assert second.stages[0].outputs != first.stages[0].outputs
    assert statuses(run(nb, home)) == dict.fromkeys(["load", "load_text", "combine", "independent"], "cached")


def test_reads_tag_counts_like_a_literal_path(tmp_path: Path, home: Path) -> None:
    (tmp_path / "config.json").write_text('{"k": 1}')
    cells = [
        ("import json\nimport os", ["shared"]),
        ("path = os.path.join('.', 'config.json')\nconf = json.load(open(path))", ["stage:load", "reads:config.json"]),
        ("k = conf['k']", ["stage:use"]),
    ]
    nb = make_notebook(tmp_path, cells)
    run(nb, home)
    (tmp_path / "config.json").write_text('{"k": 2}')
    assert ran(run(nb, home)) == {"load", "use"}


def test_values_keep_types_and_aliasing(tmp_path: Path, home: Path) -> None:
    cells = [
        ("import numpy as np\nimport pandas as pd", ["shared"]),
        (
            "a = [1, 2]\nb = a\narr = np.arange(6, dtype=np.int16).reshape(2, 3)\n"
            "df = pd.DataFrame({'x': [1.5, 2.5]}, index=['p', 'q'])\nt = (1, 'one', None)",
            ["stage:make"],
        ),
        (
            "a.append(3)\nsame = b is a\narr[0, 0] = 7\nkinds = (type(arr).__name__, str(arr.dtype), "
            "type(df).__name__, list(df.index), type(t).__name__)",
            ["stage:check"],
        ),
        ("summary = (same, kinds)", ["stage:report"]),
    ]
    nb = make_notebook(tmp_path, cells)
    report = run(nb, home)
    assert report.status == "succeeded", report.stages[1].failure
    from nb2pipe.runner import serialize

    values = serialize.load(Path(report.stages[1].location or "") / "values.bin")
    assert values["same"] is True  # `b = a` stayed one object across the stage boundary
    assert values["kinds"] == ("ndarray", "int16", "DataFrame", ["p", "q"], "tuple")


def test_unserializable_value_names_the_variable_and_both_stages(tmp_path: Path, home: Path) -> None:
    cells = [
        ("import threading", ["shared"]),
        ("lock = threading.Lock()\nn = 1", ["stage:make_lock"]),
        ("with lock:\n    m = n + 1", ["stage:use_lock"]),
    ]
    report = run(make_notebook(tmp_path, cells), home)
    assert statuses(report) == {"make_lock": "failed", "use_lock": "skipped"}
    failure = report.stages[0].failure
    assert failure is not None and failure.variable == "lock" and failure.consumers == ("use_lock",)
    from nb2pipe.runner.run import describe_failure

    message = describe_failure(report.stages[0])
    assert "`lock`" in message and "'make_lock'" in message and "'use_lock'" in message


def test_failure_names_stage_cell_and_line_and_skips_dependants(tmp_path: Path, home: Path) -> None:
    cells = [
        ("x = 1", ["stage:ok"]),
        ("y = x + 1\nz = y / 0\nprint(z)", ["stage:boom"]),
        ("w = z * 2", ["stage:after_boom"]),
        ("v = x * 3", ["stage:sibling"]),
    ]
    nb = make_notebook(tmp_path, cells)
    proc = cli(["run", str(nb)], home)
    assert proc.returncode == 1, proc.stderr
    assert "stage 'boom' failed at cell 2 (id c1), line 2: `z = y / 0`: ZeroDivisionError" in proc.stderr
    assert "skipped" in proc.stderr and "after_boom" in proc.stderr
    report = run(nb, home)
    assert statuses(report) == {"ok": "cached", "boom": "failed", "after_boom": "skipped", "sibling": "cached"}
    stderr_log = Path(report.run_dir) / "boom.stderr"
    assert "ZeroDivisionError" in stderr_log.read_text()


def test_force_only_and_from(tmp_path: Path, home: Path) -> None:
    nb = make_notebook(tmp_path, CHAIN)
    with pytest.raises(RunError, match=r"stage 'make' has no cached result"):
        run(nb, home, only=["use_scale"])  # nothing cached yet: its input cannot come from the cache
    run(nb, home)
    assert ran(run(nb, home, force=True)) == {"make", "use_scale", "use_b", "combine"}
    only = run(nb, home, only=["use_scale"])
    assert statuses(only) == {"make": "cached", "use_scale": "ran", "use_b": "skipped", "combine": "skipped"}
    assert ran(run(nb, home, from_stages=["use_b"])) == {"use_b", "combine"}
    with pytest.raises(RunError, match="did you mean 'use_b'"):
        run(nb, home, from_stages=["use_c"])


def test_unknown_parameter_is_refused_before_anything_runs(tmp_path: Path, home: Path) -> None:
    nb = make_notebook(tmp_path, CHAIN)
    with pytest.raises(ParameterError, match="did you mean 'scale'"):
        run(nb, home, pairs=[("scael", "2")])
    proc = cli(["run", str(nb), "-p", "scale", "notanint"], home)
    assert proc.returncode == 2 and "is not a int" in proc.stderr
    assert not (home / "cache").exists()


def test_runs_are_recorded_in_the_run_store(tmp_path: Path, home: Path) -> None:
    nb = make_notebook(tmp_path, CHAIN)
    first = run(nb, home, pairs=[("scale", "4")])
    run(nb, home)
    db = sqlite3.connect(home / "runs.sqlite")
    rows = db.execute("SELECT id, kind, status, parameters FROM runs ORDER BY created_at").fetchall()
    assert [(r[1], r[2]) for r in rows] == [("pipeline", "succeeded"), ("pipeline", "succeeded")]
    assert json.loads(rows[0][3])["scale"] == 4
    sql = "SELECT stage, status, cache_key, outputs, version FROM stage_runs WHERE run_id = ?"
    by_stage = {r[0]: r for r in db.execute(sql, (first.run_id,))}
    from nb2pipe.runner.target import load_target

    versions = {s["name"]: s["version"] for s in load_target(nb, home).spec["stages"]}
    assert {name: row[4] for name, row in by_stage.items()} == versions
    assert by_stage["use_scale"][1] == "ran" and by_stage["use_scale"][2] == first.stages[1].key
    assert json.loads(by_stage["make"][3])["x"]["hash"] == first.stages[0].outputs["x"]
    value = db.execute("SELECT value FROM run_parameters WHERE run_id = ? AND name = 'scale'", (first.run_id,))
    assert value.fetchone()[0] == "4"


def test_json_summary(tmp_path: Path, home: Path) -> None:
    nb = make_notebook(tmp_path, CHAIN)
    proc = cli(["run", str(nb), "--json", "-p", "scale", "2"], home)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "succeeded" and summary["parameters"]["scale"] == 2
    stage = summary["stages"][1]
    assert stage["name"] == "use_scale" and stage["status"] == "ran"
    output = stage["outputs"]["y"]
    assert len(output["hash"]) == 64 and output["location"].endswith("values.bin#y")
    assert "y = 6\n" in proc.stderr  # with --json, what stages print goes to stderr


def test_process_state_is_carried_between_stages(tmp_path: Path, home: Path) -> None:
    cells = [
        ("import numpy as np\nimport random", ["shared"]),
        ("np.random.seed(42)\nrandom.seed(7)\nbase = 1", ["stage:seed"]),
        ("draw = float(np.random.rand())\npick = random.random()", ["stage:draw"]),
        ("both = (draw, pick)", ["stage:report"]),
    ]
    report = run(make_notebook(tmp_path, cells), home)
    assert report.status == "succeeded", [o.failure for o in report.stages]
    import random

    import numpy as np

    from nb2pipe.runner import serialize

    values = serialize.load(Path(report.stages[1].location or "") / "values.bin")
    np.random.seed(42)
    random.seed(7)
    assert values == {"draw": float(np.random.rand()), "pick": random.random()}


def test_state_the_runner_cannot_carry_is_a_warning_not_silence(tmp_path: Path, home: Path) -> None:
    cells = [
        ("import mylib_state", ["shared"]),
        ("mylib_state.configure(1)\nn = 1", ["stage:setup"]),
        ("m = n + 1", ["stage:use"]),
    ]
    (tmp_path / "mylib_state.py").write_text("def configure(v):\n    global V\n    V = v\n")
    nb = make_notebook(tmp_path, cells)
    from nb2pipe.converter import analyze

    # The user declares the library's state, as `nb2pipe convert --state` would.
    analysis = analyze(nb, extra_state={"mylib_state.configure": "mylib.config"})
    assert analysis.flow.stages[0].state_out == ["mylib.config"]
    pkg = tmp_path / "pipelines"
    from nb2pipe.converter import convert

    convert(nb, pkg, extra_state={"mylib_state.configure": "mylib.config"})
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        report = run(pkg / "nb", home)
    finally:
        os.chdir(cwd)
    assert report.status == "succeeded"
    assert report.warnings and "'mylib.config' cannot be carried" in report.warnings[0]


def test_executor_registry_lists_builtins_and_refuses_unknown_names() -> None:
    from importlib.metadata import entry_points

    from nb2pipe.runner.executors import ExecutorError, available, load

    assert {ep.name for ep in entry_points(group="nb2pipe.executors")} >= {"local", "dask"}
    names = available()
    assert names["local"] == "nb2pipe.runner.local:LocalExecutor"
    assert names["dask"] == "nb2pipe.runner.dask_executor:DaskExecutor"
    with pytest.raises(ExecutorError, match="did you mean 'dask'"):
        load("dsak")


def test_independent_stages_run_side_by_side_with_workers(tmp_path: Path, home: Path) -> None:
    # Each branch waits for the other to have started: this finishes only if both run at the same time.
    wait = "import os, time\nopen('{me}', 'w').close()\nwhile not os.path.exists('{other}'):\n    time.sleep(0.02)\n"
    cells = [
        ("seed = 1", ["stage:start"]),
        (wait.format(me="left.flag", other="right.flag") + "left = seed", ["stage:left"]),
        (wait.format(me="right.flag", other="left.flag") + "right = seed", ["stage:right"]),
        ("both = left + right", ["stage:join"]),
    ]
    report = run(make_notebook(tmp_path, cells), home, workers=2)
    assert report.status == "succeeded" and ran(report) == {"start", "left", "right", "join"}


def test_a_scheduled_run_uses_the_schedulers_run_id_and_records_its_schedule(tmp_path: Path, home: Path) -> None:
    import os
    import subprocess
    import sys

    nb = make_notebook(tmp_path, CHAIN)
    env = {
        **os.environ,
        "NB2PIPE_HOME": str(home),
        "NB2PIPE_RUN_ID": "20261127-000000-abcdef",
        "NB2PIPE_SCHEDULE": "nightly",
        "NB2PIPE_SCHEDULED_FOR": "2026-11-27T00:00:00+00:00",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "nb2pipe.cli", "run", str(nb), "--json"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["run_id"] == "20261127-000000-abcdef"
    db = sqlite3.connect(home / "runs.sqlite")
    row = db.execute("SELECT kind, status, schedule, scheduled_for FROM runs WHERE id = '20261127-000000-abcdef'")
    assert row.fetchone() == ("pipeline", "succeeded", "nightly", "2026-11-27T00:00:00+00:00")
