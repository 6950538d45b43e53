"""Tracked notebook jobs: papermill runs with provenance, metrics, history and comparison.

``nb2pipe.jobs.run("train.ipynb", {"lr": 0.1})`` executes a notebook as a tracked run and returns a
:class:`JobResult`; ``nb2pipe.jobs.list(status="failed")`` looks back. Everything is recorded in the run store
(:mod:`nb2pipe.runstore`), shared with pipeline runs. Heavy imports (papermill, nbclient) happen only when a notebook
actually runs.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .record import glue, output_dir, record

if TYPE_CHECKING:
    from .execute import JobError, JobResult
    from .pool import KernelPool

__all__ = [
    "JobError",
    "JobResult",
    "KernelPool",
    "cancel",
    "compare",
    "glue",
    "list",
    "output_dir",
    "record",
    "remove",
    "rerun",
    "reruns",
    "run",
    "show",
    "sweep",
]

Home = str | os.PathLike[str] | None

_LAZY = {"JobError": "execute", "JobResult": "execute", "KernelPool": "pool"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'nb2pipe.jobs' has no attribute {name!r}")


def _store(home: Home) -> Any:
    from ..runstore import RunStore

    return RunStore(home)


def run(notebook: str | os.PathLike[str], parameters: Mapping[str, Any] | None = None, **options: Any) -> JobResult:
    """Execute ``notebook`` as a tracked run (parameters checked and typed first) and return how it ended.

    Options: ``pairs`` (``-p`` text pairs), ``files`` (``-f`` YAML files), ``kernel``, ``timeout`` (whole run, s),
    ``cell_timeout``, ``home`` (the store folder), ``runs_dir``, ``output_dir`` (declared output folder), ``cwd``,
    ``html``, ``pool`` (a :class:`KernelPool`), ``mlflow`` (tracking URI).
    """
    from .execute import run as _run

    return _run(notebook, parameters, **options)


def list(
    *,
    home: Home = None,
    notebook: str | None = None,
    status: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = 20,
    removed: bool = False,
) -> builtins.list[dict[str, Any]]:
    """Job runs, newest first; filters combine (``parameters`` values may be typed values or command-line text)."""
    from .history import list_runs, reap

    with _store(home) as store:
        reap(store)
        return list_runs(
            store,
            notebook=notebook,
            status=status,
            parameters=parameters,
            since=since,
            until=until,
            limit=limit,
            removed=removed,
        )


def show(run_id: str, *, home: Home = None) -> dict[str, Any]:
    """Everything recorded about a run (an unambiguous id prefix is enough)."""
    from .history import reap
    from .history import show as _show

    with _store(home) as store:
        reap(store)
        return _show(store, run_id)


def compare(run_ids: Sequence[str], *, home: Home = None) -> dict[str, Any]:
    """Parameters and metrics of several runs side by side."""
    from .history import compare as _compare

    with _store(home) as store:
        return _compare(store, run_ids)


def cancel(run_id: str, *, home: Home = None, grace: float | None = None) -> dict[str, Any]:
    """Cancel a run (its process and kernel); returns the run as recorded afterwards."""
    from .history import CANCEL_GRACE, reap
    from .history import cancel as _cancel

    with _store(home) as store:
        reap(store)
        return _cancel(store, run_id, grace=CANCEL_GRACE if grace is None else grace)


def remove(run_id: str, *, home: Home = None, files: bool = False) -> dict[str, Any]:
    """Hide a finished run from the history, keeping an audit record (``files=True`` deletes its folder too)."""
    from .history import remove as _remove

    with _store(home) as store:
        return _remove(store, run_id, files=files)


def rerun(run_id: str, *, home: Home = None, **options: Any) -> JobResult:
    """Run a recorded run's notebook again with the same parameters and kernel (linked by ``rerun_of``)."""
    with _store(home) as store:
        old = store.get_run(run_id)
    options.setdefault("kernel", old["kernel"])
    from .execute import run as _run

    return _run(old["target"], old["parameters"], home=home, rerun_of=old["id"], **options)


def reruns(run_ids: Sequence[str], **options: Any) -> builtins.list[Any]:
    """Rerun several recorded runs, ``parallel=N`` at once, from a kernel pool (:func:`nb2pipe.jobs.sweeps.reruns`)."""
    from .sweeps import reruns as _reruns

    return _reruns(run_ids, **options)


def sweep(notebook: str | os.PathLike[str], grid: Mapping[str, Sequence[Any]], **options: Any) -> builtins.list[Any]:
    """Run every combination of ``grid`` (name -> values) as a tracked run; see :func:`nb2pipe.jobs.sweeps.sweep`."""
    from .sweeps import sweep as _sweep

    return _sweep(notebook, grid, **options)
