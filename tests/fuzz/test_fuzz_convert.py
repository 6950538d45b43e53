"""Property: for any notebook of random Python snippets split into stages, ``convert`` either refuses with an
``Nb2PipeError`` or writes a pipeline whose stages compute exactly what the cells compute in notebook order.

The snippets are drawn from the patterns that break other converters: in-place mutation of lists and dicts,
attribute writes, functions that read globals, ``global`` rebinding, lambdas, comprehensions, walrus, ``except ...
as e``, ``del``, loops that rebind, and a seeded global RNG whose draws are split across stages. Values are
snapshotted (pickled) right after the last cell of each stage in the notebook run and right after each stage
returns in the pipeline run; every output of every stage must be equal, and so must each stage's printed output.

Both runs happen in this process (plain ``exec``; the snippets need no kernel), so hundreds of examples are cheap.
How many examples were generated, refused and reproduced is printed in the test summary.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import pickle
import random
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import nb2pipe
from nb2pipe.errors import Nb2PipeError, UnknownNameError
from tests.compare import assert_same
from tests.fuzz import STATS
from tests.helpers import make_notebook

NAMES = ("a", "b", "c", "d", "e")


@dataclass
class _Program:
    """Statements drawn so far, with the kind of value each name holds (so snippets stay mostly valid)."""

    kinds: dict[str, str] = field(default_factory=dict)
    funcs: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[str]:
        return [n for n, k in self.kinds.items() if k == kind]


@st.composite
def _statement(draw: st.DrawFn, prog: _Program) -> str:
    ints, lists, dicts, objs = prog.of("int"), prog.of("list"), prog.of("dict"), prog.of("obj")
    target = draw(st.sampled_from(NAMES))
    k = draw(st.integers(-3, 9))
    choices = ["new_int", "new_list", "new_dict", "rng"]
    if ints:
        choices += ["int_expr", "augment", "print", "if", "loop", "try", "walrus", "def", "lambda", "global"]
    if lists:
        choices += ["append", "comprehension", "sorted", "extend_alias"]
    if dicts:
        choices += ["setitem"]
    if objs:
        choices += ["setattr"]
    if prog.funcs and ints:
        choices += ["call"]
    if len(prog.kinds) > 1:
        choices += ["delete"]
    choices += ["new_obj"]
    kind = draw(st.sampled_from(choices))
    pick = lambda names: draw(st.sampled_from(sorted(names)))  # noqa: E731
    if kind == "new_int":
        prog.kinds[target] = "int"
        return f"{target} = {k}"
    if kind == "new_list":
        prog.kinds[target] = "list"
        return f"{target} = [{k}, {k + 1}]" if not ints else f"{target} = [{pick(ints)}, {k}]"
    if kind == "new_dict":
        prog.kinds[target] = "dict"
        return f"{target} = {{'k': {k}}}"
    if kind == "new_obj":
        prog.kinds[target] = "obj"
        return f"{target} = Box({k})"
    if kind == "rng":
        prog.kinds[target] = "int"
        return f"random.seed({k})" if draw(st.booleans()) else f"{target} = random.randint(0, 1000)"
    if kind == "int_expr":
        src = pick(ints)
        prog.kinds[target] = "int"
        return f"{target} = {src} * {k} + 1"
    if kind == "augment":
        src = pick(ints)
        return f"{src} += {k}"
    if kind == "print":
        return f"print({pick(ints)!r}, {pick(ints)})"
    if kind == "if":
        src = pick(ints)
        prog.kinds[target] = "int"
        return f"if {src} > {k}:\n    {target} = {src}\nelse:\n    {target} = {k}"
    if kind == "loop":
        src = pick(ints)
        prog.kinds[target] = "int"
        return f"{target} = 0\nfor i in range({abs(k) % 4}):\n    {target} += i + {src}"
    if kind == "try":
        src = pick(ints)
        prog.kinds[target] = "int"
        return (
            f"try:\n    {target} = 100 // ({src} - {k})\nexcept ZeroDivisionError as err:\n    {target} = len(str(err))"
        )
    if kind == "walrus":
        src = pick(ints)
        prog.kinds[target] = "int"
        return f"{target} = (t := {src} + 1) * 2"
    if kind == "def":
        name = f"f{len(prog.funcs)}"
        prog.funcs.append(name)
        return f"def {name}(x):\n    return x + {pick(ints)}"
    if kind == "lambda":
        name = f"f{len(prog.funcs)}"
        prog.funcs.append(name)
        return f"{name} = lambda x: x * {k}"
    if kind == "global":
        name = f"f{len(prog.funcs)}"
        prog.funcs.append(name)  # called like the others: f(x) rebinds a global and returns x
        src = pick(ints)
        return f"def {name}(x):\n    global {src}\n    {src} = x + 1\n    return x"
    if kind == "call":
        func = draw(st.sampled_from(prog.funcs))
        prog.kinds[target] = "int"
        return f"{target} = {func}({pick(ints)})"
    if kind == "append":
        src = pick(lists)
        return f"{src}.append({pick(ints) if ints else k})"
    if kind == "extend_alias":
        src = pick(lists)
        prog.kinds[target] = "list"
        return f"{target} = {src}\n{target}.extend([{k}])"
    if kind == "comprehension":
        src = pick(lists)
        prog.kinds[target] = "list"
        return f"{target} = [x * {k} for x in {src} if x != {k}]"
    if kind == "sorted":
        src = pick(lists)
        prog.kinds[target] = "list"
        return f"{target} = sorted({src})"
    if kind == "setitem":
        src = pick(dicts)
        return f"{src}['{target}'] = {pick(ints) if ints else k}"
    if kind == "setattr":
        src = pick(objs)
        return f"{src}.value = {pick(ints) if ints else k}"
    if kind == "delete":
        victim = pick(prog.kinds)
        del prog.kinds[victim]
        return f"del {victim}"
    raise AssertionError(kind)


_SHARED = """\
import random


