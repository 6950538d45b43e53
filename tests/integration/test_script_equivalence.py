"""The exported script computes and prints what the notebook computes and prints.

Each reference notebook is executed in a real kernel (with the helpers of ``test_equivalence``, which snapshot
every stage's outputs right after its last cell). Its script is then run twice in fresh processes: as users run it,
``python script.py``, whose standard output must equal the notebook's printed output; and through ``main([])``
with every stage function wrapped to snapshot what it returns, so each value crossing a stage boundary is compared
with the notebook's. The same again with parameters changed on the command line, against the notebook executed
with those values in its parameters cell.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

import nb2pipe
from nb2pipe.script import export_script, plan_script
from tests.compare import assert_same
from tests.integration.test_equivalence import NOTEBOOKS, execute_notebook

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden_scripts"

pytestmark = pytest.mark.kernel

# Load the script as a module, wrap each stage function to pickle what it returns the moment it returns (later
# stages may modify those objects in place, as later cells do in the notebook), then run main().
_RUN_MAIN = """\
import importlib.util, pickle, sys
spec = importlib.util.spec_from_file_location("exported", {script!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
snapshots = {{}}

def wrap(stage, func):
    def run(*args, **kwargs):
        result = func(*args, **kwargs)
        snapshots[stage] = pickle.dumps(result)
        return result
    return run

for stage, name in {functions!r}.items():
    setattr(module, name, wrap(stage, getattr(module, name)))
results = module.{main}({argv!r})
assert list(results) == {order!r}, list(results)
with open({path!r}, "wb") as fh:
    pickle.dump({{k: pickle.loads(v) for k, v in snapshots.items()}}, fh)
"""


def run_python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def run_main(script: Path, analysis: nb2pipe.Analysis, argv: list[str], workdir: Path) -> tuple[dict[str, Any], str]:
    plan = plan_script(analysis.flow)
    dump = workdir / "script.pkl"
    code = _RUN_MAIN.format(
        script=str(script),
        functions=plan.functions,
        main="main",
        argv=argv,
        order=analysis.flow.order,
        path=str(dump),
    )
    proc = run_python(["-c", code], workdir)
    return pickle.loads(dump.read_bytes()), proc.stdout


def compare(analysis: nb2pipe.Analysis, expected: dict[str, Any], actual: dict[str, Any]) -> int:
    compared = 0
    for stage in analysis.flow.stages:
        assert sorted(actual[stage.name]) == sorted(stage.outputs)
        for name in stage.outputs:
            assert name in expected[stage.name], f"{stage.name}.{name} missing in the notebook run"
            assert_same(expected[stage.name][name], actual[stage.name][name], f"{stage.name}.{name}")
            compared += 1
    return compared


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_script_reproduces_notebook(notebook: Path, tmp_path: Path) -> None:
    analysis = nb2pipe.analyze(notebook)
    script = tmp_path / f"{analysis.name}.py"
    export_script(notebook, script)
    nb_dir, main_dir, plain_dir = tmp_path / "nb", tmp_path / "main", tmp_path / "plain"
    for d in (nb_dir, main_dir, plain_dir):
        d.mkdir()
    expected, nb_printed = execute_notebook(notebook, analysis, nb_dir)
    assert nb_printed, "the notebook printed nothing: nothing to compare"

    plain = run_python([str(script)], plain_dir)
    assert plain.stdout == nb_printed

    actual, main_printed = run_main(script, analysis, [], main_dir)
    assert main_printed == nb_printed
    compared = compare(analysis, expected, actual)
    assert compared > 0
    print(json.dumps({"notebook": notebook.name, "values_compared": compared}))


def with_parameters(notebook: Path, values: dict[str, object], target: Path) -> Path:
    """A copy of ``notebook`` whose parameters cell assigns ``values`` instead of its defaults."""
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.splitlines()
    for name, value in values.items():
        match = [i for i, line in enumerate(lines) if re.match(rf"{name}\s*[:=]", line)]
        assert len(match) == 1, name
        lines[match[0]] = f"{lines[match[0]].split('=')[0].rstrip()} = {value!r}"
    cell.source = "\n".join(lines)
    nbformat.write(nb, target)
    return target


def test_options_change_results_like_the_parameters_cell(tmp_path: Path) -> None:
    """``--n-estimators 7 --test-size 0.4`` gives what the notebook gives with those values, and not the default."""
    notebook = ROOT / "example_notebooks" / "sweep_parameters.ipynb"
    values = {"n_estimators": 7, "test_size": 0.4, "n_noise_features": 5}
    argv = ["--n-estimators", "7", "--test-size", "0.4", "--n-noise-features", "5"]
    changed = with_parameters(notebook, values, tmp_path / "sweep_parameters.ipynb")
    script = tmp_path / "sweep.py"
    export_script(notebook, script)
    analysis = nb2pipe.analyze(changed)
    nb_dir, main_dir, plain_dir, default_dir = (tmp_path / n for n in ("nb", "main", "plain", "default"))
    for d in (nb_dir, main_dir, plain_dir, default_dir):
        d.mkdir()
    expected, nb_printed = execute_notebook(changed, analysis, nb_dir)

    plain = run_python([str(script), *argv], plain_dir)
    assert plain.stdout == nb_printed
    assert "trees fitted: 7\n" in plain.stdout and "train: 106 test: 72\n" in plain.stdout

    actual, _ = run_main(script, analysis, argv, main_dir)
    assert compare(analysis, expected, actual) > 0
    assert actual["train"]["model"].n_estimators == 7

    default = run_python([str(script)], default_dir)
    assert "trees fitted: 100\n" in default.stdout
    assert default.stdout != plain.stdout


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_script_matches_golden(notebook: Path, update_goldens: bool) -> None:
    code = export_script(notebook)
    golden = GOLDEN / f"{nb2pipe.analyze(notebook).name}.py"
    if update_goldens:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(code)
        pytest.skip("golden updated")
    assert code == golden.read_text(), f"{golden.name} differs; rerun with --update-goldens if intended"
