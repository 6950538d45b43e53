"""The Pipeline sidebar in a real JupyterLab and a real Chromium: tag, see the DAG, undo, save, export, run.

Everything is checked where a user would see it (the sidebar, the cells, the DAG) and where the converter reads it
(``metadata.tags`` in the ``.ipynb`` on disk after Control+S).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import SCREENSHOTS
from tests.ui.lab import Lab

pytestmark = pytest.mark.browser

SOURCES = [
    "import math",
    "n = 4",
    "values = [math.sqrt(i) for i in range(n)]",
    "total = sum(values)\nprint(total)",
]


def write_notebook(path: Path) -> None:
    cells: list[dict[str, Any]] = [{"cell_type": "markdown", "id": "intro", "metadata": {}, "source": "# Demo"}]
    for i, src in enumerate(SOURCES):
        cells.append(
            {"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
        )
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": cells,
    }
    path.write_text(json.dumps(nb, indent=1))


def tags_on_disk(path: Path) -> dict[str, list[str]]:
    return {c["id"]: c["metadata"].get("tags", []) for c in json.loads(path.read_text())["cells"]}


def select_cell(page: Any, index: int) -> None:
    """Make cell ``index`` the active cell in command mode (a click on its prompt, as a user does)."""
    page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt").click()


def assign(page: Any, index: int, stage: str) -> None:
    select_cell(page, index)
    page.fill(".nb2pipe-stage-input", stage)
    page.click(".nb2pipe-assign")
    page.wait_for_selector(f'.nb2pipe-stage[data-stage="{stage}"]')
    page.wait_for_timeout(700)  # keep separate actions separate in the undo history (its capture window is 500 ms)


def has_command(*words: str) -> bool:
    return subprocess.run([sys.executable, "-m", "nb2pipe.cli", *words, "--help"], capture_output=True).returncode == 0


def test_tag_stages_see_dag_undo_save_export_and_run(lab: Lab, page: Any) -> None:
    notebook = lab.root / "demo.ipynb"
    write_notebook(notebook)
    page.goto(f"{lab.url}/lab/tree/demo.ipynb")
    page.wait_for_selector(".jp-Notebook .jp-Cell >> nth=4")
    page.click('.jp-SideBar [data-id="nb2pipe-pipeline"]')
    page.wait_for_selector(".nb2pipe-panel .nb2pipe-header:has-text('demo.ipynb')")

    # Tag through the sidebar: a parameters cell and two stages.
    select_cell(page, 2)
    page.click(".nb2pipe-role-parameters")
    page.wait_for_timeout(700)
    assign(page, 3, "load")
    assign(page, 4, "summarize")
    cells = page.locator(".jp-Notebook .jp-Cell")
    assert cells.nth(3).get_attribute("data-nb2pipe-stage") == "load"
    assert cells.nth(4).get_attribute("data-nb2pipe-label") == "stage: summarize"
    assert cells.nth(2).get_attribute("data-nb2pipe-label") == "parameters"

    # The DAG, from the analyze endpoint, shows the edge with its variable name.
    edge = page.locator('.nb2pipe-dag-edge[data-from="load"][data-to="summarize"]')
    edge.wait_for()
    assert "values" in (edge.text_content() or "")
    page.wait_for_selector('.nb2pipe-params input[name="n"]')
    # The implicit prelude holds only an import: the converter drops it, and the sidebar says so.
    page.wait_for_selector('.nb2pipe-stage.nb2pipe-stage-dropped[data-stage="prelude"]')
    assert page.locator(".nb2pipe-dag-node").count() == 2
    page.screenshot(path=str(SCREENSHOTS / "pipeline-sidebar.png"))

    # Undo (z in command mode) takes back the last assignment; redo (Shift+Z) brings it back.
    select_cell(page, 1)
    page.keyboard.press("Escape")
    page.keyboard.press("z")
    page.wait_for_selector('.nb2pipe-stage[data-stage="summarize"]', state="detached")
    assert cells.nth(4).get_attribute("data-nb2pipe-stage") == "load"  # untagged cells below belong to load
    page.keyboard.press("Shift+Z")
    page.wait_for_selector('.nb2pipe-stage[data-stage="summarize"]')

    # A problem is listed and clicking it jumps to the cell: skip the cell that binds `values`.
    select_cell(page, 3)
    page.click(".nb2pipe-role-skip")
    problem = page.locator(".nb2pipe-problem.nb2pipe-error")
    problem.wait_for()
    assert "values" in problem.inner_text()
    select_cell(page, 1)
    problem.click()
    page.wait_for_function(
        "() => document.querySelector('.jp-Notebook .jp-Cell.jp-mod-active')?.dataset.nb2pipeStage === 'summarize'"
    )
    page.screenshot(path=str(SCREENSHOTS / "pipeline-problem.png"))
    select_cell(page, 3)
    page.keyboard.press("Escape")
    page.keyboard.press("z")
    page.wait_for_selector(".nb2pipe-problem.nb2pipe-error", state="detached")
    edge.wait_for()

    # Rename a stage through the dialog; an `after:` constraint from the stage row.
    page.click('.nb2pipe-stage[data-stage="summarize"] .nb2pipe-stage-rename')
    page.fill(".jp-Dialog input", "report")
    page.click(".jp-Dialog .jp-mod-accept")
    page.wait_for_selector('.nb2pipe-stage[data-stage="report"]')
    page.wait_for_timeout(700)
    page.select_option('.nb2pipe-stage[data-stage="report"] .nb2pipe-after', "prelude")
    page.wait_for_selector('.nb2pipe-stage[data-stage="report"] .nb2pipe-stage-after:has-text("after prelude")')
    select_cell(page, 1)
    page.keyboard.press("Escape")
    page.keyboard.press("z")  # the constraint was only to see it work: undo it
    page.wait_for_selector('.nb2pipe-stage[data-stage="report"] .nb2pipe-stage-after', state="detached")
    page.locator('.nb2pipe-dag-edge[data-from="load"][data-to="report"]').wait_for()

    # Save and read the tags the converter will read.
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')")
    page.wait_for_timeout(300)
    tags = tags_on_disk(notebook)
    assert tags == {"intro": [], "c0": [], "c1": ["parameters"], "c2": ["stage:load"], "c3": ["stage:report"]}

    # Export writes the package inside the server root.
    page.click(".nb2pipe-export")
    page.wait_for_selector(".nb2pipe-result:has-text('exported to pipelines/demo')")
    spec = json.loads((lab.root / "pipelines/demo/pipeline.json").read_text())
    assert [s["name"] for s in spec["stages"]] == ["load", "report"]

    # Schedule it (through `nb2pipe schedule add`); where this checkout lacks the command, its refusal is shown.
    page.fill(".nb2pipe-schedule-name", "nightly")
    page.fill(".nb2pipe-cron", "30 2 * * *")
    page.click(".nb2pipe-schedule")
    if has_command("schedule", "add"):
        page.wait_for_selector(".nb2pipe-result:has-text('schedule nightly added')")
    else:
        page.wait_for_selector(".nb2pipe-result.nb2pipe-status-error:has-text('invalid choice')")

    # Run with a parameter from the form; the runs panel shows the run and how it ended.
    page.fill('.nb2pipe-params input[name="n"]', "9")
    page.click(".nb2pipe-run")
    page.wait_for_selector(".nb2pipe-result:has-text('started')")
    item = page.locator(".nb2pipe-run-item").first
    item.wait_for()
    assert "n=9" in item.inner_text()
    page.wait_for_selector(".nb2pipe-run-item.nb2pipe-run-succeeded, .nb2pipe-run-item.nb2pipe-run-failed")
    item.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "pipeline-run.png"))
    if has_command("run"):
        assert "succeeded" in item.get_attribute("class")
    else:
        assert "failed" in item.get_attribute("class")
        assert "invalid choice" in item.inner_text()

    # The dark theme uses the same theme variables.
    page.click('.lm-MenuBar-itemLabel:text-is("Settings")')
    page.hover('.lm-Menu-itemLabel:text-is("Theme")')
    page.click('.lm-Menu-itemLabel:text-is("JupyterLab Dark")')
    page.wait_for_selector('body[data-jp-theme-light="false"]', state="attached")
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "pipeline-dark.png"))
