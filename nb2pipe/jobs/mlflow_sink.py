"""Optional MLflow sink: a finished tracked run is also logged as an MLflow run.

Parameters, numeric metrics (non-numeric ones as a ``metrics.json`` artifact), the executed notebook and the run's
artifacts go to an MLflow run in an experiment named after the notebook, tagged with the nb2pipe run id, git commit
and status. The run store stays the source of truth: a sink that fails (MLflow not installed, tracking server
down) is reported on stderr and does not change how the run ended.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ..runstore import RunStore

_MLFLOW_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "timed-out": "FAILED", "cancelled": "KILLED"}


def log_run(store: RunStore, run_id: str, tracking_uri: str) -> str | None:
    """Log a recorded run to MLflow at ``tracking_uri``; returns the MLflow run id (None when logging failed)."""
    try:
        return _log(store, run_id, tracking_uri)
    except Exception as exc:  # the sink is best effort: the run store already holds the truth
        print(f"nb2pipe: warning: could not log run {run_id} to MLflow ({tracking_uri}): {exc}", file=sys.stderr)
        return None


def _log(store: RunStore, run_id: str, tracking_uri: str) -> str:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    run = store.get_run(run_id)
    client = MlflowClient(tracking_uri=tracking_uri)
    name = f"nb2pipe/{Path(run['target']).stem}"
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
    tags = {
        "nb2pipe.run_id": run["id"],
        "nb2pipe.status": run["status"],
        "nb2pipe.notebook": run["target"],
        "nb2pipe.notebook_sha256": run["target_hash"] or "",
        "nb2pipe.git_commit": run["git_commit"] or "",
        "nb2pipe.kernel": run["kernel"] or "",
    }
    mlrun = client.create_run(
        experiment_id, start_time=int((run["started_at"] or time.time()) * 1000), tags=tags, run_name=run["id"]
    )
    mid = mlrun.info.run_id
    now = int(time.time() * 1000)
    numeric = {k: v for k, v in run["metrics"].items() if isinstance(v, int | float) and not isinstance(v, bool)}
    client.log_batch(
        mid,
        metrics=[Metric(k, float(v), now, 0) for k, v in numeric.items()],
        params=[Param(k, _value(v)) for k, v in run["parameters"].items()],
        tags=[RunTag("nb2pipe.status_detail", run["status_detail"] or "")],
    )
    other = {k: v for k, v in run["metrics"].items() if k not in numeric}
    if other:
        client.log_dict(mid, other, "metrics.json")
    notebook = Path(run["run_dir"] or "") / Path(run["target"]).name
    if notebook.is_file():
        client.log_artifact(mid, str(notebook))
    for artifact in run["artifacts"]:
        path = Path(artifact["path"])
        path = path if path.is_absolute() else Path(run["run_dir"]) / path
        if path.is_file():
            client.log_artifact(mid, str(path), artifact_path="outputs")
    end = int((run["ended_at"] or time.time()) * 1000)
    client.set_terminated(mid, status=_MLFLOW_STATUS.get(run["status"], "FAILED"), end_time=end)
    store.update_run(run_id, mlflow_run_id=mid)
    return str(mid)


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
