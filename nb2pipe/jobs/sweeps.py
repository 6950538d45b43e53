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
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..parameters import Declared, notebook_parameters, resolve
from .execute import JobResult, cancel_local, on_stop_signals

if TYPE_CHECKING:
    from .pool import KernelPool


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
    kernel_name = kernel or _notebook_kernel(notebook)

    def call(params: dict[str, Any]) -> Callable[[KernelPool | None], JobResult]:
        return lambda kernel_pool: run(
            notebook, params, kernel=kernel, pool=kernel_pool, handle_signals=False, **options
        )

    calls = [call(p) for p in runs]
    return run_all(calls, parallel=parallel, pool_kernel=kernel_name if pool else None, cwd=options.get("cwd"))


def run_all(
    calls: Sequence[Callable[[KernelPool | None], JobResult]],
    *,
    parallel: int = 1,
    pool_kernel: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> list[JobResult]:
    """Make each call (one tracked run) with ``parallel`` at once, the kernels of ``pool_kernel`` from a pool.

    Each call gets the pool (or None) and passes it to :func:`~nb2pipe.jobs.execute.run`; a run of another kernel
    starts its own. Ctrl-C or SIGTERM cancels the runs going and starts no new one. Results in call order.
    """
    stop = threading.Event()
    kernel_pool = None
    if pool_kernel is not None and len(calls) > 1:
        from .pool import KernelPool

        kernel_pool = KernelPool(pool_kernel, size=max(parallel, 1), cwd=cwd, total=len(calls))

    def one(call: Callable[[KernelPool | None], JobResult]) -> JobResult | None:
        if stop.is_set():
            return None
        return call(kernel_pool)

    try:
        with _cancel_all_on_signals(stop), ThreadPoolExecutor(max_workers=max(parallel, 1)) as threads:
            results = list(threads.map(one, calls))
    finally:
        if kernel_pool is not None:
            kernel_pool.close()
    return [r for r in results if r is not None]


def reruns(
    run_ids: Sequence[str],
    *,
    parallel: int = 1,
    pool: bool = True,
    home: str | os.PathLike[str] | None = None,
    kernel: str | None = None,
    **options: Any,
) -> list[JobResult]:
    """Run recorded runs again (same notebook, parameters and kernel; linked by ``rerun_of``), ``parallel`` at once.

    Every run is looked up and its parameters checked against its notebook as it is now before any starts; the
    kernels of the most common kernel name come from a pool, as in a sweep.
    """
    from collections import Counter

    from ..runstore import RunStore
    from .execute import run

    with RunStore(home) as store:
        olds = [store.get_run(run_id) for run_id in run_ids]  # an unknown id: nothing runs
    for old in olds:
        resolve(notebook_parameters(old["target"]), [], target=old["target"], values=old["parameters"])
    kernels = [kernel or old["kernel"] or _notebook_kernel(old["target"]) for old in olds]

    def call(old: dict[str, Any], name: str) -> Callable[[KernelPool | None], JobResult]:
        return lambda kernel_pool: run(
            old["target"],
            old["parameters"],
            home=home,
            rerun_of=old["id"],
            kernel=name,
            pool=kernel_pool,
            handle_signals=False,
            **options,
        )

    common = Counter(kernels).most_common(1)[0][0] if pool and kernels else None
    return run_all(
        [call(old, name) for old, name in zip(olds, kernels, strict=True)],
        parallel=parallel,
        pool_kernel=common,
        cwd=options.get("cwd"),
    )


def _notebook_kernel(notebook: str | os.PathLike[str]) -> str:
    from ..notebook import read_notebook

    spec = read_notebook(os.fspath(notebook)).metadata.get("kernelspec")
    name = spec.get("name") if isinstance(spec, dict) else None
    return str(name) if name else "python3"
