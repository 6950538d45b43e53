"""Crash safety: a killed run (SIGKILL) or an interrupted one (Ctrl-C) never leaves a corrupt cache entry."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from nb2pipe.runner.cache import Cache
from nb2pipe.runner.maintenance import gc
from tests.helpers import make_notebook
from tests.runner.conftest import cli, run, statuses

GATED = [
    ("a = 41", ["stage:fast"]),
    ("import os\nimport time\nwhile not os.path.exists('go'):\n    time.sleep(0.05)\nb = a + 1", ["stage:slow"]),
    ("c = b * 2", ["stage:last"]),
]


def _start(nb: Path, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "NB2PIPE_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "nb2pipe.cli", "run", str(nb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_stage(home: Path, stage: str, status: str = "running", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (home / "runs.sqlite").exists():
            db = sqlite3.connect(home / "runs.sqlite", timeout=10)
            try:
                row = db.execute(
                    "SELECT status FROM stage_runs WHERE stage = ? ORDER BY rowid DESC", (stage,)
                ).fetchone()
            except sqlite3.OperationalError:  # the schema is being created
                row = None
            finally:
                db.close()
            if row and row[0] == status:
                time.sleep(0.3)  # let the worker get into the stage's code
                return
        time.sleep(0.05)
    raise AssertionError(f"stage {stage} never reached {status}")


def _entries(home: Path) -> dict[str, str]:
    return {e.key: e.meta["stage"] for e in Cache(home).entries()}


def test_killed_run_leaves_only_complete_entries_and_the_next_run_reuses_them(tmp_path: Path) -> None:
    home = tmp_path / "store"
    nb = make_notebook(tmp_path, GATED)
    proc = _start(nb, home)
    _wait_for_stage(home, "slow")
    proc.kill()
    proc.wait()
    time.sleep(0.5)  # the worker dies with its parent
    assert sorted(_entries(home).values()) == ["fast"]
    for entry in Cache(home).entries():  # every published entry is whole and readable
        assert json.loads((entry.path / "meta.json").read_text())["outputs"]
        assert (entry.path / "values.bin").stat().st_size > 0
    (tmp_path / "go").write_text("")
    report = run(nb, home)
    assert statuses(report) == {"fast": "cached", "slow": "ran", "last": "ran"}


def test_half_written_entry_is_never_published_and_gc_removes_it(tmp_path: Path) -> None:
    home = tmp_path / "store"
    script = (
        "import os, sys\nfrom pathlib import Path\nfrom nb2pipe.runner.cache import Cache\n"
        f"with Cache(Path({str(home)!r})).writing('ab' * 32) as work:\n"
        "    (work / 'values.bin').write_bytes(b'partial')\n"
        "    os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == 9
    cache = Cache(home)
    assert cache.get("ab" * 32) is None and cache.entries() == []
    assert len(list(cache.tmp.iterdir())) == 1
    assert gc(home)[1] == 1
    assert list(cache.tmp.iterdir()) == []


def test_ctrl_c_cancels_the_run_records_it_and_exits_130(tmp_path: Path) -> None:
    home = tmp_path / "store"
    nb = make_notebook(tmp_path, GATED)
    proc = _start(nb, home)
    _wait_for_stage(home, "slow")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    db = sqlite3.connect(home / "runs.sqlite")
    assert db.execute("SELECT status FROM runs").fetchone()[0] == "cancelled"
    rows = dict(db.execute("SELECT stage, status FROM stage_runs").fetchall())
    assert rows == {"fast": "ran", "slow": "failed", "last": "pending"}
    assert sorted(_entries(home).values()) == ["fast"]


def test_a_stage_module_that_cannot_be_imported_fails_its_stage_not_the_worker(tmp_path: Path) -> None:
    cells = [
        ("import not_a_module_nb2pipe_test", ["shared"]),
        ("x = not_a_module_nb2pipe_test.f()", ["stage:uses_it"]),
        ("y = 1", ["stage:independent"]),
    ]
    nb = make_notebook(tmp_path, cells)
    proc = cli(["run", str(nb), "--workers", "1"], tmp_path / "store")
    assert proc.returncode == 1
    assert (
        "nb2pipe: stage 'uses_it' failed: ModuleNotFoundError: No module named 'not_a_module_nb2pipe_test'"
        in proc.stderr
    )
    assert "WorkerDied" not in proc.stderr
    assert "ran     independent" in proc.stderr  # the same worker goes on with the other stage