class Box:
    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Box({self.value!r})"

    def __eq__(self, other):
        return type(other) is Box and other.value == self.value
"""


@st.composite
def notebooks(draw: st.DrawFn) -> list[tuple[str, list[str]]]:
    """Cells as (source, tags): an imports cell, maybe a parameters cell, then 2-8 cells in 1-4 stages."""
    prog = _Program()
    cells: list[tuple[str, list[str]]] = [(_SHARED, ["shared"])]
    if draw(st.booleans()):
        prog.kinds["p"] = "int"
        cells.append((f"p = {draw(st.integers(0, 5))}", ["parameters"]))
    stage = 0
    for index in range(draw(st.integers(2, 8))):
        body = [draw(_statement(prog)) for _ in range(draw(st.integers(1, 3)))]
        tags: list[str] = []
        if index == 0 or (stage < 3 and draw(st.booleans())):
            tags = [f"stage:s{stage}"]
            stage += 1
        cells.append(("\n".join(body), tags))
    live = sorted(n for n in prog.kinds if n != "p")
    if live:  # a last stage that reads and prints every live value, so every value is compared
        cells.append((f"print({', '.join(f'repr({n})' for n in live)})", [f"stage:s{stage}"]))
    return cells


def _run_notebook(cells: list[tuple[str, list[str]]], analysis: nb2pipe.Analysis) -> tuple[dict[str, Any], dict]:
    """Execute the cells in order in one namespace; snapshot outputs and printed text per stage."""
    last = {s.cells[-1].cell.index: s for s in analysis.flow.stages}
    stage_of = {c.cell.index: s.name for s in analysis.flow.stages for c in s.cells}
    namespace: dict[str, Any] = {"__name__": "__nb__"}
    values: dict[str, Any] = {}
    printed: dict[str, str] = {s.name: "" for s in analysis.flow.stages}
    random.seed(12345)
    for index, (source, _tags) in enumerate(cells):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(source, f"<cell {index + 1}>", "exec"), namespace)
        if index in stage_of:
            printed[stage_of[index]] += out.getvalue()
        if index in last:
            stage = last[index]
            values[stage.name] = pickle.loads(pickle.dumps({n: namespace[n] for n in stage.outputs if n in namespace}))
    return values, printed


def _run_pipeline(directory: Path, package: str) -> tuple[dict[str, Any], dict]:
    spec = json.loads((directory / package / "pipeline.json").read_text())
    params = {p["name"]: p["default"] for p in spec["parameters"]}
    stages = {s["name"]: s for s in spec["stages"]}
    results: dict[str, Any] = {}
    snapshots: dict[str, Any] = {}
    printed: dict[str, str] = {}
    random.seed(12345)
    sys.path.insert(0, str(directory))
    try:
        for name in spec["order"]:
            stage = stages[name]
            func = getattr(importlib.import_module(stage["module"]), stage["function"])
            kwargs = {i["name"]: results[i["from"]][i["name"]] for i in stage["inputs"]}
            kwargs.update({p: params[p] for p in stage["parameters"]})
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                results[name] = func(**kwargs)
            printed[name] = out.getvalue()
            snapshots[name] = pickle.loads(pickle.dumps(results[name]))
    finally:
        sys.path.remove(str(directory))
        for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[module]
    return snapshots, printed


def _notebook_runs(cells: list[tuple[str, list[str]]]) -> bool:
    namespace: dict[str, Any] = {}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for source, _tags in cells:
                exec(source, namespace)
    except Exception:
        return False
    return True


_counter = iter(range(10**9))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(notebooks())
def test_convert_refuses_or_reproduces(cells: list[tuple[str, list[str]]]) -> None:
    STATS["generated"] += 1
    note("\n".join(f"# cell {i + 1} {tags}\n{source}" for i, (source, tags) in enumerate(cells)))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        notebook = make_notebook(tmp_path, cells)
        package = f"fuzz_pipeline_{next(_counter)}"
        try:
            result = nb2pipe.convert(notebook, tmp_path / "out", name=package)
        except Nb2PipeError as exc:
            message = str(exc)
            assert "\n" not in message and "nb.ipynb" in message, message
            STATS["refused"] += 1
            STATS[f"refused: {type(exc).__name__}"] += 1
            # Refusing is always safe, but count refusals of notebooks that run: they are usability bugs.
            if isinstance(exc, UnknownNameError) and _notebook_runs(cells):
                STATS["refused although the notebook runs"] += 1
            return
        try:
            expected, nb_printed = _run_notebook(cells, result.analysis)
        except Exception:  # the random program itself fails (e.g. uses a name after `del`): nothing to compare
            STATS["notebook raised"] += 1
            return
        actual, pipe_printed = _run_pipeline(tmp_path / "out", package)
        for stage in result.analysis.flow.stages:
            assert sorted(actual[stage.name]) == sorted(stage.outputs)
            for name in stage.outputs:
                assert_same(expected[stage.name][name], actual[stage.name][name], f"{stage.name}.{name}")
                STATS["values compared"] += 1
            assert pipe_printed[stage.name] == nb_printed[stage.name], stage.name
        STATS["reproduced"] += 1
