"""Sweeps on a Dask cluster: each run is one task that executes and records the job on the worker.

The worker runs the same :func:`nb2pipe.jobs.execute.run` as a local run (so every ending is recorded the same way)
with ``executor='dask'`` and the worker's address, into the same run store. Paths are made absolute before they are
sent, so workers must see the same filesystem (one machine, or a shared volume), as for the pipeline runner.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..runstore import store_home
from .execute import JobResult


def run_one_on_worker(notebook: str, parameters: dict[str, Any], options: dict[str, Any]) -> JobResult:
    """The task: run one job on this worker and record it (signals belong to the worker, not to us)."""
    from distributed import get_worker

    from .execute import run

    return run(notebook, parameters, executor="dask", worker=get_worker().address, handle_signals=False, **options)


def run_on_dask(
    notebook: str | os.PathLike[str],
    runs: Sequence[dict[str, Any]],
    *,
    scheduler: str | None = None,
    kernel: str | None = None,
    **options: Any,
) -> list[JobResult]:
    """Submit one task per parameter set to the cluster at ``scheduler`` (a LocalCluster when None); wait for all."""
    from distributed import Client, LocalCluster

    options = dict(options, kernel=kernel)
    options["home"] = str(store_home(options.get("home")).absolute())
    options["cwd"] = str(Path(options.get("cwd") or os.getcwd()).absolute())
    for key in ("runs_dir", "output_dir"):
        if options.get(key) is not None:
            options[key] = str(Path(options[key]).absolute())
    options.pop("pool", None)
    target = str(Path(notebook).absolute())
    cluster = None if scheduler else LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)  # type: ignore[no-untyped-call]
    try:
        with Client(scheduler or cluster) as client:  # type: ignore[no-untyped-call]
            futures = [client.submit(run_one_on_worker, target, params, options, pure=False) for params in runs]
            results: list[JobResult] = client.gather(futures)
    finally:
        if cluster is not None:
            cluster.close()
    return results
