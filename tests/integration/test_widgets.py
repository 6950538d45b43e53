"""The ``stages`` widget, built and driven in a real kernel.

nbclient executes a notebook that displays the widget, selects a stage, edits the analysed notebook on disk and
presses Refresh, then breaks it and presses Refresh again. We check what the kernel printed at each step and the
widget state nbclient saved into the executed notebook (what a front end would render).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]

REPORT = """\
print(json.dumps({
    "options": [label for label, _ in view.select.options],
    "value": view.select.value,
    "detail": view.detail.value,
    "summary": view.summary.value,
    "flow": view.flow.value,
    "error": view.error,
}))"""

CELLS = [
    "import json\nfrom nb2pipe.widgets import stages\nview = stages(PATH)\nview",
    REPORT,
    "view.select.value = 'train'\n" + REPORT,
    # Edit the analysed notebook: a new last stage that reads the model. Refresh keeps the selection.
    "import nbformat\n"
    "nb = nbformat.read(PATH, as_version=4)\n"
    "cell = nbformat.v4.new_code_cell('print(type(model).__name__)')\n"
    "cell.metadata['tags'] = ['stage:report']\n"
    "nb.cells.append(cell)\n"
    "nbformat.write(nb, PATH)\n"
    "view.refresh.click()\n" + REPORT,
    # Break it: the view shows the one-line error instead of raising.
    "nb.cells[-1].source = 'print(model'\nnbformat.write(nb, PATH)\nview.refresh.click()\n" + REPORT,
]


def reports(nb: Any) -> list[dict[str, Any]]:
    out = []
    for cell in nb.cells[1:]:
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
        out.append(json.loads(text))
    return out


def test_stages_widget_in_a_kernel(tmp_path: Path) -> None:
    from nbclient import NotebookClient

    target = tmp_path / "sweep_parameters.ipynb"
    shutil.copy(ROOT / "example_notebooks" / "sweep_parameters.ipynb", target)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source.replace("PATH", repr(str(target)))) for source in CELLS]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    first, train, refreshed, broken = reports(nb)

    assert first["options"] == [
        "1. load_data (0 in, 2 out)",
        "2. add_noise (1 in, 3 out)",
        "3. split (3 in, 4 out)",
        "4. train (3 in, 1 out)",
        "5. evaluate (5 in, 4 out)",
    ]
    assert first["value"] == "load_data" and first["error"] is None
    assert "<b>pipeline sweep_parameters</b> from sweep_parameters.ipynb: 5 stages, 6 parameters" in first["summary"]
    assert "<code>n_estimators</code></td><td style='padding-right:1em'>int</td>" in first["summary"]
    assert "<code>features</code> → add_noise" in first["detail"]
    assert "run order: load_data → add_noise → split → train → evaluate" in first["flow"]
    assert "<td style='padding-right:1em'>train</td><td style='padding-right:1em'>evaluate</td>" in first["flow"]

    assert train["value"] == "train"
    assert "<b>stage train</b>" in train["detail"]
    assert "<code>X_train</code> ← split" in train["detail"]
    assert "<code>n_estimators</code>, <code>max_depth</code>, <code>learning_rate</code>" in train["detail"]
    assert "<code>model</code> → evaluate" in train["detail"]

    assert refreshed["options"][-1] == "6. report (1 in, 0 out)"
    assert refreshed["value"] == "train"  # the selection survives a refresh
    assert "<code>model</code> → evaluate, report" in refreshed["detail"]

    assert broken["options"] == [] and broken["value"] is None
    assert f"{target}: cell 16 (id " in broken["error"]  # the appended cell, by number and id
    assert "invalid Python at line 1" in broken["error"] and "nb2pipe:" in broken["summary"]

    # What a front end renders: the displayed view and the saved widget state.
    view_output = nb.cells[0].outputs[-1]["data"]["application/vnd.jupyter.widget-view+json"]
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    root = state[view_output["model_id"]]
    assert root["model_name"] == "VBoxModel" and len(root["state"]["children"]) == 4
    selects = [m["state"] for m in state.values() if m["model_name"] == "SelectModel"]
    assert len(selects) == 1 and selects[0]["_options_labels"] == []
    buttons = [m["state"] for m in state.values() if m["model_name"] == "ButtonModel"]
    assert [b["description"] for b in buttons] == ["Refresh"]
