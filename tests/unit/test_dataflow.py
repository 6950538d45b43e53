"""Data flow between stages: inputs, outputs, edges, copies, shared code, state, files, tags."""

from __future__ import annotations

import json
import sys

import pytest

from nb2pipe.converter import Analysis, analyze, convert
from nb2pipe.dataflow import StageFlow
from nb2pipe.errors import UnknownNameError, UnsupportedCodeError
from tests.helpers import make_notebook


def run(tmp_path, cells, **kwargs) -> Analysis:
    return analyze(make_notebook(tmp_path, cells), **kwargs)


def stages(analysis: Analysis) -> dict[str, StageFlow]:
    return {s.name: s for s in analysis.flow.stages}


def assert_compiles(analysis: Analysis) -> None:
    for rel, code in analysis.rendered.files.items():
        if rel.endswith(".py"):
            compile(code, rel, "exec")


def test_public_api_analyze_stays_the_function_after_the_converter_is_imported(tmp_path):
    import nb2pipe
    import nb2pipe.converter  # importing the submodules must not shadow the public function

    nb = make_notebook(tmp_path, [("x = 1", ["stage:a"])])
    assert callable(nb2pipe.analyze), f"nb2pipe.analyze is {nb2pipe.analyze!r}"
    assert [s.name for s in nb2pipe.analyze(nb).flow.stages] == ["a"]


# --- names across stages --------------------------------------------------------------------------------------------


def test_name_read_in_a_later_stage_is_an_input_from_its_producer(tmp_path):
    a = run(tmp_path, [("x = 1\nunused = 2", ["stage:a"]), ("w = 5", ["stage:b"]), ("y = x + w", ["stage:c"])])
    s = stages(a)
    assert s["c"].inputs == {"x": "a", "w": "b"}
    assert s["a"].outputs == ["x"]  # `unused` is read by nobody: not an output
    assert s["b"].outputs == ["w"]
    assert s["a"].inputs == {}
    assert a.flow.edges == {("a", "c"): ["x"], ("b", "c"): ["w"]}
    assert a.flow.order == ["a", "b", "c"]
    assert_compiles(a)


def test_parallel_branches_read_the_binding_the_notebook_would_see(tmp_path):
    a = run(
        tmp_path,
        [
            ("x = 1", ["stage:a"]),
            ("b_out = x * 2", ["stage:b"]),
            ("x = x + 10", ["stage:c"]),
            ("d_out = x", ["stage:d"]),
        ],
    )
    s = stages(a)
    assert s["b"].inputs == {"x": "a"}
    assert s["c"].inputs == {"x": "a"}
    assert s["d"].inputs == {"x": "c"}
    assert s["c"].outputs == ["x"]
    assert ("a", "d") not in a.flow.edges
    assert a.flow.edges[("c", "d")] == ["x"]


SETUP = (
    "import pandas as pd\n"
    "from sklearn.linear_model import LinearRegression\n"
    "df = pd.DataFrame({'a': [1.0, None]})\n"
    "lst = []\n"
    "d = {'k': 1}\n"
    "x = 1\n"
    "model = LinearRegression()\n"
    "X = [[1.0], [2.0]]\n"
    "y = [1.0, 2.0]\n"
    "k = 'k'\n"
)


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ('df["a"] = 1', "df"),
        ('df.loc[0, "a"] = 1', "df"),
        ("lst.append(1)", "lst"),
        ("d.update({'z': 2})", "d"),
        ("x += 1", "x"),
        ("del d[k]", "d"),
        ("df.fillna(0, inplace=True)", "df"),
        ("model.fit(X, y)", "model"),
    ],
)
def test_in_place_mutation_makes_a_new_version_that_later_stages_read(tmp_path, code, name):
    a = run(tmp_path, [(SETUP, ["stage:a"]), (code, ["stage:b"]), ("print(df, lst, d, x, model)", ["stage:c"])])
    s = stages(a)
    assert s["b"].inputs[name] == "a"
    assert s["b"].outputs == [name]  # only the mutated object is a new version (not X, y, k)
    assert s["c"].inputs[name] == "b"
    assert name in a.flow.edges[("b", "c")]
    # The other names still come straight from a.
    for other in {"df", "lst", "d", "x", "model"} - {name}:
        assert s["c"].inputs[other] == "a"
    assert f'"{name}": {name}' in a.rendered.files["stages/b.py"]
    assert_compiles(a)


