"""Parameter sweeps: every combination of a grid, each a normal tracked run.

Locally, ``parallel`` runs go at once in threads (the work happens in the kernels, separate processes), fed by a
:class:`~nb2pipe.jobs.pool.KernelPool` so that the next run's kernel is already started while the current ones run.
With ``executor="dask"`` each run is sent to a Dask cluster (see :mod:`nb2pipe.jobs.dask_executor`).
Ctrl-C or SIGTERM cancels every run of the sweep and starts no new one.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..parameters import Declared, notebook_parameters, resolve
from .execute import JobResult, cancel_local, on_stop_signals


def split_values(param: Declared | None, text: str) -> list[Any]:
    """``-p lr 0.1,0.01`` -> ``[0.1, 0.01]``: comma-separated values, typed later like the parameter.

    A list parameter takes whole lists (``-p layers [1,2],[3]``); a str parameter splits on plain commas.
    """
    if param is not None and param.type == "str":
        return [v.strip() for v in text.split(",")]
    try:
        values = ast.literal_eval(f"[{text}]")
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return [v.strip() for v in text.split(",")]
    return list(values)


def grid_from_pairs(notebook: str | os.PathLike[str], pairs: Sequence[tuple[str, str]]) -> dict[str, list[Any]]:
    """The sweep grid from ``-p NAME V1,V2`` pairs (a name given twice adds values)."""
    declared = {p.name: p for p in notebook_parameters(notebook) or []}
    grid: dict[str, list[Any]] = {}
    for name, text in pairs:
        grid.setdefault(name, []).extend(split_values(declared.get(name), text))
    return grid


def combinations(
    notebook: str | os.PathLike[str],
    grid: Mapping[str, Sequence[Any]],
    files: Sequence[str | os.PathLike[str]] = (),
) -> list[dict[str, Any]]:
    """Every combination of the grid, each checked and typed against the notebook before anything runs."""
    declared = notebook_parameters(notebook)
    names = list(grid)
    out = []
    for values in itertools.product(*(grid[n] for n in names)):
        given = dict(zip(names, values, strict=True))
        texts = [(k, v) for k, v in given.items() if isinstance(v, str)]
        typed = {k: v for k, v in given.items() if not isinstance(v, str)}
        out.append(resolve(declared, texts, files, target=str(notebook), values=typed))
    return out


@contextlib.contextmanager
def _cancel_all_on_signals(stop: threading.Event) -> Iterator[None]:
    def cancel(reason: str) -> None:
        stop.set()
        cancel_local(reason)

    with on_stop_signals(cancel):
        yield


def sweep(
    notebook: str | os.PathLike[str],
    grid: Mapping[str, Sequence[Any]],
    *,
    parallel: int = 1,
    files: Sequence[str | os.PathLike[str]] = (),
    executor: str = "local",
    scheduler: str | None = None,
    pool: bool = True,
    kernel: str | None = None,
    **options: Any,
) -> list[JobResult]:
    """Run every combination of ``grid``; returns the results in grid order (a failed run does not stop the rest)."""
    from .execute import run

    runs = combinations(notebook, grid, files)
    if executor == "dask":
        from .dask_executor import run_on_dask

        return run_on_dask(notebook, runs, scheduler=scheduler, kernel=kernel, **options)
    if executor != "local":
        from .execute import JobError

        raise JobError(f"unknown executor {executor!r}; use local or dask")
    stop = threading.Event()
    kernel_pool = None
    if pool and len(runs) > 1:
        from .pool import KernelPool

        kernel_name = kernel or _notebook_kernel(notebook)
        kernel_pool = KernelPool(kernel_name, size=max(parallel, 1), cwd=options.get("cwd"), total=len(runs))

    def one(params: dict[str, Any]) -> JobResult | None:
        if stop.is_set():
            return None
        return run(notebook, params, kernel=kernel, pool=kernel_pool, handle_signals=False, **options)

    try:
        with _cancel_all_on_signals(stop), ThreadPoolExecutor(max_workers=max(parallel, 1)) as threads:
            results = list(threads.map(one, runs))
    finally:
        if kernel_pool is not None:
            kernel_pool.close()
    return [r for r in results if r is not None]


def _notebook_kernel(notebook: str | os.PathLike[str]) -> str:
    from ..notebook import read_notebook

    spec = read_notebook(os.fspath(notebook)).metadata.get("kernelspec")
    name = spec.get("name") if isinstance(spec, dict) else None
    return str(name) if name else "python3"
