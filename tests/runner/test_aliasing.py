"""Identity across stage boundaries: names bound to one object in the notebook are one object in the pipeline.

Within one stage's outputs this is the bundle's pickle memo; across stages it is the references a bundle keeps to
the inputs it hands on unchanged (``y = x``, ``ms = [m, ...]``), resolved against the producers' values.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nb2pipe.runner import serialize
from nb2pipe.runner.cache import VALUES
from tests.helpers import make_notebook
from tests.runner.conftest import run

CELLS = [
    ("import numpy as np\nimport pandas as pd", ["shared"]),
    ("x = [1, 2]\nm = {'k': 1}\narr = np.arange(4.0)\ndf = pd.DataFrame({'v': [1.0, 2.0]})", ["stage:make"]),
    ("y = x\nms = [m, {'k': 2}]\nviews = {'a': arr, 'frame': df}", ["stage:wrap"]),
    (
        "same_top = x is y\nsame_nested = ms[0] is m\nsame_array = views['a'] is arr\n"
        "same_frame = views['frame'] is df\nx.append(3)\nseen_through_y = len(y)",
        ["stage:check"],
    ),
    ("result = (same_top, same_nested, same_array, same_frame, seen_through_y)", ["stage:report"]),
]
#: What the notebook computes, cell after cell in one kernel.
NOTEBOOK = {"same_top": True, "same_nested": True, "same_array": True, "same_frame": True, "seen_through_y": 3}


def _values(location: str | None) -> dict[str, object]:
    return serialize.load(Path(location or "") / VALUES)


def _notebook_values() -> dict[str, object]:
    scope: dict[str, object] = {}
    for source, _ in CELLS:
        exec(source, scope)  # the test's own cells, executed as the notebook would
    return {k: scope[k] for k in NOTEBOOK}


def test_the_cells_themselves_give_the_expected_values() -> None:
    assert _notebook_values() == NOTEBOOK


def test_an_input_handed_on_unchanged_stays_the_same_object_downstream(tmp_path: Path, home: Path) -> None:
    report = run(make_notebook(tmp_path, CELLS), home)
    assert report.status == "succeeded", [o.failure for o in report.stages]
    check = next(o for o in report.stages if o.name == "check")
    values = _values(check.location)
    assert {k: values[k] for k in NOTEBOOK} == NOTEBOOK
    # Served from the cache, the identity holds the same way.
    again = run(make_notebook(tmp_path, CELLS), home, force=True)
    assert _values(next(o for o in again.stages if o.name == "check").location) == values


@pytest.mark.kernel
def test_verify_finds_no_divergence(tmp_path: Path, home: Path) -> None:
    from nb2pipe.runner.verify import verify

    report = verify(make_notebook(tmp_path, CELLS), home=home)
    assert report.pipeline_status == "succeeded"
    assert report.divergences == [], report.divergences


def test_an_input_changed_in_place_through_another_name_is_seen_under_both(tmp_path: Path, home: Path) -> None:
    # `y = x; y.append(3)`: in the notebook, a later cell sees the change through `x` too, and `x is y`.
    cells = [
        ("x = [1, 2]", ["stage:make"]),
        ("y = x\ny.append(3)", ["stage:grow"]),
        ("n = len(x)\nsame = x is y", ["stage:check"]),
        ("result = (n, same)", ["stage:report"]),
    ]
    scope: dict[str, object] = {}
    for source, _ in cells:
        exec(source, scope)
    report = run(make_notebook(tmp_path, cells), home)
    assert report.status == "succeeded", [o.failure for o in report.stages]
    values = _values(next(o for o in report.stages if o.name == "check").location)
    assert (values["n"], values["same"]) == (scope["n"], scope["same"]) == (3, True)
