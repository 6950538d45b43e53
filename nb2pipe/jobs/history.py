"""Looking back at tracked jobs: list, show, compare, cancel, remove, and reaping runs whose process was killed.

Every command starts with :func:`reap`, so a run whose process died (SIGKILL, power loss) is never left "running":
on this host a run is orphaned as soon as its process is gone (the process's start time is checked, so a recycled
pid does not keep a dead run alive); a run on another host is judged by its heartbeat. Reaping also kills the run's
kernel (its own process group) and writes the ending into the saved notebook, so the notebook and the store agree.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ..errors import Nb2PipeError
from ..runstore import ACTIVE_STATUSES, HEARTBEAT_STALE_SECONDS, RUN_STATUSES, RunStore, to_json

KILLED: Final = "killed: the job process ended without recording a result"
#: Seconds ``job cancel`` waits for a run to stop by itself before killing it.
CANCEL_GRACE: Final = 10.0


class QueryError(Nb2PipeError):
    """A filter given to ``job list`` cannot be understood (bad time, unknown status)."""


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def process_started_at(pid: int) -> float | None:
    """When process ``pid`` started (Linux: from /proc), or None when unknown."""
    boot = _boot_time()
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return None if boot is None else boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int | None, not_after: float | None = None) -> bool:
    """True when ``pid`` runs and, if ``not_after`` is given, started no later than that (not a recycled pid)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not_after is not None:
        started = process_started_at(pid)
        if started is not None and started > not_after + 2.0:
            return False
    try:  # a zombie (killed, not yet waited for) is not running
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _kill_group(pid: int | None, created_at: float | None, sig: int = signal.SIGKILL) -> None:
    if process_alive(pid, created_at):
        assert pid is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)


def fix_notebook(run_dir: str | None, run_id: str, status: str, detail: str | None) -> None:
    """Write an ending recorded by another process into the run's saved notebook (when there is one)."""
    if not run_dir or not Path(run_dir).is_dir():
        return
    import nbformat

    from .execute import write_ending

    for path in Path(run_dir).glob("*.ipynb"):
        with contextlib.suppress(OSError, ValueError):
            nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
            error = nb.metadata.get("nb2pipe", {}).get("error")
            write_ending(nb, path, run_id, status, detail, error)


def reap(store: RunStore, *, stale_after: float = HEARTBEAT_STALE_SECONDS) -> list[str]:
    """Mark active job runs whose process is gone as failed; kill their kernels; fix their notebooks."""
    host = socket.gethostname()
    now = time.time()
    reaped = []
    for row in store.query(
        "SELECT id, kind, host, pid, kernel_pid, created_at, heartbeat_at, run_dir FROM runs "
        "WHERE status IN ('queued', 'running')"
    ):
        if row["kind"] != "job":
            continue
        if row["host"] == host and row["pid"]:
            if process_alive(row["pid"], row["created_at"]):
                continue
        elif (row["heartbeat_at"] or 0) >= now - stale_after:
            continue
        if store.finish_run(row["id"], "failed", status_detail=KILLED):
            if row["host"] == host:
                _kill_group(row["kernel_pid"], row["created_at"])
            fix_notebook(row["run_dir"], row["id"], "failed", KILLED)
            reaped.append(row["id"])
    return reaped + store.reap_orphans(stale_after=stale_after)


#: Up to this many runs with a parameter value, `job list` reads them through the value index and sorts them.
_SELECTIVE: Final = 500

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str) -> float:
    """``2026-11-27``, ``2026-11-27T09:30`` (local time unless it has an offset) or a duration ago: ``30m``, ``2d``."""
    match = _DURATION.match(text.strip())
    if match:
        return time.time() - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return dt.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise QueryError(f"cannot read the time {text!r}; use 2026-11-27, 2026-11-27T09:30 or 2h / 3d ago") from None


