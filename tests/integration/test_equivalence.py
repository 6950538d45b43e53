"""The pipeline computes what the notebook computes.

For each reference notebook we execute the notebook in a real kernel, with a cell injected after each stage that
pickles the stage's outputs as the notebook sees them at that point; then we run the generated package stage by
stage in a fresh Python process and pickle what each stage returns. Every value crossing a stage boundary, every
metric and the printed output must be equal. This is the test that catches silent wrong answers.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

import nb2pipe
from tests.compare import assert_same

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "example_notebooks").glob("*.ipynb")) + sorted(
    (ROOT / "tests" / "data" / "notebooks").glob("*.ipynb")
)

pytestmark = pytest.mark.kernel

_DUMP = """\
import pickle as __nb2pipe_pickle
with open({path!r}, "wb") as __nb2pipe_fh:
    __nb2pipe_pickle.dump({{__n: globals()[__n] for __n in {names!r} if __n in globals()}}, __nb2pipe_fh)
"""

# Stage by stage from pipeline.json, snapshotting each stage's outputs as soon as it returns (later stages may
# modify those objects in place, exactly as later cells do in the notebook).
_RUN_PIPELINE = """\
import importlib, json, pickle, sys
sys.path.insert(0, {outdir!r})
spec = json.load(open({spec!r}))
params = {{p["name"]: p["default"] for p in spec["parameters"]}}
stages = {{s["name"]: s for s in spec["stages"]}}
results, snapshots = {{}}, {{}}
for name in spec["order"]:
    stage = stages[name]
    func = getattr(importlib.import_module(stage["module"]), stage["function"])
    kwargs = {{i["name"]: results[i["from"]][i["name"]] for i in stage["inputs"]}}
    kwargs.update({{p: params[p] for p in stage["parameters"]}})
    results[name] = func(**kwargs)
    snapshots[name] = pickle.dumps(results[name])
with open({path!r}, "wb") as fh:
    pickle.dump({{k: pickle.loads(v) for k, v in snapshots.items()}}, fh)
"""


def execute_notebook(notebook: Path, analysis: nb2pipe.Analysis, workdir: Path) -> tuple[dict[str, Any], str]:
    """Run the notebook in a kernel, capturing each stage's outputs right after its last cell."""
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    last_cell = {s.cells[-1].cell.index: s for s in analysis.flow.stages}
    cells = []
    stage_cells: set[int] = set()
    for index, cell in enumerate(nb.cells):
        cells.append(cell)
        if index in last_cell:
            stage = last_cell[index]
            dump = workdir / f"nb-{stage.name}.pkl"
            cells.append(nbformat.v4.new_code_cell(_DUMP.format(path=str(dump), names=stage.outputs)))
    for stage in analysis.flow.stages:
        stage_cells.update(c.cell.index for c in stage.cells)
    nb.cells = cells
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    values = {s.name: pickle.loads((workdir / f"nb-{s.name}.pkl").read_bytes()) for s in analysis.flow.stages}
    # Printed output of the cells that belong to stages, in notebook order.
    printed = []
    original = [c for c in cells if "__nb2pipe_pickle" not in c.source]
    for index, cell in enumerate(original):
        if index in stage_cells:
            printed += [o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout"]
    return values, "".join(printed)


def run_pipeline(analysis: nb2pipe.Analysis, outdir: Path, workdir: Path) -> tuple[dict[str, Any], str]:
    dump = workdir / "pipeline.pkl"
    spec = outdir / analysis.name / "pipeline.json"
    code = _RUN_PIPELINE.format(outdir=str(outdir), spec=str(spec), path=str(dump))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return pickle.loads(dump.read_bytes()), proc.stdout


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_pipeline_reproduces_notebook(notebook: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    result = nb2pipe.convert(notebook, outdir)
    analysis = result.analysis
    nb_dir, pipe_dir = tmp_path / "nb", tmp_path / "pipe"
    nb_dir.mkdir()
    pipe_dir.mkdir()
    expected, nb_printed = execute_notebook(notebook, analysis, nb_dir)
    actual, pipe_printed = run_pipeline(analysis, outdir, pipe_dir)
    compared = 0
    for stage in analysis.flow.stages:
        assert sorted(actual[stage.name]) == sorted(stage.outputs)
        for name in stage.outputs:
            assert name in expected[stage.name], f"{stage.name}.{name} missing in the notebook run"
            assert_same(expected[stage.name][name], actual[stage.name][name], f"{stage.name}.{name}")
            compared += 1
    assert compared > 0
    assert pipe_printed == nb_printed
    print(json.dumps({"notebook": notebook.name, "values_compared": compared}))
