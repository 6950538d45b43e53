"""Read runs for the runs panel straight from the SQLite run store (``SELECT`` over ``runs``), newest first.

Runs this server started but whose child has not written its row yet (or that failed before it could, for example
because the command does not exist) are merged in from the :class:`~nb2pipe.server.launcher.Launcher`, so a run
the user just started is always listed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..runstore import RunStore, UnknownRunError
from .launcher import Launch, Launcher

_COLUMNS = (
    "id, kind, target, parameters, status, status_detail, run_dir, created_at, started_at, ended_at, "
    "error_cell, error_cell_id, error_name, error_message"
)


def executed_notebook(run: dict[str, Any], launcher: Launcher) -> Path | None:
    """The run's executed notebook, when it exists and lies inside the server root or the run store folder.

    Tracked jobs write it to ``RUN_DIR/<notebook name>`` (a hidden folder under the root by default, which the
    contents manager does not serve); pipeline runs have none. The run store row names the folder, so the path is
    resolved (symbolic links included) and anything outside the two folders the server owns is refused.
    """
    if not run.get("run_dir") or not run.get("target"):
        return None
    path = (Path(run["run_dir"]) / Path(str(run["target"])).name).resolve()
    inside = any(base == path or base in path.parents for base in (launcher.root.resolve(), launcher.home.resolve()))
    if not inside or path.suffix != ".ipynb" or not path.is_file():
        return None
    return path


def _row(row: Any) -> dict[str, Any]:
    run = dict(row)
    run["parameters"] = json.loads(run["parameters"] or "{}")
    ended = run.get("ended_at") or (time.time() if run.get("started_at") else None)
    run["duration"] = ended - run["started_at"] if ended and run.get("started_at") else None
    return run


def record_id(store: RunStore | None, launch: Launch) -> str | None:
    """The run store id of a launch: the launch id, the id in the command's summary, or the row with its pid."""
    if launch.record is not None or store is None:
        return launch.record
    found = launch.summary_id()
    if found is None:
        rows = store.query("SELECT id FROM runs WHERE id = ?", (launch.id,))
        if not rows:
            rows = store.query(
                "SELECT id FROM runs WHERE pid = ? AND created_at >= ? ORDER BY created_at LIMIT 1",
                (launch.pid, launch.created_at - 5.0),
            )
        found = str(rows[0]["id"]) if rows else None
    if found is not None and store.query("SELECT 1 FROM runs WHERE id = ?", (found,)):
        launch.record = found
    return launch.record


def _launch_of(run_id: str, launcher: Launcher) -> Launch | None:
    return launcher.get(run_id) or next((la for la in launcher.all() if la.record == run_id), None)


def _merge(run: dict[str, Any], launcher: Launcher) -> dict[str, Any]:
    launch = _launch_of(run["id"], launcher)
    if launch is not None:
        run["launch_id"] = launch.id
        info = launch.as_json()
        run["exit_code"] = info["exit_code"]
        if run["status"] in ("queued", "running") and info["exit_code"] not in (None, 0):
            run["status_detail"] = run.get("status_detail") or "the run's process ended without recording an end"
        if info["stderr"]:
            run["stderr"] = info["stderr"]
    return run


def list_runs(
    store: RunStore | None,
    launcher: Launcher,
    *,
    limit: int = 50,
    target: str | None = None,
    aliases: tuple[str, ...] = (),
) -> list[Any]:
    """Recent runs, the store's rows and this server's launches together, newest first.

    ``target`` filters by notebook (as the browser names it); ``aliases`` are other spellings commands may have
    recorded for it (its absolute path).
    """
    rows: list[dict[str, Any]] = []
    if store is not None:
        where, params = "deleted_at IS NULL", []
        if target:
            names = [target, *aliases]
            where += f" AND target IN ({', '.join('?' for _ in names)})"
            params.extend(names)
        sql = f"SELECT {_COLUMNS} FROM runs WHERE {where} ORDER BY created_at DESC LIMIT ?"  # noqa: S608
        rows = [_row(r) for r in store.query(sql, [*params, limit])]
        for run in rows:
            run["metrics"] = {
                m["name"]: json.loads(m["value"])
                for m in store.query("SELECT name, value FROM metrics WHERE run_id = ?", (run["id"],))
            }
    for run in rows:
        run["has_notebook"] = executed_notebook(run, launcher) is not None
    known = {r["id"] for r in rows}
    for launch in launcher.all():
        if record_id(store, launch) in known:
            continue
        if not target or launch.target == target:
            pending: dict[str, Any] = {"metrics": {}, "duration": None, "pending_record": True, "has_notebook": False}
            rows.append({**launch.as_json(), **pending})
    rows = [_merge(r, launcher) for r in rows]
    rows.sort(key=lambda r: r["created_at"], reverse=True)
    return rows[:limit]


def show_run(store: RunStore | None, launcher: Launcher, run_id: str) -> dict[str, Any] | None:
    """One run with its metrics, artifacts and stages; None when neither the store nor this server knows it."""
    launch = launcher.get(run_id)
    if store is not None:
        run: dict[str, Any] | None
        try:
            run = store.get_run(run_id)
        except UnknownRunError:
            recorded = record_id(store, launch) if launch is not None else None
            run = store.get_run(recorded) if recorded else None
        if run is not None:
            run["stages"] = [
                dict(r)
                for r in store.query(
                    "SELECT stage, status, started_at, ended_at, error FROM stage_runs WHERE run_id = ?", (run["id"],)
                )
            ]
            started, ended = run.get("started_at"), run.get("ended_at")
            run["duration"] = (ended or time.time()) - started if started else None
            run["has_notebook"] = executed_notebook(run, launcher) is not None
            return _merge(run, launcher)
    if launch is None:
        return None
    pending: dict[str, Any] = {"metrics": {}, "artifacts": [], "stages": [], "duration": None, "pending_record": True}
    return {**launch.as_json(), **pending, "has_notebook": False}
