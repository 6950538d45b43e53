"""Cron schedules of parameterized notebook jobs and pipeline runs, fired exactly once from the run store.

One implementation, two hosts: ``nb2pipe scheduler`` (foreground process, or ``--once`` from cron/CI) and, later,
the Jupyter server extension, both driving :class:`Scheduler` (``start``/``stop``/``tick``, no global state).
"""

from __future__ import annotations

from .cron import Cron, CronError
from .launch import Handle, Launcher, LaunchRequest, SubprocessLauncher, cli_command
from .loop import Clock, Scheduler, SystemClock, TickReport
from .store import Schedule, ScheduleError, ScheduleStore, UnknownScheduleError

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
