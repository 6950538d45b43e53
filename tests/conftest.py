"""Shared pytest configuration: determinism and the ``--update-goldens`` option."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

# pytest-jupyter's jp_fetch and friends, for the server extension's tests against a real Jupyter server.
pytest_plugins = ["pytest_jupyter.jupyter_server"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite tests/data/golden from the current converter output instead of comparing",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how many generated and mutated notebooks the fuzz tests ran, and what became of them."""
    from tests.fuzz import STATS

    if STATS:
        terminalreporter.section("nb2pipe fuzzing")
        for key, count in sorted(STATS.items()):
            terminalreporter.write_line(f"{key:40} {count}")
