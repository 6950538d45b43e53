"""Cron schedules of parameterized notebook jobs and pipeline runs, fired exactly once from the run store.

One implementation, two hosts: ``nb2pipe scheduler`` (foreground process, or ``--once`` from cron/CI) and, later,
the Jupyter server extension, both driving :class:`Scheduler` (``start``/``stop``/``tick``, no global state).
The public names are loaded lazily so that ``nb2pipe --help`` (which imports this package's ``cli``) stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Clock",
    "Cron",
    "CronError",
    "Handle",
    "LaunchRequest",
    "Launcher",
    "Schedule",
    "ScheduleError",
    "ScheduleStore",
    "Scheduler",
    "SubprocessLauncher",
    "SystemClock",
    "TickReport",
    "UnknownScheduleError",
    "cli_command",
]

if TYPE_CHECKING:
    from .cron import Cron, CronError
    from .launch import Handle, Launcher, LaunchRequest, SubprocessLauncher, cli_command
    from .loop import Clock, Scheduler, SystemClock, TickReport
    from .store import Schedule, ScheduleError, ScheduleStore, UnknownScheduleError

_LAZY = {
    "Cron": "cron",
    "CronError": "cron",
    "Handle": "launch",
    "LaunchRequest": "launch",
    "Launcher": "launch",
    "SubprocessLauncher": "launch",
    "cli_command": "launch",
    "Clock": "loop",
    "Scheduler": "loop",
    "SystemClock": "loop",
    "TickReport": "loop",
    "Schedule": "store",
    "ScheduleError": "store",
    "ScheduleStore": "store",
    "UnknownScheduleError": "store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'nb2pipe.scheduler' has no attribute {name!r}")
