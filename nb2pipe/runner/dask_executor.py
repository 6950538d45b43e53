"""The Dask executor: the same stages, run on a Dask distributed cluster (``--executor dask [--scheduler ADDR]``).

No home-made cluster: stages are submitted as Dask tasks, one task per stage, to an existing scheduler or to a
``LocalCluster`` started for the run. Workers read inputs from and publish results to the cache directly, so the
store (``.nb2pipe/`` or ``$NB2PIPE_HOME``) must be on a filesystem every worker sees (a shared volume; trivially
true on one machine). Process-wide state is restored per stage, so workers should run one task at a time
(``dask worker --nthreads 1``); a LocalCluster started here is configured that way.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from .execute import Failure, Result, Task, execute
from .executors import ExecutorError


def _distributed() -> Any:
    """``distributed`` as an untyped module (its partial annotations do not help here)."""
    import importlib

    return importlib.import_module("distributed")


def run_task(task: Task) -> Result:
    """Body of a Dask task: run one stage in this worker and publish its result."""
    try:
        where = f"dask:{_distributed().get_worker().address}"
    except ValueError:
        where = "dask"
    return execute(task, where)


class DaskExecutor:
    """Submit stages to a Dask scheduler; results come back as they finish."""

    name = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None, **_: object) -> None:
        try:
            distributed = _distributed()
        except ImportError:
            raise ExecutorError("the dask executor needs dask.distributed: pip install 'nb2pipe[dask]'") from None
        self.cluster: Any = None
        try:
            if scheduler:
                self.client = distributed.Client(scheduler, timeout=15)
            else:
                self.cluster = distributed.LocalCluster(
                    n_workers=workers or 2, threads_per_worker=1, processes=True, dashboard_address=":0"
                )
                self.client = distributed.Client(self.cluster)
        except (OSError, TimeoutError) as exc:
            raise ExecutorError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        self.pending: dict[Any, Task] = {}

    def submit(self, task: Task) -> None:
        future = self.client.submit(run_task, task, key=f"nb2pipe-{task.run_id}-{task.stage}", pure=False, retries=0)
        self.pending[future] = task

    def wait(self, timeout: float) -> list[Result]:
        if not self.pending:
            return []
        try:
            done, _ = _distributed().wait(list(self.pending), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return []
        results = []
        for future in done:
            task = self.pending.pop(future)
            try:
                result: Result = future.result()
            except Exception as exc:  # the worker died or the task could not be deserialized there
                failure = Failure("crash", type(exc).__name__, f"the Dask task failed: {exc}")
                now = time.time()
                result = Result(task.stage, task.key, "failed", now, now, failure=failure)
            results.append(result)
        return results

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.client.cancel(list(self.pending), force=True)
        self.pending.clear()
        self.close()
