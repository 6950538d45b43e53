"""Starting a scheduled run: the one place that knows which command runs a notebook job or a pipeline.

The scheduler loop only sees the :class:`Launcher` and :class:`Handle` protocols. The production launcher runs the
public CLI in a subprocess that leads its own process group (so a timeout or shutdown reaches the kernel and every
stage process too), with the schedule link in the environment:

- ``NB2PIPE_RUN_ID``: the id the tracked run must use (allocated by the scheduler, recorded with the fire);
- ``NB2PIPE_SCHEDULE``: the schedule's name;
- ``NB2PIPE_SCHEDULED_FOR``: the fire time, ISO-8601 UTC (``2026-03-29T01:00:00Z``);
- ``NB2PIPE_HOME``: the run store the scheduler uses.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..parameters import parameter_text
from .cron import iso_utc

if TYPE_CHECKING:
    from .standby import Standbys

RUN_ID_ENV: Final = "NB2PIPE_RUN_ID"
SCHEDULE_ENV: Final = "NB2PIPE_SCHEDULE"
SCHEDULED_FOR_ENV: Final = "NB2PIPE_SCHEDULED_FOR"


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a launcher needs to start one attempt of one fire."""

    #: The tracked run's id, allocated by the scheduler.
    run_id: str
    #: The schedule's name.
    schedule: str
    #: ``job`` or ``pipeline``.
    kind: str
    target: str
    #: Typed parameter values, checked when the schedule was added.
    parameters: Mapping[str, Any]
    #: The fire time, UTC epoch seconds.
    scheduled_for: float
    #: 1 for the first try.
    attempt: int
    #: The run store folder.
    home: Path
    #: Where the run's stdout and stderr go (None: inherit the scheduler's).
    log_path: Path | None = None


class Handle(Protocol):
    """A started run, as the loop watches it."""

    @property
    def pid(self) -> int | None: ...

    def poll(self) -> int | None:
        """The exit code once the run's process has ended, else None (never blocks)."""

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the process ends (or ``timeout`` seconds pass: then None)."""

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the run's whole process group (kernel and stage processes included)."""


class Launcher(Protocol):
    """Starts runs. Swap it to change what a scheduled run is; the loop does not care."""

    def launch(self, request: LaunchRequest) -> Handle: ...


def cli_arguments(request: LaunchRequest) -> list[str]:
    """``job run NOTEBOOK`` or ``run PIPELINE_DIR``, with ``-p`` pairs and ``--json``: what follows ``nb2pipe``."""
    argv = ["job", "run"] if request.kind == "job" else ["run"]
    argv.append(request.target)
    for name, value in request.parameters.items():
        argv += ["-p", name, parameter_text(value)]
    return [*argv, "--json"]


def cli_command(request: LaunchRequest) -> list[str]:
    """``python -m nb2pipe`` followed by :func:`cli_arguments`."""
    return [sys.executable, "-m", "nb2pipe", *cli_arguments(request)]


def run_environment(request: LaunchRequest, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(
        {
            RUN_ID_ENV: request.run_id,
            SCHEDULE_ENV: request.schedule,
            SCHEDULED_FOR_ENV: iso_utc(request.scheduled_for),
            "NB2PIPE_HOME": str(request.home.absolute()),
        }
    )
    return env


class ProcessHandle:
    """A :class:`Handle` on a child process that leads its own process group."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def poll(self) -> int | None:
        return self._process.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, sig: int) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, sig)


class AdoptedHandle:
    """A :class:`Handle` on a run started by a scheduler that died: only its pid is known.

    Its exit code is known only if it happens to be our child; otherwise the run store tells how it ended.
    """

    def __init__(self, pid: int | None) -> None:
        self._pid = pid
        self._code: int | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    def poll(self) -> int | None:
        if self._code is not None or self._pid is None:
            return self._code if self._pid is not None else -1
        try:
            pid, status = os.waitpid(self._pid, os.WNOHANG)
            if pid == self._pid:
                self._code = os.waitstatus_to_exitcode(status)
                return self._code
        except ChildProcessError:
            pass
        from ..runstore import pid_alive

        if pid_alive(self._pid):
            return None
        self._code = -1  # ended; not our child, so its exit code is lost: the run store has the ending
        return self._code

    def wait(self, timeout: float | None = None) -> int | None:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        return code

    def signal(self, sig: int) -> None:
        if self._pid is not None and self.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, sig)


@dataclass(frozen=True)
class Upcoming:
    """A fire expected within the scheduler's look-ahead (what a launcher may prepare for)."""

    kind: str
    target: str
    #: UTC epoch seconds.
    fire_time: float
    home: Path


class SubprocessLauncher:
    """Runs each attempt as a command in its own process group; by default the public CLI (:func:`cli_command`).

    With ``standbys=N`` (and the default command), notebook jobs start warm: :meth:`prepare` keeps up to N standby
    job processes for the fires that are coming (:mod:`nb2pipe.scheduler.standby`), and :meth:`launch` hands a run
    to one of them instead of starting ``nb2pipe job run`` cold. Without a standby (none coming, none started in
    time, or it died) the run starts cold, exactly as before.
    """

    def __init__(
        self,
        command: Callable[[LaunchRequest], Sequence[str]] | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        standbys: int = 0,
    ) -> None:
        self.command = command
        self.cwd = cwd
        self.env = env
        self.standbys: Standbys | None = None
        if standbys > 0 and command is None:
            from .standby import Standbys

            self.standbys = Standbys(standbys, cwd=cwd, env=env)
        self._kernels: dict[str, tuple[int, str | None]] = {}

    def prepare(self, upcoming: Sequence[Upcoming]) -> None:
        """Keep standbys warm for the notebook jobs among ``upcoming`` (a no-op without standbys)."""
        if self.standbys is None:
            return
        from .standby import notebook_kernel

        wanted: dict[str, int] = {}
        logs = None
        for fire in upcoming:
            if fire.kind != "job":
                continue
            kernel = notebook_kernel(fire.target, self._kernels)
            if kernel is not None:
                wanted[kernel] = wanted.get(kernel, 0) + 1
                logs = fire.home / "schedules" / "logs"
        self.standbys.want(wanted, logs)

    def close(self) -> None:
        """End the standbys still waiting (runs already handed to one go on)."""
        if self.standbys is not None:
            self.standbys.close()

    def launch(self, request: LaunchRequest) -> Handle:
        argv = list((self.command or cli_command)(request))
        env = run_environment(request, self.env)
        if self.standbys is not None and request.kind == "job":
            handle = self._hand_over(request, env)
            if handle is not None:
                return handle
        with contextlib.ExitStack() as stack:
            log = None
            if request.log_path is not None:
                request.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = stack.enter_context(open(request.log_path, "ab"))
            process = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                start_new_session=True,
            )
        return ProcessHandle(process)

    def _hand_over(self, request: LaunchRequest, env: Mapping[str, str]) -> Handle | None:
        """Give the run to a standby of the notebook's kernel, if one is alive; None to start it cold."""
        from .standby import notebook_kernel

        assert self.standbys is not None
        kernel = notebook_kernel(request.target, self._kernels)
        while kernel is not None and (standby := self.standbys.take(kernel)) is not None:
            cwd = self.cwd if self.cwd is not None else os.getcwd()  # where a cold run would start
            if standby.hand_over(cli_arguments(request), env, request.log_path, cwd):
                self.standbys.handed_over(standby)
                return ProcessHandle(standby.process)
        return None