def test_mutating_stage_runs_after_stages_that_read_the_old_version(tmp_path):
    a = run(
        tmp_path,
        [
            ("lst = [1]", ["stage:a"]),
            ("n = len(lst)", ["stage:b"]),
            ("lst.append(2)", ["stage:c"]),
            ("m = lst", ["stage:d"]),
        ],
    )
    s = stages(a)
    assert s["c"].order_after == ["b"]
    assert ("b", "c") in a.flow.edges
    assert s["d"].inputs == {"lst": "c"}
    assert a.flow.order.index("b") < a.flow.order.index("c")


@pytest.mark.parametrize("code", ["df.head()", "print(df)", "len(df)", "df.describe()", "r = df.groupby('a').sum()"])
def test_pure_calls_do_not_mutate(tmp_path, code):
    a = run(
        tmp_path,
        [
            ("import pandas as pd\ndf = pd.DataFrame({'a': [1]})", ["stage:a"]),
            (code, ["stage:b"]),
            ("z = df", ["stage:c"]),
        ],
    )
    s = stages(a)
    assert "df" not in s["b"].outputs
    assert s["c"].inputs == {"df": "a"}
    assert ("b", "c") not in a.flow.edges


# --- scoping --------------------------------------------------------------------------------------------------------


def test_comprehension_variable_does_not_leak(tmp_path):
    with pytest.raises(UnknownNameError) as info:
        run(tmp_path, [("data = [1, 2]\nsq = [i * i for i in data]", ["stage:a"]), ("print(i)", ["stage:b"])])
    assert info.value.name == "i"
    assert info.value.cell == 2


def test_comprehension_variable_does_not_shadow_an_earlier_global(tmp_path):
    a = run(
        tmp_path,
        [("i = 0", ["stage:z"]), ("sq = [i * i for i in range(3)]", ["stage:a"]), ("print(i)", ["stage:b"])],
    )
    s = stages(a)
    assert s["b"].inputs == {"i": "z"}
    assert "i" not in s["a"].inputs and "i" not in s["a"].outputs


def test_walrus_in_a_top_level_comprehension_binds_a_global(tmp_path):
    a = run(
        tmp_path,
        [
            ("data = [1, 5]\nsq = [(last := v) for v in data]\nany((hit := v) > 3 for v in data)", ["stage:a"]),
            ("print(last, hit)", ["stage:b"]),
        ],
    )
    s = stages(a)
    assert s["b"].inputs == {"last": "a", "hit": "a"}
    assert {"last", "hit"} <= set(s["a"].outputs)


def test_match_captures_bind_globals(tmp_path):
    code = (
        "cmd = ('go', 3)\n"
        "cfg = {'k': 1, 'z': 2}\n"
        "match cmd:\n"
        "    case (verb, *more):\n"
        "        pass\n"
        "match cfg:\n"
        "    case {'k': kv, **rest}:\n"
        "        pass\n"
        "    case other:\n"
        "        pass\n"
    )
    a = run(tmp_path, [(code, ["stage:a"]), ("print(verb, more, kv, rest, other)", ["stage:b"])])
    s = stages(a)
    assert s["b"].inputs == {"verb": "a", "more": "a", "kv": "a", "rest": "a", "other": "a"}


def test_match_class_pattern_keyword_is_an_attribute_not_a_read(tmp_path):
    # In `case P(x=px)`, `x` names an attribute of P; only `px` is a name (bound by the pattern).
    a = run(
        tmp_path,
        [
            ("class P:\n    def __init__(self, x):\n        self.x = x\n\n\np = P(1)", ["stage:a"]),
            ("match p:\n    case P(x=px):\n        pass", ["stage:b"]),
            ("print(px)", ["stage:c"]),
        ],
    )
    s = stages(a)
    assert s["b"].inputs == {"p": "a"}
    assert s["c"].inputs == {"px": "b"}


