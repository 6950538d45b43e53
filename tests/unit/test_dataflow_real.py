"""Data flow found on real notebooks: what a call may change, aliases, submodule imports, stale closures."""

from __future__ import annotations

import pytest

from nb2pipe.converter import analyze
from nb2pipe.errors import UnsupportedCodeError
from tests.helpers import make_notebook
from tests.unit.test_dataflow import assert_compiles, run, stages

# arch's volatility scenarios: ``res.forecast(rng=scenario_rng)`` may leave ``scenario_rng`` inside ``res``.
_HOLDER = "class Holder:\n    def go(self, rng=None):\n        self.rng = rng\n        return 1"


def test_object_that_may_keep_a_function_reading_a_changed_global_is_refused_with_the_fixes(tmp_path):
    cells = [
        (_HOLDER, ["shared"]),
        ("rs = [1]\n\n\ndef draw(n):\n    return rs * n\n\n\nh = Holder()\nh.go(rng=draw)", ["stage:a"]),
        ("rs = [2]\nx = h.go()", ["stage:b"]),
    ]
    with pytest.raises(UnsupportedCodeError) as info:
        analyze(make_notebook(tmp_path, cells))
    message = str(info.value)
    assert "cell 3 (id c2): `h` was changed in cell 2 by code that uses `draw`, which reads the global `rs`" in message
    assert "If `h` keeps `draw` and calls it later, the notebook would read the new `rs`" in message
    assert "give the new `rs` another name" in message and "`rs=rs`" in message


@pytest.mark.parametrize(
    ("define", "later"),
    [
        ("def draw(n, rs=rs):\n    return rs * n", "rs = [2]"),  # the value bound where the function is defined
        ("def draw(n):\n    return rs * n", "rs2 = [2]"),  # the new value under another name
    ],
)
def test_the_suggested_fixes_convert(tmp_path, define, later):
    cells = [
        (_HOLDER, ["shared"]),
        (f"rs = [1]\n\n\n{define}\n\n\nh = Holder()\nh.go(rng=draw)", ["stage:a"]),
        (f"{later}\nx = h.rng(2)", ["stage:b"]),
    ]
    a = run(tmp_path, cells)
    assert stages(a)["b"].inputs == {"h": "a"}
    assert_compiles(a)


@pytest.mark.parametrize(
    ("code", "mutated"),
    [
        # dowhy: ``model.estimate_effect(estimand)`` sets ``estimand.identifier_method``
        ("estimate = model.estimate_effect(estimand, method_name='m')", {"model", "estimand"}),
        ("make_model().run(estimand)", {"estimand"}),
        ("model.fit(estimand)", {"model"}),  # estimators' fit changes the estimator, not its data
        ("lst.append(estimand)", {"lst"}),
        ("r = model.describe(estimand)", set()),
    ],
)
def test_unknown_methods_may_modify_their_arguments(tmp_path, code, mutated):
    a = run(
        tmp_path,
        [
            ("def make_model():\n    return Model()", ["shared"]),
            ("class Model:\n    def estimate_effect(self, e, method_name):\n        e.m = method_name", ["shared"]),
            ("model = Model()\nestimand = type('E', (), {})()\nlst = []", ["stage:a"]),
            (code, ["stage:b"]),
            ("print(model, estimand, lst)", ["stage:c"]),
        ],
    )
    s = stages(a)
    assert set(s["b"].outputs) == mutated
    assert {n for n, src in s["c"].inputs.items() if src == "b"} == mutated
    assert_compiles(a)


def test_every_submodule_import_of_a_package_reaches_the_stage(tmp_path):
    # dowhy's causal API notebook: `import dowhy.datasets` then `import dowhy.api`; `dowhy.datasets.linear_dataset`
    # works only because the first import ran.
    a = run(
        tmp_path,
        [
            ("import xml.dom.minidom\nimport xml.sax.saxutils", ["stage:a"]),
            ("tag = xml.dom.minidom.parseString('<t/>').documentElement.tagName", ["stage:b"]),
        ],
    )
    assert set(stages(a)["b"].imports) == {"import xml.dom.minidom", "import xml.sax.saxutils"}
    assert_compiles(a)


def test_a_change_through_one_name_of_an_object_is_a_change_of_its_alias(tmp_path):
    # dowhy's do-sampler demo: `nx_graph = model._graph._graph`, then `model.identify_effect()` changes the graph;
    # the stage that reads `nx_graph` must get the changed one, from the same bundle as `model`.
    a = run(
        tmp_path,
        [
            ("class M:\n    def __init__(self):\n        self.g = {'n': []}", ["shared"]),
            ("model = M()\ngraph = model.g['n']", ["stage:a"]),
            ("model.identify()", ["stage:b"]),
            ("model.again()", ["stage:c"]),
            ("print(graph, model)", ["stage:d"]),
            ("graph = [0]\nmodel.more()", ["stage:e"]),
            ("print(graph)", ["stage:f"]),
        ],
    )
    s = stages(a)
    assert set(s["b"].outputs) == {"model", "graph"}
    assert s["d"].inputs == {"graph": "c", "model": "c"}  # still one object after two changes
    assert s["f"].inputs == {"graph": "e"}
    assert "graph" not in s["e"].inputs  # rebound: no longer part of `model`
    assert_compiles(a)


def test_a_change_through_a_part_is_a_change_of_the_object_it_is_part_of(tmp_path):
    # `best = models[1]; best.fit(...)`: in the notebook `models[1]` is fitted too, so a later stage reading
    # `models` must get it from the stage that fitted `best`, in the same bundle (one object).
    a = run(
        tmp_path,
        [
            ("models = [[0], [1]]\nsearch = {'best': [2]}", ["stage:a"]),
            ("best = models[1]\nbest.append(5)", ["stage:b"]),
            ("print(best, models)", ["stage:c"]),
            ("def helper(v):\n    return len(v)", ["shared"]),
            # Read, and passed to a function that may change it: only maybe a change, `search` is not handed on.
            ("est = search['best']\nn = len(est) + helper(est)", ["stage:d"]),
            ("print(search)", ["stage:e"]),
            ("models = [[9]]\nbest.append(6)", ["stage:f"]),  # `models` rebound: no longer holds `best`
            ("print(models, best)", ["stage:g"]),
        ],
    )
    s = stages(a)
    assert set(s["b"].outputs) >= {"models", "best"}
    assert s["c"].inputs == {"best": "b", "models": "b"}
    assert s["e"].inputs == {"search": "a"}
    assert s["g"].inputs == {"models": "f", "best": "f"}
    assert "models" not in s["f"].inputs
    assert_compiles(a)
