"""Valid notebooks the converter used to refuse: each converts, and its pipeline computes what the notebook does.

Every case is run twice: as the notebook runs (the cells top to bottom in one namespace) and as the generated
pipeline (the package imported and ``run()``, and the one-file script export executed); the values the last stage
prints must agree.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import runpy
import sys
from pathlib import Path

import pytest

import nb2pipe
from nb2pipe.errors import UnknownNameError
from tests.helpers import Cell, make_notebook


def _notebook_output(cells: list[Cell]) -> str:
    out = io.StringIO()
    namespace: dict[str, object] = {"__name__": "__main__"}
    with contextlib.redirect_stdout(out):
        for source, _ in cells:
            exec(compile(source, "<cell>", "exec"), namespace)  # the test's own notebook
    return out.getvalue()


def _pipeline_output(tmp_path: Path, cells: list[Cell], name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    nb = make_notebook(tmp_path, cells, name=f"{name}.ipynb")
    nb2pipe.convert(nb, tmp_path / "out")
    monkeypatch.syspath_prepend(str(tmp_path / "out"))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            importlib.import_module(name).run()
    finally:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]
    script = tmp_path / f"{name}_script.py"
    nb2pipe.export_script(nb, script)
    from_script = io.StringIO()
    monkeypatch.setattr(sys, "argv", [str(script)])
    with contextlib.redirect_stdout(from_script):
        runpy.run_path(str(script), run_name="__main__")
    assert from_script.getvalue() == out.getvalue()
    return out.getvalue()


DEL_THEN_GLOBAL_REBIND = [
    ("x = 1\n\n\ndef reset():\n    global x\n    x = 0", ["stage:a"]),
    ("print(x)\ndel x", ["stage:b"]),
    ("reset()\nprint(x)", ["stage:c"]),
]


def test_del_in_one_stage_then_a_function_rebinding_the_name_through_global(tmp_path, monkeypatch):
    analysis = nb2pipe.analyze(make_notebook(tmp_path, DEL_THEN_GLOBAL_REBIND))
    stages = {s.name: s for s in analysis.flow.stages}
    assert stages["c"].inputs == {}  # the deleted x is not passed along: reset() binds a new one
    assert "x: object" in analysis.rendered.files["stages/c.py"]
    expected = _notebook_output(DEL_THEN_GLOBAL_REBIND)
    assert expected == "1\n0\n"
    assert _pipeline_output(tmp_path, DEL_THEN_GLOBAL_REBIND, "delrebind", monkeypatch) == expected


def test_the_rebound_name_flows_on_to_later_stages(tmp_path, monkeypatch):
    cells = [*DEL_THEN_GLOBAL_REBIND, ("print(x + 1)", ["stage:d"])]
    stages = {s.name: s for s in nb2pipe.analyze(make_notebook(tmp_path, cells)).flow.stages}
    assert stages["c"].outputs == ["x"] and stages["d"].inputs == {"x": "c"}
    assert _pipeline_output(tmp_path, cells, "delrebindlater", monkeypatch) == _notebook_output(cells)


def test_a_function_that_reads_the_deleted_global_is_still_refused(tmp_path):
    cells = [
        ("x = 1\n\n\ndef bump():\n    global x\n    x += 1", ["stage:a"]),
        ("del x", ["stage:b"]),
        ("bump()", ["stage:c"]),
    ]
    with pytest.raises(UnknownNameError) as info:
        nb2pipe.analyze(make_notebook(tmp_path, cells))
    assert info.value.name == "x" and info.value.cell == 3


EMPTY_LOOP_READS_LATER_NAME = [
    ("a = 0", ["stage:s"]),
    ("for i in range(0):\n    a += i + b\nprint(a)", ["stage:t"]),
    ("b = 2\nprint(a, b)", ["stage:u"]),
]


def test_a_loop_body_that_never_runs_does_not_read_a_name_bound_later(tmp_path, monkeypatch):
    stages = {s.name: s for s in nb2pipe.analyze(make_notebook(tmp_path, EMPTY_LOOP_READS_LATER_NAME)).flow.stages}
    assert "b" not in stages["t"].inputs
    expected = _notebook_output(EMPTY_LOOP_READS_LATER_NAME)
    assert expected == "0\n0 2\n"
    assert _pipeline_output(tmp_path, EMPTY_LOOP_READS_LATER_NAME, "emptyloop", monkeypatch) == expected


@pytest.mark.parametrize(
    "reader",
    [
        "for i in range(3):\n    a += i + b",  # the loop runs: the notebook itself fails here
        "a += b",  # not in a loop at all
        "for i in range(0):\n    a += i + never_bound",  # a name no cell binds: a typo, still refused
    ],
)
def test_reads_that_would_fail_in_the_notebook_are_still_refused(tmp_path, reader):
    cells = [("a = 0", ["stage:s"]), (reader, ["stage:t"]), ("b = 2", ["stage:u"])]
    with pytest.raises(UnknownNameError) as info:
        nb2pipe.analyze(make_notebook(tmp_path, cells))
    assert info.value.cell == 2


@pytest.mark.parametrize(
    "never_runs",
    [
        "for i in range(-2):\n    a += b",
        "for i in range(3, 3):\n    a += b",
        "for i in []:\n    a += b",
        "for k in {}:\n    a += b",
        "for c in '':\n    a += b",
        "while False:\n    a += b",
        "if 0:\n    a += b",
        "a += len([b for i in ()])",
        "a += len([i for i in range(0) if b])",
    ],
)
def test_code_that_never_runs(tmp_path, never_runs):
    cells = [("a = 0", ["stage:s"]), (never_runs, ["stage:t"]), ("b = 2", ["stage:u"])]
    stages = {s.name: s for s in nb2pipe.analyze(make_notebook(tmp_path, cells)).flow.stages}
    assert stages["t"].inputs == {"a": "s"}


@pytest.mark.parametrize(
    "may_run",
    [
        "for i in range(1):\n    a += b",
        "for i in range(0, 5):\n    a += b",
        "for i in [0]:\n    a += b",
        "while a:\n    a += b",
        "if a == 0:\n    a += b",
        "for i in range(0):\n    pass\nelse:\n    a += b",  # a for loop's else runs after zero iterations
        "a += len([b for i in (1,)])",
    ],
)
def test_code_that_may_run_still_needs_its_names(tmp_path, may_run):
    cells = [("a = 0", ["stage:s"]), (may_run, ["stage:t"]), ("b = 2", ["stage:u"])]
    with pytest.raises(UnknownNameError) as info:
        nb2pipe.analyze(make_notebook(tmp_path, cells))
    assert info.value.name == "b"


def test_a_range_of_the_notebooks_own_is_not_the_builtin(tmp_path):
    cells = [
        ("a = 0\n\n\ndef range(n):\n    return [n]", ["stage:s"]),
        ("for i in range(0):\n    a += b", ["stage:t"]),
        ("b = 2", ["stage:u"]),
    ]
    with pytest.raises(UnknownNameError):
        nb2pipe.analyze(make_notebook(tmp_path, cells))