def test_lambda_reading_a_global_makes_it_an_input_of_the_stage_using_it(tmp_path):
    a = run(tmp_path, [("factor = 3", ["stage:a"]), ("f = lambda v: v * factor\nr = f(2)", ["stage:b"])])
    assert stages(a)["b"].inputs == {"factor": "a"}
    assert stages(a)["a"].outputs == ["factor"]


def test_closure_reading_a_global_makes_it_an_input_of_the_stage_using_it(tmp_path):
    code = "def outer():\n    def inner(v):\n        return v * factor\n    return inner\n\n\nr = outer()(2)"
    a = run(tmp_path, [("factor = 3", ["stage:a"]), (code, ["stage:b"])])
    s = stages(a)
    assert s["b"].inputs == {"factor": "a"}


def test_lambda_called_later_reads_the_global_at_call_time(tmp_path):
    # In the notebook `f(2)` reads `factor` when it runs: 20, the value stage b bound, not 3.
    a = run(
        tmp_path,
        [
            ("factor = 3\nf = lambda v: v * factor", ["stage:a"]),
            ("factor = 10", ["stage:b"]),
            ("r = f(2)", ["stage:c"]),
        ],
    )
    s = stages(a)
    assert s["c"].inputs.get("factor") == "b", s["c"].inputs


def test_closure_made_before_its_global_changed_is_refused(tmp_path):
    # A closure returned by a factory is a value; the pipeline cannot make it see stage b's `factor`, so it
    # must refuse clearly rather than silently compute 6 where the notebook computes 20.
    define = "def make():\n    def inner(v):\n        return v * factor\n    return inner\n\n\nf = make()"
    nb = make_notebook(
        tmp_path,
        [("factor = 3\n" + define, ["stage:a"]), ("factor = 10", ["stage:b"]), ("r = f(2)", ["stage:c"])],
    )
    with pytest.raises(
        UnsupportedCodeError, match=r"`f` was made in cell 1 by code that uses `make`.*`factor`"
    ) as info:
        analyze(nb)
    assert "cell 3" in str(info.value)
    assert "stage 'b' rebinds `factor` (cell 2) before it uses `f`" in str(info.value)


def test_function_reading_a_global_is_copied_into_the_stage_that_calls_it(tmp_path):
    a = run(
        tmp_path,
        [("factor = 3\n\n\ndef scale(v):\n    return v * factor", ["stage:a"]), ("r = scale(2)", ["stage:b"])],
    )
    s = stages(a)
    assert [u.def_name for u in s["b"].copies] == ["scale"]
    assert s["b"].inputs == {"factor": "a"}
    assert "scale" not in s["b"].shared_names
    assert "def scale(v):" in a.rendered.files["stages/b.py"]
    assert "scale" not in a.rendered.files.get("shared.py", "")
    assert_compiles(a)


def test_pure_helper_goes_to_the_shared_module(tmp_path):
    a = run(
        tmp_path,
        [
            ("import math\n\n\ndef hyp(a, b):\n    return math.sqrt(a * a + b * b)", ["stage:a"]),
            ("r = hyp(3, 4)", ["stage:b"]),
        ],
    )
    s = stages(a)
    assert s["b"].shared_names == ["hyp"]
    assert s["b"].copies == []
    assert s["b"].inputs == {}
    shared = a.rendered.files["shared.py"]
    assert "def hyp(a, b):" in shared and "import math" in shared
    assert "from ..shared import hyp" in a.rendered.files["stages/b.py"]
    assert "def hyp" not in a.rendered.files["stages/b.py"]
    assert_compiles(a)


def test_global_statement_in_a_function_rebinds_the_global(tmp_path):
    a = run(
        tmp_path,
        [
            ("counter = 0\n\n\ndef bump():\n    global counter\n    counter += 1", ["stage:a"]),
            ("bump()", ["stage:b"]),
            ("print(counter)", ["stage:c"]),
        ],
    )
    s = stages(a)
    assert s["b"].inputs == {"counter": "a"}
    assert s["b"].outputs == ["counter"]
    assert s["c"].inputs == {"counter": "b"}
    code = a.rendered.files["stages/b.py"]
    assert "nonlocal counter" in code and "global counter" not in code
    assert_compiles(a)


