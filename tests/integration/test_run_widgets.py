"""``run_form`` and ``runs`` built and driven in a real kernel: fill the form, click Run, watch the tracked job end.

nbclient executes a driver notebook. Its cells build the form for a parameterized target notebook, set values
like a user would, click Run (the job runs papermill in a thread of the driver's kernel), wait for the ending,
then show the runs table. Each step prints the widgets' state as JSON for the assertions below.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.helpers import make_notebook

pytestmark = pytest.mark.kernel

TARGET_CELLS = [
    ("from typing import Literal\nn = 3\nlr = 0.5\nverbose = False\nmode: Literal['fast', 'exact'] = 'fast'\n"
     "layers = [1, 2]", ["parameters"]),
    ("import nb2pipe\nnb2pipe.record('score', n * lr + len(layers))\nprint(mode, verbose)", []),
]  # fmt: skip

DRIVER = [
    "import json\nfrom nb2pipe.widgets import run_form, runs\nform = run_form(TARGET, home=HOME)\nform",
    "print(json.dumps({name: [type(w).__name__, w.value] for name, w in form.fields.items()}))",
    "form.fields['n'].value = 4\nform.fields['mode'].value = 'exact'\nform.fields['layers'].value = '[1, 2, 3]'\n"
    "form.run_button.click()\nresult = form.wait(300)\n"
    "print(json.dumps({'status': result.status, 'metrics': result.metrics, 'parameters': result.parameters,"
    " 'shown': form.status.value, 'result': form.result.value, 'enabled': not form.run_button.disabled}))",
    "form.fields['layers'].value = '[1, 2'\nform.run_button.click()\nprint(json.dumps({'shown': form.status.value}))",
    "view = runs(home=HOME)\nview",
    "print(json.dumps({'rows': [[r['status'], r['parameters']] for r in view.rows], 'table': view.table.value}))",
]


def _printed(cell: Any) -> dict[str, Any]:
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
    return json.loads(text)


def test_run_form_and_runs_in_a_kernel(tmp_path: Path) -> None:
    from nbclient import NotebookClient

    target = make_notebook(tmp_path, TARGET_CELLS, name="target.ipynb")
    home = tmp_path / "store"
    driver = nbformat.v4.new_notebook()
    setup = f"TARGET = {str(target)!r}\nHOME = {str(home)!r}"
    driver.cells = [nbformat.v4.new_code_cell(src) for src in [setup, *DRIVER]]
    client = NotebookClient(driver, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    fields = _printed(driver.cells[2])
    assert fields == {
        "n": ["IntText", 3],
        "lr": ["FloatText", 0.5],
        "verbose": ["Checkbox", False],
        "mode": ["Dropdown", "fast"],
        "layers": ["Text", "[1, 2]"],
    }
    ran = _printed(driver.cells[3])
    assert ran["status"] == "succeeded", ran
    assert ran["parameters"] == {"n": 4, "lr": 0.5, "verbose": False, "mode": "exact", "layers": [1, 2, 3]}
    assert ran["metrics"] == {"score": 4 * 0.5 + 3}
    assert "succeeded" in ran["shown"] and "score" in ran["result"] and "target.ipynb" in ran["result"]
    assert ran["enabled"]
    refused = {k: html.unescape(v) for k, v in _printed(driver.cells[4]).items()}
    assert "parameter 'layers'" in refused["shown"] and "is not a list" in refused["shown"]
    table = _printed(driver.cells[6])
    assert table["rows"] == [["succeeded", ran["parameters"]]]  # the refused click started nothing
    assert "score=5.0" in table["table"] and "exact" in table["table"]
