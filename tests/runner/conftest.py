"""Fixtures for runner tests: a private store per test, and helpers to run pipelines and read their outcomes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from nb2pipe.runner.run import RunReport, run_pipeline

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "example_notebooks"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "store"


def statuses(report: RunReport) -> dict[str, str]:
    return {o.name: o.status for o in report.stages}


def ran(report: RunReport) -> set[str]:
    return {o.name for o in report.stages if o.status == "ran"}


def run(target: Path, home: Path, **kwargs: object) -> RunReport:
    return run_pipeline(target, home=home, **kwargs)  # type: ignore[arg-type]


def cli(
    args: Sequence[str], home: Path, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NB2PIPE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "nb2pipe.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
