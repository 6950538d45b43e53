"""``nb2pipe verify``: papermill executes the notebook (twice), the runner the pipeline; boundary values compared."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from nb2pipe.runner import serialize
from nb2pipe.runner.cache import VALUES
from nb2pipe.runner.verify import verify
from tests.helpers import make_notebook
from tests.runner.conftest import EXAMPLES, cli, run

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.ipynb")))
def test_example_notebooks_verify(tmp_path: Path, name: str) -> None:
    nb = tmp_path / name
    shutil.copy(EXAMPLES / name, nb)
    report = verify(nb, home=tmp_path / "store")
    assert report.pipeline_status == "succeeded"
    assert report.checks and report.divergences == []
    assert {c.status for c in report.checks} == {"equal"}, [c for c in report.checks if c.status != "equal"]


def test_parameters_reach_both_sides(tmp_path: Path) -> None:
    nb = tmp_path / "sweep_parameters.ipynb"
    shutil.copy(EXAMPLES / "sweep_parameters.ipynb", nb)
    home = tmp_path / "store"
    report = verify(nb, home=home, pairs=[("n_estimators", "7")])
    assert report.ok and {c.status for c in report.checks} == {"equal"}
    import sqlite3

    db = sqlite3.connect(home / "runs.sqlite")
    assert db.execute("SELECT value FROM run_parameters WHERE name = 'n_estimators'").fetchone()[0] == "7"


def test_unseeded_randomness_is_nondeterministic_not_a_divergence(tmp_path: Path) -> None:
    cells = [
        ("import random", ["shared"]),
        ("noise = random.random()\nfixed = 3", ["stage:draw"]),
        ("total = noise + fixed", ["stage:use"]),
    ]
    report = verify(make_notebook(tmp_path, cells), home=tmp_path / "store")
    by_name = {c.name: c.status for c in report.checks}
    assert by_name["noise"] == "nondeterministic" and by_name["fixed"] == "equal"
    assert report.ok


def test_divergence_is_reported_by_stage_variable_and_cell(tmp_path: Path) -> None:
    cells = [
        ("base = 10", ["parameters"]),
        ("values = [base, base * 2]\nlabel = 'x'", ["stage:make"]),
        ("total = sum(values)", ["stage:use"]),
    ]
    nb = make_notebook(tmp_path, cells)
    home = tmp_path / "store"
    first = run(nb, home)
    # Simulate a runner that returns a wrong result: corrupt the cached value the pipeline will reuse.
    entry = Path(first.stages[0].location or "")
    values = serialize.load(entry / VALUES)
    values["values"] = [10, 21]
    serialize.dump(values, entry / VALUES)
    proc = cli(["verify", str(nb)], home)
    assert proc.returncode == 1, proc.stderr
    assert "first divergence: stage 'make', variable `values` (set in cell 2 (id c1))" in proc.stderr
    assert "[1]: 20 != 21" in proc.stderr


def test_values_holding_notebook_functions_load_outside_the_package(tmp_path: Path) -> None:
    # arch's bootstrap example: an object crossing a stage keeps a reference to a function the notebook defines;
    # pickle stores it by name (``<pipeline>.shared.sharpe``), which verify's own process must be able to import.
    cells = [
        ("import functools", ["shared"]),
        ("def sharpe(x):\n    return x * 2", ["stage:define"]),
        ("halve = functools.partial(sharpe, 3)\ncalls = {'f': sharpe}", []),
        ("total = halve() + calls['f'](1)", ["stage:use"]),
    ]
    report = verify(make_notebook(tmp_path, cells, name="bootstrap_like.ipynb"), home=tmp_path / "store")
    assert report.ok, report.pipeline_error
    assert {c.name: c.status for c in report.checks} == {"halve": "equal", "calls": "equal"}
    assert "bootstrap_like" not in sys.modules


def test_a_change_the_conversion_missed_is_a_divergence_even_in_a_last_stage(tmp_path: Path) -> None:
    # `ops[0](5)` appends to `lst` through a bound method kept in a list: no analysis sees it. Stage `c` has no
    # outputs, so only the check of what it received catches that it ran on the stale `lst`.
    cells = [
        ("lst = [1]\nops = [lst.append]", ["stage:a"]),
        ("ops[0](5)", ["stage:b"]),
        ("n = len(lst)\nprint(n)", ["stage:c"]),
    ]
    nb = make_notebook(tmp_path, cells)
    report = verify(nb, home=tmp_path / "store")
    assert [(c.stage, c.name, c.kind) for c in report.divergences] == [("c", "lst", "input")]
    assert "received from stage 'a', but the notebook had changed it before stage 'c'" in report.divergences[0].detail
    assert ("b", "ops", "input", "equal") in [(c.stage, c.name, c.kind, c.status) for c in report.checks]
    proc = cli(["verify", str(nb), "--json"], tmp_path / "store")
    assert proc.returncode == 1
    assert "first divergence: stage 'c', variable `lst` (set in cell 1 (id c0))" in proc.stderr
