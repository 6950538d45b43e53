"""Runs, schedules and shortcuts in a real JupyterLab and a real Chromium.

A job started from the sidebar opens its executed notebook (outputs included) in a read-only tab; a failed job
names its cell and error; schedules are listed with their next fire and last run, paused and removed; a tagging
shortcut writes the tag the converter reads. Waits are generous (a loaded 2-core machine); nothing sleeps to assert.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nb2pipe.runstore import RunStore
from tests.ui.conftest import SCREENSHOTS
from tests.ui.lab import Lab
from tests.ui.test_sidebar import select_cell, tags_on_disk, write_notebook

pytestmark = pytest.mark.browser

RUN_WAIT = 240_000  # ms: a job starts a kernel, on a machine other work shares


def write_cells(path: Path, *sources: str) -> None:
    cells = [
        {"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
        for i, s in enumerate(sources)
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": kernelspec}, "cells": cells}
    path.write_text(json.dumps(nb, indent=1))


def open_sidebar(page: Any, lab: Lab, name: str) -> None:
    """Open notebook ``name`` and show the Pipeline sidebar (unless the restored layout already shows it)."""
    page.goto(f"{lab.url}/lab/tree/{name}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    if not page.locator(".nb2pipe-panel").is_visible():
        page.click('.jp-SideBar [data-id="nb2pipe-pipeline"]')
    page.wait_for_selector(f".nb2pipe-panel .nb2pipe-header:has-text('{name}')")


def schedules_on_disk(lab: Lab) -> list[dict[str, Any]]:
    argv = [sys.executable, "-m", "nb2pipe.cli", "schedule", "list", "--json", "--home", str(lab.root / ".nb2pipe")]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return list(json.loads(out))


def test_a_job_opens_its_executed_notebook_and_a_failure_names_its_cell(lab: Lab, page: Any) -> None:
    write_cells(lab.root / "hello.ipynb", "n = 6", "print('six squared is', n * n)")
    write_cells(lab.root / "broken.ipynb", "d = 0", "ratio = 1 / d")
    open_sidebar(page, lab, "hello.ipynb")

    page.click(".nb2pipe-job")
    page.wait_for_selector(".nb2pipe-result:has-text('started')")
    done = page.locator(".nb2pipe-run-item.nb2pipe-run-succeeded")
    done.wait_for(timeout=RUN_WAIT)
    assert "job" in done.inner_text()
    done.locator(".nb2pipe-run-open").click()

    # A read-only tab with the executed notebook: the run's output is there, rendered by JupyterLab's notebook.
    tab = page.locator(".nb2pipe-executed")
    tab.locator(".jp-OutputArea-output:has-text('six squared is 36')").wait_for()
    assert "read-only" in tab.locator(".nb2pipe-executed-note").inner_text()
    assert page.locator(".lm-TabBar-tab.jp-mod-current:has-text('hello.ipynb · run')").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "pipeline-executed.png"))
    # Read-only: typing into a cell changes nothing.
    editor = tab.locator(".jp-Cell .cm-editor").first
    assert "jp-mod-readOnly" in (editor.get_attribute("class") or "")
    editor.locator(".cm-content").click()
    page.keyboard.type("zzz")
    assert editor.locator(".cm-content").inner_text() == "n = 6"

    # A failing job: the runs panel names the cell and the error; its executed notebook marks that cell.
    open_sidebar(page, lab, "broken.ipynb")
    page.click(".nb2pipe-job")
    failed = page.locator(".nb2pipe-run-item.nb2pipe-run-failed")
    failed.wait_for(timeout=RUN_WAIT)
    error = failed.locator(".nb2pipe-run-error")
    error.wait_for()
    assert "cell 2" in error.inner_text() and "ZeroDivisionError" in error.inner_text()
    failed.locator(".nb2pipe-run-open").click()
    marked = page.locator(".nb2pipe-executed .nb2pipe-executed-error")
    marked.wait_for()
    assert "ZeroDivisionError" in marked.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "pipeline-executed-failed.png"))

    # The tab follows the theme, as any notebook does.
    page.click('.lm-MenuBar-itemLabel:text-is("Settings")')
    page.hover('.lm-Menu-itemLabel:text-is("Theme")')
    page.click('.lm-Menu-itemLabel:text-is("JupyterLab Dark")')
    page.wait_for_selector('body[data-jp-theme-light="false"]', state="attached")
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('.nb2pipe-executed .jp-Notebook')).backgroundColor"
        " !== 'rgb(255, 255, 255)'"
    )
    page.screenshot(path=str(SCREENSHOTS / "pipeline-executed-dark.png"))


def test_schedules_are_listed_paused_resumed_and_removed(lab: Lab, page: Any) -> None:
    write_notebook(lab.root / "demo.ipynb")
    open_sidebar(page, lab, "demo.ipynb")
    page.wait_for_selector(".nb2pipe-schedules .nb2pipe-hint:has-text('No schedules')")

    page.fill(".nb2pipe-schedule-name", "nightly")
    page.fill(".nb2pipe-cron", "30 2 * * *")
    page.click(".nb2pipe-schedule")
    item = page.locator('.nb2pipe-schedule-item[data-schedule="nightly"]')
    item.wait_for()
    assert "next " in item.locator(".nb2pipe-schedule-next").inner_text()
    assert "no run yet" in item.inner_text()

    # The last run of the schedule, as the scheduler records it, shows after a refresh.
    with RunStore(lab.root / ".nb2pipe") as store:
        target = str(lab.root / "demo.ipynb")
        store.create_run("job", target, status="succeeded", schedule="nightly", scheduled_for="2026-01-01T02:30:00Z")
    page.click(".nb2pipe-schedules-refresh")
    item.locator(".nb2pipe-schedule-last:has-text('last run succeeded')").wait_for()
    page.locator(".nb2pipe-schedules-refresh").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "pipeline-schedules.png"))

    item.locator(".nb2pipe-schedule-pause").click()
    page.wait_for_selector('.nb2pipe-schedule-item.nb2pipe-schedule-paused[data-schedule="nightly"]')
    assert item.locator(".nb2pipe-schedule-next").inner_text() == "paused"
    assert [s["paused"] for s in schedules_on_disk(lab)] == [True]

    item.locator(".nb2pipe-schedule-resume").click()
    page.wait_for_selector('.nb2pipe-schedule-item:not(.nb2pipe-schedule-paused)[data-schedule="nightly"]')
    assert [s["paused"] for s in schedules_on_disk(lab)] == [False]

    item.locator(".nb2pipe-schedule-remove").click()
    page.click(".jp-Dialog .jp-mod-accept")
    item.wait_for(state="detached")
    page.wait_for_selector(".nb2pipe-schedules-status:has-text('schedule nightly removed')")
    assert schedules_on_disk(lab) == []


def test_tagging_shortcuts_write_the_tags_on_disk(lab: Lab, page: Any) -> None:
    notebook = lab.root / "demo.ipynb"
    write_notebook(notebook)
    open_sidebar(page, lab, "demo.ipynb")

    # Accel Shift G: assign the selected cell to a new stage, named in a dialog.
    select_cell(page, 3)
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+G")
    page.wait_for_selector(".jp-Dialog input")
    page.fill(".jp-Dialog input", "load")
    page.keyboard.press("Enter")
    page.wait_for_selector('.nb2pipe-stage[data-stage="load"]')
    assert page.locator(".jp-Notebook .jp-Cell").nth(3).get_attribute("data-nb2pipe-stage") == "load"

    # Accel Shift K: skip; the chord Accel Shift P, P: parameters.
    select_cell(page, 4)
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+K")
    page.wait_for_selector('.jp-Notebook .jp-Cell[data-nb2pipe-label="skip"]')
    select_cell(page, 2)
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+P")
    page.keyboard.press("p")
    page.wait_for_selector('.jp-Notebook .jp-Cell[data-nb2pipe-label="parameters"]')

    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')")
    deadline = time.monotonic() + 30
    while tags_on_disk(notebook).get("c3") != ["skip"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the save request may still be writing: poll the file, never assert on a sleep
    assert tags_on_disk(notebook) == {"intro": [], "c0": [], "c1": ["parameters"], "c2": ["stage:load"], "c3": ["skip"]}
