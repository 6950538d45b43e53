"""Fixtures for browser tests: one JupyterLab per module, Chromium from Debian driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.lab import CHROMIUM, CHROMIUM_ARGS, Lab, running_lab

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "ui-screenshots"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("NB2PIPE_SKIP_BROWSER") == "1":
        skip = pytest.mark.skip(reason="NB2PIPE_SKIP_BROWSER=1")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with running_lab(tmp_path) as server:
        yield server


@pytest.fixture
def page(lab: Lab) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found: apt-get install chromium (make test does)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()