def _value_forms(text: Any) -> list[str]:
    """The JSON forms a value given on the command line may have been stored as (typed like the parameter)."""
    forms = {to_json(text)}
    if isinstance(text, str):
        with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = ast.literal_eval(text.strip())
            forms.add(to_json(value))
            if isinstance(value, int) and not isinstance(value, bool):
                forms.add(to_json(float(value)))
            if isinstance(value, tuple):
                forms.add(to_json(list(value)))
        if text.lower() in ("true", "false"):
            forms.add(to_json(text.lower() == "true"))
    return sorted(forms)


def list_runs(
    store: RunStore,
    *,
    notebook: str | None = None,
    status: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = 20,
    removed: bool = False,
) -> list[dict[str, Any]]:
    """Job runs, newest first, filtered by notebook, status, parameter values (all must match) and time."""
    where = ["kind = 'job'"]
    args: list[Any] = []
    if not removed:
        where.append("deleted_at IS NULL")
    if status is not None:
        if status not in RUN_STATUSES:
            raise QueryError(f"unknown status {status!r}; one of {', '.join(RUN_STATUSES)}")
        where.append("status = ?")
        args.append(status)
    if notebook is not None:
        where.append("(target = ? OR target LIKE ? ESCAPE '\\')")
        escaped = notebook.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args += [str(Path(notebook).absolute()), f"%/{escaped.lstrip('./')}"]
    # A parameter filter is answered one of two ways, whichever reads fewer rows: from the (name, value) index, then
    # sorted (a rare value), or by walking runs newest first until `limit` match (a common value: a scan that would
    # sort a third of the store otherwise). The most selective filter decides; the others are checked per run.
    filters = []
    for name, value in (parameters or {}).items():
        forms = _value_forms(value)
        marks = ", ".join("?" * len(forms))
        count = store.query(
            f"SELECT count(*) FROM (SELECT 1 FROM run_parameters WHERE name = ? AND value IN ({marks}) LIMIT ?)",  # noqa: S608
            [name, *forms, _SELECTIVE + 1],
        )[0][0]
        filters.append((count, name, forms, marks))
    for i, (count, name, forms, marks) in enumerate(sorted(filters, key=lambda f: f[0])):
        if i == 0 and (count <= _SELECTIVE or limit is None):
            where.append(f"id IN (SELECT run_id FROM run_parameters WHERE name = ? AND value IN ({marks}))")  # noqa: S608
        else:
            exists = "EXISTS (SELECT 1 FROM run_parameters p WHERE p.run_id = runs.id AND p.name = ? AND p.value IN "
            where.append(f"{exists}({marks}))")
        args += [name, *forms]
    if since is not None:
        where.append("created_at >= ?")
        args.append(since)
    if until is not None:
        where.append("created_at <= ?")
        args.append(until)
    columns = (
        "id, status, status_detail, target, parameters, created_at, started_at, ended_at, kernel, host, "
        "error_name, error_message, error_cell, deleted_at"
    )
    clauses = " AND ".join(where)  # our own clauses; every value is a bound parameter
    sql = f"SELECT {columns} FROM runs WHERE {clauses} ORDER BY created_at DESC"  # noqa: S608
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    runs = [dict(row) for row in store.query(sql, args)]
    ids = [r["id"] for r in runs]
    metrics: dict[str, dict[str, Any]] = {i: {} for i in ids}
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        for row in store.query(
            f"SELECT run_id, name, value FROM metrics WHERE run_id IN ({', '.join('?' * len(chunk))})",  # noqa: S608
            chunk,
        ):
            metrics[row["run_id"]][row["name"]] = json.loads(row["value"])
    for r in runs:
        r["parameters"] = json.loads(r["parameters"])
        r["metrics"] = metrics[r["id"]]
        r["duration"] = r["ended_at"] - r["started_at"] if r["ended_at"] and r["started_at"] else None
    return runs


def show(store: RunStore, run_id: str) -> dict[str, Any]:
    """Everything recorded about one run, its environment summarized (Python, platform, package count)."""
    run = store.get_run(run_id)
    run["duration"] = run["ended_at"] - run["started_at"] if run["ended_at"] and run["started_at"] else None
    env = store.query("SELECT python, platform, packages FROM environments WHERE id = ?", (run["environment_id"],))
    if env:
        run["environment"] = {
            "id": run["environment_id"],
            "python": env[0]["python"],
            "platform": env[0]["platform"],
            "packages": json.loads(env[0]["packages"]),
        }
    run["notebook"] = executed_notebook(run)
    return run


