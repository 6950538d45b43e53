"""Fixtures for scheduler tests: a store folder, a ledger, a fake clock, and no run process left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from .helpers import FakeClock


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    # Kill whatever a test left running (hung runs), by the process groups the store recorded.
    db = path / "runs.sqlite"
    if db.exists():
        con = sqlite3.connect(db)
        try:
            pids = [r[0] for r in con.execute("SELECT pid FROM schedule_attempts WHERE pid IS NOT NULL")]
        except sqlite3.Error:
            pids = []
        con.close()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 5, 0, 0, 30, tzinfo=UTC).timestamp())
