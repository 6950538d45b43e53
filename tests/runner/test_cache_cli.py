"""``nb2pipe cache ls/clear/gc`` on a real store."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from nb2pipe.runner.cache import Cache
from nb2pipe.runner.maintenance import gc
from tests.helpers import make_notebook
from tests.runner.conftest import cli, ran, run

CELLS = [("x = 1", ["stage:one"]), ("y = x + 1", ["stage:two"]), ("z = y + 1", ["stage:three"])]


def test_ls_lists_every_result_and_clear_by_stage_forces_a_rerun(tmp_path: Path) -> None:
    home = tmp_path / "store"
    nb = make_notebook(tmp_path, CELLS)
    run(nb, home)
    proc = cli(["cache", "ls", "--json"], home)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert sorted(r["stage"] for r in rows) == ["one", "three", "two"]
    assert all(r["pipeline"] == "nb" and r["size"] > 0 for r in rows)
    proc = cli(["cache", "clear", "--stage", "two"], home)
    assert proc.returncode == 0 and "removed 1 " in proc.stdout
    # two re-runs; its output is unchanged, so three stays cached.
    assert ran(run(nb, home)) == {"two"}
    assert cli(["cache", "clear"], home).stdout.startswith("removed 3 ")
    assert Cache(home).entries() == []


def test_gc_keeps_results_recent_runs_used_and_removes_the_rest(tmp_path: Path) -> None:
    home = tmp_path / "store"
    nb = make_notebook(tmp_path, CELLS)
    old = run(nb, home)
    recent = run(make_notebook(tmp_path, [("x = 5", ["stage:one"]), *CELLS[1:]]), home)
    assert len(Cache(home).entries()) == 6
    # Age every entry and the first run by 40 days: only the second run is recent.
    forty_days_ago = time.time() - 40 * 86400
    for entry in Cache(home).entries():
        meta = json.loads((entry.path / "meta.json").read_text())
        meta["created_at"] = forty_days_ago
        (entry.path / "meta.json").write_text(json.dumps(meta))
    db = sqlite3.connect(home / "runs.sqlite")
    with db:
        db.execute("UPDATE runs SET created_at = ? WHERE id = ?", (forty_days_ago, old.run_id))
    db.close()
    removed, _, _ = gc(home, keep_days=30)
    assert removed == 3
    assert {e.key for e in Cache(home).entries()} == {o.key for o in recent.stages}
