"""Executors: where stages run. Found through the ``nb2pipe.executors`` entry-point group, loaded lazily.

An executor receives :class:`~nb2pipe.runner.execute.Task` objects from the orchestrator (which owns ordering,
caching and the run store) and hands back :class:`~nb2pipe.runner.execute.Result` objects as stages finish. Another
engine plugs in by exposing a class with this interface under the entry-point group; nothing in the core changes.
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Any, Protocol

from ..errors import Nb2PipeError
from .execute import Result, Task

GROUP = "nb2pipe.executors"
#: Built-in executors, used when the package metadata is not installed (running from a source tree).
BUILTIN = {"local": "nb2pipe.runner.local:LocalExecutor", "dask": "nb2pipe.runner.dask_executor:DaskExecutor"}


class Executor(Protocol):
    """What the orchestrator needs from an execution engine."""

    #: Name recorded with the run (``local``, ``dask``).
    name: str

    def submit(self, task: Task) -> None:
        """Start ``task`` (or queue it until a worker is free)."""

    def wait(self, timeout: float) -> list[Result]:
        """Results of tasks finished since the last call; waits up to ``timeout`` seconds for at least one."""

    def close(self) -> None:
        """Release workers after a normal end."""

    def kill(self) -> None:
        """Stop everything now (Ctrl-C): running stages are abandoned."""


class ExecutorError(Nb2PipeError):
    """An unknown executor name, or an engine that cannot start (no scheduler at the address)."""


def available() -> dict[str, str]:
    """Executor name -> ``module:attribute``, from the entry points plus the built-ins."""
    found = dict(BUILTIN)
    for ep in entry_points(group=GROUP):
        found[ep.name] = ep.value
    return found


def load(name: str, **options: Any) -> Executor:
    """Instantiate the executor ``name`` with ``options`` (``workers``, ``scheduler``...).

    Built-in names resolve without scanning installed distributions (that scan costs ~60 ms per run); any other
    name is looked up in the entry-point group.
    """
    spec = BUILTIN.get(name)
    table = BUILTIN if spec is not None else available()
    spec = table.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; available: {', '.join(sorted(table))}"
        raise ExecutorError(f"unknown executor {name!r}{hint}")
    from importlib import import_module

    module_name, _, attr = spec.partition(":")
    cls = getattr(import_module(module_name), attr)
    executor: Executor = cls(**options)
    return executor
