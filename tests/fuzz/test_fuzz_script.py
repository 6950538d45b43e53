"""Property: for any random notebook the converter accepts, the exported script computes what the cells compute.

The notebooks are ``test_fuzz_convert``'s (mutation, globals, ``global``, closures, a seeded RNG split across
stages...). The script is loaded as a module in this process; each stage function is wrapped to snapshot what it
returns and what it prints, and ``main([])`` runs them, so both the stage functions and main()'s wiring of inputs
and parameters are checked against the notebook run, stage by stage.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import pickle
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, note, settings

import nb2pipe
from nb2pipe.errors import Nb2PipeError
from nb2pipe.script import plan_script, render_script
from tests.compare import assert_same
from tests.fuzz import STATS
from tests.fuzz.test_fuzz_convert import _run_notebook, notebooks
from tests.helpers import make_notebook


def _run_script(path: Path, functions: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    spec = importlib.util.spec_from_file_location(f"fuzz_script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    snapshots: dict[str, Any] = {}
    printed: dict[str, str] = {}

    def wrap(stage: str, func: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                result = func(*args, **kwargs)
            printed[stage] = out.getvalue()
            snapshots[stage] = pickle.loads(pickle.dumps(result))
            return result

        return run

    for stage, name in functions.items():
        setattr(module, name, wrap(stage, getattr(module, name)))
    random.seed(12345)
    module.main([])
    return snapshots, printed


_counter = iter(range(10**9))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(notebooks())
def test_script_refuses_or_reproduces(cells: list[tuple[str, list[str]]]) -> None:
    STATS["script: generated"] += 1
    note("\n".join(f"# cell {i + 1} {tags}\n{source}" for i, (source, tags) in enumerate(cells)))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        notebook = make_notebook(tmp_path, cells)
        try:
            analysis = nb2pipe.analyze(notebook)
            code = render_script(analysis)
        except Nb2PipeError:
            STATS["script: refused"] += 1
            return
        try:
            expected, nb_printed = _run_notebook(cells, analysis)
        except Exception:  # the random program itself fails: nothing to compare
            STATS["script: notebook raised"] += 1
            return
        script = tmp_path / f"s{next(_counter)}.py"
        script.write_text(code)
        actual, printed = _run_script(script, plan_script(analysis.flow).functions)
        for stage in analysis.flow.stages:
            assert sorted(actual[stage.name]) == sorted(stage.outputs)
            for name in stage.outputs:
                assert_same(expected[stage.name][name], actual[stage.name][name], f"{stage.name}.{name}")
                STATS["script: values compared"] += 1
            assert printed[stage.name] == nb_printed[stage.name], stage.name
        STATS["script: reproduced"] += 1