def test_star_import_is_available_to_the_stage_that_uses_its_names(tmp_path):
    a = run(tmp_path, [("from math import *", ["stage:a"]), ("r = sqrt(4)", ["stage:b"])])
    s = stages(a)
    assert s["b"].star_imports == ["math"]
    assert "from math import *" in a.rendered.files["stages/b.py"]
    assert_compiles(a)


# --- magics ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["%timeit x = f()", "%timeit x = f()\nz = 1"])
def test_timeit_binds_nothing(tmp_path, cell):
    with pytest.raises(UnknownNameError) as info:
        run(tmp_path, [("def f():\n    return 1", ["stage:a"]), (cell, ["stage:b"]), ("print(x)", ["stage:c"])])
    assert info.value.name == "x"
    assert info.value.cell == 3


def test_time_keeps_the_code_it_wraps(tmp_path):
    a = run(
        tmp_path, [("def f():\n    return 1", ["stage:a"]), ("%time y = f()", ["stage:b"]), ("print(y)", ["stage:c"])]
    )
    s = stages(a)
    assert s["b"].outputs == ["y"]
    assert s["c"].inputs == {"y": "b"}
    code = a.rendered.files["stages/b.py"]
    assert "y = f()" in code and "get_ipython" not in code


def test_pip_install_becomes_a_requirement(tmp_path):
    a = run(tmp_path, [("!pip install foo==1.0 bar\nx = 1", ["stage:a"]), ("%pip install -q baz\ny = 2", ["stage:b"])])
    assert a.flow.requirements == ["foo==1.0", "bar", "baz"]
    assert stages(a)["a"].requirements == ["foo==1.0", "bar"]
    assert json.loads(a.rendered.files["pipeline.json"])["requirements"] == ["foo==1.0", "bar", "baz"]
    code = a.rendered.files["stages/a.py"]
    assert "get_ipython" not in code and "system(" not in code
    assert_compiles(a)


@pytest.mark.parametrize("source", ["", "# only a comment", "%pip install foo", "%matplotlib inline", "%timeit 1 + 1"])
def test_cell_without_statements_is_accepted(tmp_path, source):
    a = run(tmp_path, [("x = 1", ["stage:a"]), (source, []), ("y = x", ["stage:b"])])
    assert stages(a)["b"].inputs == {"x": "a"}


def test_matplotlib_inline_is_dropped_with_a_comment(tmp_path):
    a = run(tmp_path, [("%matplotlib inline\nx = 1", ["stage:a"])])
    code = a.rendered.files["stages/a.py"]
    assert "# nb2pipe: dropped `%matplotlib inline` (display only)" in code
    assert "get_ipython" not in code and "run_line_magic" not in code
    assert "x = 1" in code
    assert_compiles(a)


# --- process-wide state ---------------------------------------------------------------------------------------------


def test_random_seed_flows_to_the_stage_that_draws(tmp_path):
    a = run(
        tmp_path,
        [
            ("import numpy as np\nnp.random.seed(0)", ["stage:a"]),
            ("y = 1", ["stage:b"]),
            ("z = np.random.rand()", ["stage:c"]),
        ],
    )
    s = stages(a)
    assert s["a"].state_out == ["numpy.random"]
    assert s["c"].state_in == {"numpy.random": "a"}
    assert s["b"].state_in == {} and s["b"].state_out == []
    assert ("a", "c") in a.flow.edges


def test_reading_process_state_depends_on_the_stage_that_set_it(tmp_path):
    a = run(
        tmp_path,
        [
            ("import os\nos.environ['X'] = '1'", ["stage:a"]),
            ("y = 2", ["stage:b"]),
            ("v = os.environ['X']", ["stage:c"]),
        ],
    )
    s = stages(a)
    assert s["a"].state_out == ["os.environ"]
    assert s["c"].state_in == {"os.environ": "a"}
    assert ("a", "c") in a.flow.edges


