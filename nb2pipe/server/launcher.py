"""Start pipeline runs and tracked jobs outside the request, through the public CLI, and remember what we started.

A request must answer at once, while a run may take hours, so the server starts ``nb2pipe run PATH --json`` or
``nb2pipe job run PATH -p NAME VALUE --json`` as a child process (leader of its own process group, so cancelling
reaches the kernel and the stage workers too) and answers with the run id. The id is allocated here and handed to
the child in ``NB2PIPE_RUN_ID``, the contract the scheduler's launcher uses. A command that allocates its own id
instead is still tied to the launch: its run store row carries the child's pid (and the ``--json`` summary it
prints at the end names the id), see :func:`nb2pipe.server.runs.record_id`. Until the child has written its row,
and after it ends, :class:`Launch` answers with what only the parent knows: its exit code and its error output.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from ..parameters import parameter_text
from ..runstore import HOME_ENV, new_run_id

RUN_ID_ENV: Final = "NB2PIPE_RUN_ID"
KINDS: Final = {"pipeline": ("run",), "job": ("job", "run")}
_TAIL = 4000


def cli_argv(kind: str, target: str, parameters: Mapping[str, Any]) -> list[str]:
    """The command line that starts a run of ``kind`` (``pipeline`` or ``job``) on ``target``."""
    argv = [sys.executable, "-m", "nb2pipe.cli", *KINDS[kind], target]
    for name, value in parameters.items():
        argv += ["-p", name, parameter_text(value)]
    return [*argv, "--json"]


@dataclass
class Launch:
    """One child process started by this server."""

    id: str
    kind: str
    target: str
    parameters: dict[str, Any]
    argv: list[str]
    process: subprocess.Popen[bytes]
    stderr: IO[bytes]
    stdout: IO[bytes]
    created_at: float = field(default_factory=time.time)
    #: The id of the run store row the child wrote, once known (the launch id when the command honours it).
    record: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def summary_id(self) -> str | None:
        """The run id from the command's final ``--json`` summary (``run_id`` or ``id``), once it has exited."""
        if self.returncode() is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            self.stdout.seek(0)
            text = self.stdout.read().decode("utf-8", "replace")
            start = text.find("{")
            data = json.loads(text[start:]) if start >= 0 else None
            if isinstance(data, dict):
                value = data.get("run_id") or data.get("id")
                return str(value) if value else None
        return None

    def returncode(self) -> int | None:
        return self.process.poll()

    def _tail(self, stream: IO[bytes]) -> str:
        with contextlib.suppress(OSError, ValueError):
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - _TAIL))
            return stream.read().decode("utf-8", "replace")
        return ""

    def as_json(self) -> dict[str, Any]:
        """What the parent knows about the run (used until and beside the run store's row)."""
        code = self.returncode()
        status = "running" if code is None else "succeeded" if code == 0 else "failed"
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "parameters": self.parameters,
            "status": status,
            "created_at": self.created_at,
            "exit_code": code,
            "stderr": self._tail(self.stderr) if code not in (None, 0) else "",
            "stdout": self._tail(self.stdout) if code is not None else "",
        }


class Launcher:
    """Starts runs in the server's root directory, with the run store at ``home``; keeps their handles."""

    def __init__(self, root: str | Path, home: str | Path) -> None:
        self.root = Path(root)
        self.home = Path(home)
        self._launches: dict[str, Launch] = {}
        self._lock = threading.Lock()

    def start(self, kind: str, target: str, parameters: Mapping[str, Any]) -> Launch:
        """Start a run of ``target`` (relative to the root) and return at once."""
        run_id = new_run_id()
        argv = cli_argv(kind, target, parameters)
        env = {**os.environ, RUN_ID_ENV: run_id, HOME_ENV: str(self.home.absolute())}
        out = tempfile.TemporaryFile()
        err = tempfile.TemporaryFile()
        process = subprocess.Popen(
            argv,
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        launch = Launch(run_id, kind, target, dict(parameters), argv, process, err, out)
        with self._lock:
            self._launches[run_id] = launch
        return launch

    def get(self, run_id: str) -> Launch | None:
        with self._lock:
            return self._launches.get(run_id)

    def all(self) -> Sequence[Launch]:
        with self._lock:
            return list(self._launches.values())

    def cancel(self, run_id: str) -> bool:
        """Send SIGTERM to the run's process group; False when it is not ours or already over."""
        launch = self.get(run_id)
        if launch is None or launch.returncode() is not None:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(launch.process.pid, signal.SIGTERM)
        return True

    def close(self) -> None:
        """Reap finished children (running ones keep running: a run outlives the server, as from a terminal)."""
        for launch in self.all():
            launch.process.poll()
