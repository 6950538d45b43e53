"""The run store on a real SQLite file: schema, migrations, concurrent writers, orphans, soft history."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nb2pipe import runstore
from nb2pipe.runstore import Environment, RunStore, StoreError, UnknownRunError


def test_new_store_is_wal_and_migrated(tmp_path: Path) -> None:
    with RunStore(tmp_path / "home") as store:
        assert store.path == tmp_path / "home" / "runs.sqlite"
        assert store.schema_version == [name for name, _ in runstore.MIGRATIONS]
        assert store.query("PRAGMA journal_mode")[0][0] == "wal"


def test_reopening_does_not_reapply_migrations(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        run_id = store.create_run("job", "a.ipynb")
    with RunStore(tmp_path) as store:
        assert store.get_run(run_id)["target"] == "a.ipynb"
        assert store.query("SELECT count(*) FROM schema_migrations")[0][0] == len(runstore.MIGRATIONS)


def test_a_new_migration_upgrades_an_old_store_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with RunStore(tmp_path) as store:
        run_id = store.create_run("job", "a.ipynb")
    monkeypatch.setattr(
        runstore, "MIGRATIONS", [*runstore.MIGRATIONS, ("9999_test", "ALTER TABLE runs ADD COLUMN note TEXT;")]
    )
    with RunStore(tmp_path) as store:
        assert store.schema_version == [*(name for name, _ in runstore.MIGRATIONS[:-1]), "9999_test"]
        assert store.get_run(run_id)["note"] is None


def test_failed_migration_leaves_the_store_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    RunStore(tmp_path).close()
    bad = "ALTER TABLE runs ADD COLUMN ok TEXT;\nALTER TABLE no_such_table ADD COLUMN x TEXT;"
    monkeypatch.setattr(runstore, "MIGRATIONS", [*runstore.MIGRATIONS, ("9999_bad", bad)])
    with pytest.raises(StoreError, match="no_such_table"):
        RunStore(tmp_path)
    monkeypatch.undo()
    with RunStore(tmp_path) as store:
        columns = {row[1] for row in store.query("PRAGMA table_info(runs)")}
        assert "ok" not in columns
        assert store.schema_version == [name for name, _ in runstore.MIGRATIONS]


def test_run_lifecycle_and_lookup_by_prefix(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        run_id = store.create_run("job", "nb.ipynb", parameters={"n": 3, "lr": 0.1, "name": "x"}, status="running")
        store.record_metric(run_id, "accuracy", 0.5)
        store.record_metric(run_id, "accuracy", 0.75)  # the last value wins
        store.record_artifact(run_id, "out/model.pkl", "ab" * 32, 10)
        assert store.finish_run(run_id, "succeeded")
        # The first ending wins: a late "failed" does not overwrite the recorded success.
        assert not store.finish_run(run_id, "failed")
        run = store.get_run(run_id[:17])
        assert run["status"] == "succeeded"
        assert run["parameters"] == {"n": 3, "lr": 0.1, "name": "x"}
        assert isinstance(run["parameters"]["n"], int)
        assert run["metrics"] == {"accuracy": 0.75}
        assert run["artifacts"] == [{"path": "out/model.pkl", "sha256": "ab" * 32, "size": 10}]
        assert run["ended_at"] >= run["created_at"]
        rows = store.query("SELECT run_id FROM run_parameters WHERE name = 'n' AND value = '3'")
        assert [r[0] for r in rows] == [run_id]


def test_unknown_and_ambiguous_ids(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        store.create_run("job", "a.ipynb", run_id="20260101-000000-aaaaaa")
        store.create_run("job", "b.ipynb", run_id="20260101-000000-aaaaab")
        with pytest.raises(UnknownRunError, match="matches no run"):
            store.get_run("nope")
        with pytest.raises(UnknownRunError, match="ambiguous"):
            store.get_run("20260101-000000-aaaaa")
        with pytest.raises(UnknownRunError, match="matches no run"):
            store.get_run("2026%")  # LIKE wildcards are literal


def test_invalid_values_are_refused_by_the_database(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        with pytest.raises(sqlite3.IntegrityError):
            store.create_run("job", "a.ipynb", status="exploded")
        assert store.query("SELECT count(*) FROM runs")[0][0] == 0
        assert store.query("SELECT count(*) FROM run_parameters")[0][0] == 0


def test_environment_is_stored_once(tmp_path: Path) -> None:
    env = Environment(python="3.11.7", platform="linux", packages=("a==1", "b==2"))
    with RunStore(tmp_path) as store:
        assert store.ensure_environment(env) == store.ensure_environment(env) == env.id
        assert store.query("SELECT count(*) FROM environments")[0][0] == 1


def _writer(home: str, worker: int, count: int) -> None:
    with RunStore(home) as store:
        for i in range(count):
            run_id = store.create_run("job", f"nb{worker}.ipynb", parameters={"i": i}, status="running")
            store.record_metric(run_id, "i", i)
            store.finish_run(run_id, "succeeded")


def test_concurrent_writers_lose_no_record(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with RunStore(tmp_path) as store:
        assert store.query("SELECT count(*) FROM runs WHERE status = 'succeeded'")[0][0] == 160
        assert store.query("SELECT count(*) FROM metrics")[0][0] == 160
        assert store.query("SELECT count(DISTINCT id) FROM runs")[0][0] == 160


def test_orphaned_run_of_a_killed_process_is_marked_failed(tmp_path: Path) -> None:
    code = (
        "import sys, time, os\n"
        "from nb2pipe.runstore import RunStore\n"
        "s = RunStore(sys.argv[1])\n"
        "rid = s.create_run('job', 'x.ipynb', status='running', pid=os.getpid())\n"
        "print(rid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    with RunStore(tmp_path) as store:
        # Alive and fresh: left alone, even when its heartbeat is judged stale.
        assert store.reap_orphans(now=time.time() + 3600) == []
        proc.kill()
        proc.wait()
        assert store.reap_orphans() == []  # heartbeat still fresh: maybe just slow
        assert store.reap_orphans(now=time.time() + 3600) == [run_id]
        run = store.get_run(run_id)
        assert run["status"] == "failed"
        assert "killed" in run["status_detail"]


def test_audit_keeps_what_was_removed(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        store.audit("run.remove", "run", "r1", {"target": "a.ipynb"})
        row = store.query("SELECT action, object_id, detail FROM audit")[0]
        assert tuple(row) == ("run.remove", "r1", '{"target":"a.ipynb"}')


def test_unwritable_home_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/nb2pipe-cannot-write-here")
    else:
        tmp_path.chmod(0o500)
        target = tmp_path / "home"
    with pytest.raises(StoreError, match="cannot open the run store"):
        RunStore(target)


def test_missing_store_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no run store here"):
        RunStore(tmp_path, create=False)


def test_home_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NB2PIPE_HOME", str(tmp_path / "elsewhere"))
    assert runstore.store_home() == tmp_path / "elsewhere"
    monkeypatch.delenv("NB2PIPE_HOME")
    assert runstore.store_home() == Path(".nb2pipe")


def _opener(home: str, barrier: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    with RunStore(home) as store:
        store.create_run("job", "x.ipynb")


def test_many_processes_opening_a_new_store_at_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(12)
    procs = [ctx.Process(target=_opener, args=(str(tmp_path / "fresh"), barrier)) for _ in range(12)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with RunStore(tmp_path / "fresh") as store:
        assert store.query("SELECT count(*) FROM runs")[0][0] == 12
        assert store.query("PRAGMA journal_mode")[0][0] == "wal"