def test_draw_without_seed_reads_state_from_the_start(tmp_path):
    a = run(tmp_path, [("import random\nv = random.random()", ["stage:a"])])
    assert stages(a)["a"].state_in == {"random": None}


@pytest.mark.parametrize(
    ("code", "key"),
    [
        ("import pandas as pd\npd.set_option('display.max_rows', 5)", "pandas.options"),
        ("import os\nos.environ['X'] = '1'", "os.environ"),
        ("import warnings\nwarnings.filterwarnings('ignore')", "warnings.filters"),
    ],
)
def test_process_wide_state_is_detected(tmp_path, code, key):
    a = run(tmp_path, [(code, ["stage:a"]), ("q = 1", ["stage:b"])])
    s = stages(a)
    assert s["a"].state_out == [key]
    assert s["b"].state_out == []


# --- files ----------------------------------------------------------------------------------------------------------


def test_literal_file_paths_and_reads_tag(tmp_path):
    a = run(
        tmp_path,
        [
            ("import pandas as pd\ndf = pd.read_csv('data.csv')", ["stage:a", "reads:other.csv"]),
            ("df.to_csv('out.csv')\nwith open('log.txt', 'w') as fh:\n    fh.write('x')", ["stage:b"]),
        ],
    )
    s = stages(a)
    assert set(s["a"].files_read) == {"data.csv", "other.csv"}
    assert s["a"].files_written == []
    assert s["b"].files_written == ["out.csv", "log.txt"]
    assert s["b"].files_read == []


def test_more_readers_and_writers(tmp_path):
    code = (
        "import numpy as np\n"
        "import matplotlib.pyplot as plt\n"
        "arr = np.load('arr.npy')\n"
        "with open('notes.txt') as fh:\n"
        "    t = fh.read()\n"
        "plt.savefig('fig.png')\n"
        "np.save('out.npy', arr)\n"
        "path = 'computed' + '.csv'\n"
        "other = np.load(path)\n"
    )
    s = stages(run(tmp_path, [(code, ["stage:a"])]))
    assert s["a"].files_read == ["arr.npy", "notes.txt"]
    assert s["a"].files_written == ["fig.png", "out.npy"]


# --- tags -----------------------------------------------------------------------------------------------------------


def test_after_tag_adds_an_edge(tmp_path):
    a = run(tmp_path, [("x = 1", ["stage:a"]), ("y = 2", ["stage:b", "after:a"]), ("z = 3", ["stage:c"])])
    s = stages(a)
    assert s["b"].after == ["a"]
    assert a.flow.edges == {("a", "b"): []}


def test_after_tag_pointing_forward_reorders_stages(tmp_path):
    a = run(tmp_path, [("x = 1", ["stage:a", "after:b"]), ("y = 2", ["stage:b"])])
    assert a.flow.edges == {("b", "a"): []}
    assert a.flow.order == ["b", "a"]


def test_parameters_are_typed_and_each_stage_gets_only_those_it_reads(tmp_path):
    a = run(
        tmp_path,
        [
            ("alpha = 0.5\nn: int = 3\nname = 'x'\nflag = True\nitems = [1, 2]", ["parameters"]),
            ("r = alpha * 2", ["stage:a"]),
            ("s = name * n", ["stage:b"]),
            ("t = 1", ["stage:c"]),
        ],
    )
    params = {p.name: (p.type, p.default) for p in a.flow.parameters}
    assert params == {
        "alpha": ("float", 0.5),
        "n": ("int", 3),
        "name": ("str", "x"),
        "flag": ("bool", True),
        "items": ("list", [1, 2]),
    }
    s = stages(a)
    assert s["a"].params == ["alpha"]
    assert sorted(s["b"].params) == ["n", "name"]
    assert s["c"].params == []
    assert s["a"].inputs == {} and s["b"].inputs == {}
    assert "def a(alpha=0.5):" in a.rendered.files["stages/a.py"]
    assert_compiles(a)


