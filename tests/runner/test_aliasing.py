"""Identity across stage boundaries: names bound to one object in the notebook are one object in the pipeline.

Within one stage's outputs this is the bundle's pickle memo; across stages it is the references a bundle keeps to
the inputs it hands on unchanged (``y = x``, ``ms = [m, ...]``) and to the objects it pulls out of them
(``best = models[0]``), resolved against the producers' values.
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


def _run_cells(tmp_path: Path, home: Path, cells: list[tuple[str, list[str]]], stage: str) -> dict[str, object]:
    report = run(make_notebook(tmp_path, cells), home)
    assert report.status == "succeeded", [o.failure for o in report.stages]
    return _values(next(o for o in report.stages if o.name == stage).location)


MODELS = (
    "class Model:\n    def __init__(self, score):\n        self.score = score\n        self.fitted = False\n"
    "models = [Model(0.5), Model(0.9), Model(0.7)]\nregistry = {'by_name': {'a': models[0]}}"
)


@pytest.mark.parametrize(
    "pull",
    [
        "best = models[1]",
        "best = max(models, key=lambda m: m.score)",
        "best = registry['by_name']['a'] if False else models[1]",
        "best = [m for m in models if m.score > 0.8][0]",
    ],
)
def test_an_object_pulled_out_of_an_input_is_the_same_object_downstream(tmp_path: Path, home: Path, pull: str) -> None:
    # `best = max(models)` in one stage, `models` read straight from its producer in a later one: in the notebook
    # `best is models[1]`, so a change through one name is seen through the other.
    cells = [
        (MODELS, ["stage:make"]),
        (pull, ["stage:pick"]),
        ("same = best is models[1]\nbest.fitted = True\nseen = models[1].fitted", ["stage:check"]),
        ("result = (same, seen)", ["stage:report"]),
    ]
    values = _run_cells(tmp_path, home, cells, "check")
    assert (values["same"], values["seen"]) == (True, True)


def test_containers_of_pulled_out_objects_keep_them(tmp_path: Path, home: Path) -> None:
    cells = [
        (MODELS, ["stage:make"]),
        ("top = {'first': models[0], 'pair': (models[1], models[2])}\nranked = sorted(models, key=id)", ["stage:pick"]),
        (
            "same = top['first'] is models[0] and top['pair'][1] is models[2] and set(map(id, ranked)) == "
            "set(map(id, models)) and registry['by_name']['a'] is top['first']",
            ["stage:check"],
        ),
        ("result = same", ["stage:report"]),
    ]
    assert _run_cells(tmp_path, home, cells, "check")["same"] is True


def test_a_pulled_out_object_changed_by_its_stage_is_not_replaced_by_the_stale_original(
    tmp_path: Path, home: Path
) -> None:
    # The stage changes the object it pulled out: downstream `best` must be the changed one, never the producer's.
    cells = [
        (MODELS, ["stage:make"]),
        ("best = models[1]\nbest.fitted = True", ["stage:pick"]),
        ("fitted = best.fitted\nscore = best.score", ["stage:check"]),
        ("result = (fitted, score)", ["stage:report"]),
    ]
    values = _run_cells(tmp_path, home, cells, "check")
    assert (values["fitted"], values["score"]) == (True, 0.9)


def test_an_object_pulled_out_of_an_input_the_stage_grows_stays_inside_it(tmp_path: Path, home: Path) -> None:
    # `best = models[0]; models.append(...)`: both handed on by the same stage, one object downstream.
    cells = [
        (MODELS, ["stage:make"]),
        ("best = models[0]\nmodels.append(Model(0.1))", ["stage:pick"]),
        ("same = best is models[0]\nn = len(models)", ["stage:check"]),
        ("result = (same, n)", ["stage:report"]),
    ]
    values = _run_cells(tmp_path, home, cells, "check")
    assert (values["same"], values["n"]) == (True, 4)


@pytest.mark.kernel
def test_verify_agrees_when_a_pulled_out_object_is_changed_downstream(tmp_path: Path, home: Path) -> None:
    from nb2pipe.runner.verify import verify

    cells = [
        (MODELS, ["stage:make"]),
        ("best = max(models, key=lambda m: m.score)", ["stage:pick"]),
        ("best.fitted = True\nseen = models[1].fitted", ["stage:check"]),
        ("result = seen", ["stage:report"]),
    ]
    report = verify(make_notebook(tmp_path, cells), home=home)
    assert report.pipeline_status == "succeeded"
    assert report.divergences == [], report.divergences


def test_a_change_through_a_pulled_out_object_reaches_its_container_downstream(tmp_path: Path, home: Path) -> None:
    # `best = models[1]; best.fitted = True`: the notebook's `models[1]` is fitted too, and still `best`.
    cells = [
        (MODELS, ["stage:make"]),
        ("best = models[1]\nbest.fitted = True", ["stage:fit"]),
        ("seen = models[1].fitted\nsame = best is models[1]", ["stage:check"]),
        ("result = (seen, same)", ["stage:report"]),
    ]
    values = _run_cells(tmp_path, home, cells, "check")
    assert (values["seen"], values["same"]) == (True, True)
