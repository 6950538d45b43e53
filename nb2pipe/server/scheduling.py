"""The scheduler loop hosted inside the Jupyter server: JupyterLab users get schedules without another process.

It is the same :class:`nb2pipe.scheduler.Scheduler` that ``nb2pipe scheduler`` runs, in a daemon thread of the
server. It starts only once the run store holds a live schedule (at server start, or when the sidebar adds one), so a
server whose users never schedule anything creates no thread and writes no file. Running it next to a standalone
``nb2pipe scheduler`` on the same store is safe: each fire is claimed once, by the database.

Turn it off with ``c.Nb2Pipe.scheduler = False`` in ``jupyter_server_config.py`` or ``NB2PIPE_SERVER_SCHEDULER=0``.
``c.Nb2Pipe.standbys = N`` sets how many warm job processes it keeps for fires due soon (default 2; 0 starts every
scheduled run cold), as ``nb2pipe scheduler --standbys N`` does.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ..runstore import DB_NAME

ENV = "NB2PIPE_SERVER_SCHEDULER"


class SchedulerHost:
    """Owns at most one scheduler thread for the server's run store."""

    def __init__(self, home: Path, *, enabled: bool = True, standbys: int = 2, log: Any = None) -> None:
        self.home = home
        self.enabled = enabled
        self.standbys = standbys
        self.log = log
        self.scheduler: Any = None
        self._lock = threading.Lock()

    def has_schedules(self) -> bool:
        path = self.home / DB_NAME
        if not path.exists():
            return False
        try:  # read-only peek: never creates, migrates or locks the store
            with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)) as db:
                return bool(db.execute("SELECT 1 FROM schedules WHERE deleted_at IS NULL LIMIT 1").fetchone())
        except sqlite3.Error:  # no schedules table yet (an old store, or jobs only)
            return False

    def ensure_started(self) -> bool:
        """Start the loop if it is enabled, not running yet, and there is something to schedule."""
        with self._lock:
            if not self.enabled or self.scheduler is not None or not self.has_schedules():
                return self.scheduler is not None
            from ..scheduler import Scheduler

            self.scheduler = Scheduler(self.home, standbys=self.standbys)
            self.scheduler.start()
            atexit.register(self.stop)
            if self.log is not None:
                self.log.info("nb2pipe: scheduler running in the server for %s", self.home / DB_NAME)
            return True

    def stop(self) -> None:
        with self._lock:
            if self.scheduler is not None:
                self.scheduler.stop(timeout=10)
                self.scheduler = None


def enabled(serverapp: Any) -> bool:
    """``c.Nb2Pipe.scheduler`` (default true), overridden by ``NB2PIPE_SERVER_SCHEDULER=0|1``."""
    env = os.environ.get(ENV)
    if env is not None:
        return env.strip().lower() not in ("0", "false", "no", "off", "")
    section = serverapp.config.get("Nb2Pipe", {})
    return bool(section.get("scheduler", True))


def standbys(serverapp: Any) -> int:
    """``c.Nb2Pipe.standbys``: warm job processes the hosted scheduler keeps (default 2, never negative)."""
    value = serverapp.config.get("Nb2Pipe", {}).get("standbys", 2)
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        serverapp.log.warning("nb2pipe: c.Nb2Pipe.standbys=%r is not a number of processes; using 2", value)
        return 2