def test_parameter_mutated_by_a_stage_does_not_leak_into_the_next_run(tmp_path, monkeypatch):
    import importlib

    nb = make_notebook(
        tmp_path,
        [("items = [1]", ["parameters"]), ("items.append(3)", ["stage:a"]), ("n = len(items)", ["stage:b", "metrics"])],
        name="mutparam.ipynb",
    )
    convert(nb, tmp_path / "out")
    monkeypatch.syspath_prepend(str(tmp_path / "out"))
    pkg = importlib.import_module("mutparam")
    try:
        first, second = pkg.run()["b"]["n"], pkg.run()["b"]["n"]
        assert (first, second) == (2, 2)
        assert pkg.PARAMETERS == {"items": [1]}
    finally:
        for mod in [m for m in sys.modules if m == "mutparam" or m.startswith("mutparam.")]:
            del sys.modules[mod]


def test_kale_tags_map_to_their_nb2pipe_equivalents(tmp_path):
    a = run(
        tmp_path,
        [
            ("import numpy as np", ["imports"]),
            ("def sq(v):\n    return np.square(v)", ["functions"]),
            ("n = 3", ["pipeline-parameters"]),
            ("x = sq(np.arange(n))", ["block:load"]),
            ("dbg = 1", ["skip"]),
            ("y = x + 1", ["step:train", "prev:load"]),
            ("score = float(y.sum())", ["block:evaluate"]),
            ("final = score * 2", ["pipeline-metrics"]),
        ],
    )
    roles = [(r.cell.id, r.role, r.stage, r.metrics) for r in a.plan.roles]
    assert roles == [
        ("c0", "shared", None, False),
        ("c1", "shared", None, False),
        ("c2", "parameters", None, False),
        ("c3", "stage", "load", False),
        ("c4", "skip", None, False),
        ("c5", "stage", "train", False),
        ("c6", "stage", "evaluate", False),
        ("c7", "stage", "evaluate", True),
    ]
    s = stages(a)
    assert list(s) == ["load", "train", "evaluate"]
    assert [p.name for p in a.flow.parameters] == ["n"]
    assert s["load"].params == ["n"]
    assert s["load"].shared_names == ["sq"]
    assert s["train"].after == ["load"]
    assert s["train"].inputs == {"x": "load"}
    assert s["evaluate"].metrics == ["final"]
    assert "final" in s["evaluate"].outputs
    assert "dbg" not in "".join(a.rendered.files.values())
    assert "def sq(v):" in a.rendered.files["shared.py"]


def test_cells_above_the_first_stage_form_a_prelude(tmp_path):
    a = run(tmp_path, [("import numpy as np\ndata = np.arange(3)", []), ("y = data + 1", ["stage:a"])])
    s = stages(a)
    assert list(s) == ["prelude", "a"]
    assert s["a"].inputs == {"data": "prelude"}
    assert s["prelude"].outputs == ["data"]


def test_notebook_without_stage_tags_is_one_prelude_stage(tmp_path):
    a = run(tmp_path, [("import numpy as np", []), ("x = np.zeros(2)", []), ("y = x + 1", [])])
    assert [s.name for s in a.flow.stages] == ["prelude"]
    assert a.flow.order == ["prelude"]
    assert "y = x + 1" in a.rendered.files["stages/prelude.py"]


def test_no_prelude_when_cells_above_only_hold_imports_and_pure_definitions(tmp_path):
    a = run(
        tmp_path,
        [("import numpy as np\n\n\ndef f(v):\n    return np.square(v)", []), ("y = f(np.arange(3))", ["stage:a"])],
    )
    s = stages(a)
    assert list(s) == ["a"]
    assert "stages/prelude.py" not in a.rendered.files
    assert s["a"].shared_names == ["f"]
    assert "import numpy as np" in s["a"].imports


def test_metrics_tag_makes_outputs(tmp_path):
    a = run(tmp_path, [("x = 1", ["stage:a"]), ("acc = 0.9\nloss = 0.1", ["metrics"])])
    s = stages(a)
    assert s["a"].metrics == ["acc", "loss"]
    assert {"acc", "loss"} <= set(s["a"].outputs)