def executed_notebook(run: Mapping[str, Any]) -> str | None:
    """Path of the executed notebook in the run folder."""
    if not run.get("run_dir"):
        return None
    return str(Path(run["run_dir"]) / Path(run["target"]).name)


def compare(store: RunStore, run_ids: Sequence[str]) -> dict[str, Any]:
    """Parameters and metrics of several runs side by side: ``{"runs": [...], "parameters": {name: [v, ...]}}``."""
    runs = [store.get_run(r) for r in run_ids]
    names = sorted({k for r in runs for k in r["parameters"]})
    metric_names = sorted({k for r in runs for k in r["metrics"]})
    return {
        "runs": [{"id": r["id"], "status": r["status"], "target": r["target"]} for r in runs],
        "parameters": {n: [r["parameters"].get(n) for r in runs] for n in names},
        "metrics": {n: [r["metrics"].get(n) for r in runs] for n in metric_names},
    }


def cancel(store: RunStore, run_id: str, *, grace: float = CANCEL_GRACE) -> dict[str, Any]:
    """Cancel a run: record the request, signal its process, and kill it (kernel included) if it does not stop.

    The request is kept in the store, so a job process that cannot be signalled (another host) sees it at its next
    heartbeat, and a run whose process is already gone is marked cancelled at once.
    """
    run = store.get_run(run_id)
    if run["status"] not in ACTIVE_STATUSES:
        return run
    run_id = run["id"]
    store.update_run(run_id, only_if_active=True, cancel_requested=1)
    if run["status"] == "queued":  # nothing runs yet: whoever queued it must not start it (its pid is not the job's)
        store.finish_run(run_id, "cancelled", status_detail="cancelled before it started")
        return store.get_run(run_id)
    here = run["host"] == socket.gethostname()
    if here and process_alive(run["pid"], run["created_at"]):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(run["pid"], signal.SIGTERM)
    elif here:
        _force_cancel(store, run, "cancelled: its process was already gone")
        return store.get_run(run_id)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if store.query("SELECT status FROM runs WHERE id = ?", (run_id,))[0][0] not in ACTIVE_STATUSES:
            return store.get_run(run_id)
        time.sleep(0.05)
    if here:
        _kill_group(run["kernel_pid"], run["created_at"])
        if process_alive(run["pid"], run["created_at"]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(run["pid"], signal.SIGKILL)
        _force_cancel(store, run, f"cancelled: killed after {grace:g} s without stopping")
    return store.get_run(run_id)


def _force_cancel(store: RunStore, run: Mapping[str, Any], detail: str) -> None:
    _kill_group(run["kernel_pid"], run["created_at"])
    if store.finish_run(run["id"], "cancelled", status_detail=detail):
        fix_notebook(run["run_dir"], run["id"], "cancelled", detail)


class ActiveRunError(Nb2PipeError):
    """The run is still active (cancel it first)."""


def remove(store: RunStore, run_id: str, *, files: bool = False) -> dict[str, Any]:
    """Hide a run from ``job list`` (soft delete) and keep an audit record with everything it held.

    ``files=True`` also deletes the run folder (the audit record keeps its path and the artifacts' hashes).
    """
    run = store.get_run(run_id)
    if run["status"] in ACTIVE_STATUSES:
        raise ActiveRunError(f"run {run['id']} is {run['status']}; cancel it first: nb2pipe job cancel {run['id']}")
    now = time.time()
    with store.transaction() as db:
        db.execute("UPDATE runs SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL", (now, run["id"]))
        db.execute(
            "INSERT INTO audit (at, actor, action, object_kind, object_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (now, _actor(), "run.remove", "run", run["id"], to_json({**run, "files_removed": files})),
        )
    if files and run.get("run_dir"):
        shutil.rmtree(run["run_dir"], ignore_errors=True)
    return run


def _actor() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
