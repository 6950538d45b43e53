"""Warm scheduled runs: standby job processes started shortly before a schedule fires, handed the run at the fire.

A standby (:mod:`nb2pipe.jobs.standby`) is a child process in its own session that has already imported the job
runner and started one kernel of the notebook's kernel name, in the directory a cold run would use. At the fire,
:class:`~nb2pipe.scheduler.launch.SubprocessLauncher` writes the run's ``nb2pipe job run`` arguments and environment
to the standby's stdin instead of starting ``nb2pipe job run`` cold; from then on the standby *is* that job process
(same pid for the run, same process group, heartbeats, cancel, exit code and record). Each standby runs at most one
job; its kernel is used for that run only.

:class:`Standbys` keeps at most ``size`` of them, as many per kernel name as fires are coming within the scheduler's
look-ahead, and discards the rest: unused ones when nothing is coming any more, ones older than ``max_age``, and ones
whose kernel died or could not start (replaced, after ``retry_after`` seconds for a kernel that failed to start).
A standby whose host dies sees the end of its stdin and exits; its kernel follows its parent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

log = logging.getLogger("nb2pipe.scheduler")

#: Seconds an unused standby is kept before it is replaced by a fresh one.
MAX_AGE: Final = 600.0
#: Seconds before another standby is tried for a kernel name whose standby could not start a kernel.
RETRY_AFTER: Final = 60.0
#: Seconds after a handoff during which no new standby is started while that run goes on (starting Python and a
#: kernel would compete for the CPU with the run that was just started warm).
QUIET_AFTER_HANDOFF: Final = 5.0


@dataclass
class Standby:
    """One standby process, as the scheduler sees it."""

    process: subprocess.Popen[bytes]
    kernel: str
    #: The standby's stderr/stdout file, renamed to the run's log at the handoff (None: inherited).
    log_path: Path | None
    #: When it was started (monotonic seconds).
    started: float
    #: ``warming``, ``ready`` (its kernel answered), ``cold`` (no kernel: it can still take a run) or ``dead``.
    state: str = "warming"
    kernel_pid: int | None = None
    detail: str | None = None
    _pending: bytes = field(default=b"", repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def refresh(self) -> str:
        """Read what the standby said so far (never blocks) and return its state."""
        if self.state == "dead":
            return self.state
        stdout = self.process.stdout
        if stdout is not None:
            try:
                chunk = os.read(stdout.fileno(), 4096)
            except BlockingIOError:
                chunk = None
            except OSError:
                chunk = b""
            if chunk:
                self._pending += chunk
                *lines, self._pending = self._pending.split(b"\n")
                for line in lines:
                    with contextlib.suppress(ValueError):
                        message = json.loads(line)
                        self.state = str(message.get("state", self.state))
                        self.kernel_pid = message.get("kernel_pid", self.kernel_pid)
                        self.detail = message.get("error", self.detail)
        if self.process.poll() is not None:
            self.state = "dead"
        return self.state

    def hand_over(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path | None, cwd: str | os.PathLike[str] = "."
    ) -> bool:
        """Give this standby its run, to be run in ``cwd`` (as a cold one would); False if the standby is gone (then
        it has been ended and the run must start cold)."""
        if self.refresh() == "dead":
            return False
        if self.log_path is not None and log_path is not None:
            with contextlib.suppress(OSError):
                log_path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.log_path, log_path)  # the kernel's and the standby's output keep their file
        request = json.dumps({"argv": list(argv), "env": dict(env), "cwd": os.fspath(cwd)}) + "\n"
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(request.encode("utf-8"))
            self.process.stdin.close()
        except (OSError, ValueError):
            self.end(kill=True)
            return False
        if self.process.stdout is not None:
            self.process.stdout.close()
        return True

    def end(self, *, kill: bool = False) -> None:
        """Tell it to stop (end of input: it ends its kernel and exits); ``kill``: SIGKILL its process group."""
        with contextlib.suppress(OSError, ValueError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        if kill:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.stdout is not None:
            with contextlib.suppress(OSError):
                self.process.stdout.close()


class Standbys:
    """At most ``size`` standby job processes, matched to the kernel names of the fires that are coming."""

    def __init__(
        self,
        size: int,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        max_age: float = MAX_AGE,
        retry_after: float = RETRY_AFTER,
    ) -> None:
        self.size, self.cwd, self.env = size, cwd, env
        self.max_age, self.retry_after = max_age, retry_after
        self.waiting: list[Standby] = []
        #: Standbys handed a run or told to stop, not yet waited for (so none is left a zombie).
        self._ended: list[Standby] = []
        #: Kernel name -> monotonic time its last standby could not start a kernel.
        self._failed: dict[str, float] = {}
        #: How many standbys were started and how many were handed a run (for logs, tests and benchmarks).
        self.started = 0
        self.handed = 0
        #: Runs handed over recently: (process, monotonic time of the handoff).
        self._recent: list[tuple[subprocess.Popen[bytes], float]] = []

    def want(self, kernels: Mapping[str, int], logs: Path | None) -> None:
        """Keep as many ready or warming standbys per kernel name as ``kernels`` says, ``size`` in all."""
        now = time.monotonic()
        self._reap()
        for standby in list(self.waiting):
            state = standby.refresh()
            reason = None
            if state == "dead":
                code = standby.process.poll()
                reason = f"exited with code {code}" + (f" ({standby.detail})" if standby.detail else "")
            elif state == "cold":
                self._failed[standby.kernel] = now
                reason = f"could not start a {standby.kernel} kernel: {standby.detail}"
            elif now - standby.started > self.max_age:
                reason = f"unused for {self.max_age:g} s"
            elif kernels.get(standby.kernel, 0) <= 0:
                reason = "no fire of its kernel is coming"
            if reason is not None:
                self._discard(standby, reason, quiet=reason.startswith(("unused", "no fire")))
        for kernel, count in kernels.items():
            for standby in [s for s in self.waiting if s.kernel == kernel][max(count, 0) :]:
                self._discard(standby, "more standbys than fires coming", quiet=True)
        self._recent = [(p, t) for p, t in self._recent if now - t < QUIET_AFTER_HANDOFF and p.poll() is None]
        budget = 0 if self._recent else self.size - len(self.waiting)
        for kernel, count in kernels.items():
            if now - self._failed.get(kernel, -self.retry_after) < self.retry_after:
                continue
            missing = count - sum(1 for s in self.waiting if s.kernel == kernel)
            for _ in range(max(min(missing, budget), 0)):
                if self._spawn(kernel, logs) is None:
                    break
                budget -= 1

    def take(self, kernel: str) -> Standby | None:
        """The standby to hand a run of ``kernel`` to: a ready one, else the one warming longest; None if none."""
        self._reap()
        live = [s for s in self.waiting if s.kernel == kernel and s.refresh() in ("ready", "warming")]
        if not live:
            return None
        live.sort(key=lambda s: (s.state != "ready", s.started))
        standby = live[0]
        self.waiting.remove(standby)  # from now on the run's handle owns the process
        return standby

    def handed_over(self, standby: Standby) -> None:
        self.handed += 1
        self._recent.append((standby.process, time.monotonic()))
        log.info("run handed to standby %d (%s, kernel %s)", standby.pid, standby.state, standby.kernel)

    def close(self) -> None:
        """End every waiting standby (they end their kernels) and wait for them briefly."""
        for standby in self.waiting:
            standby.end()
            self._ended.append(standby)
        self.waiting = []
        deadline = time.monotonic() + 5.0
        for standby in self._ended:
            try:
                standby.process.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                standby.end(kill=True)
        self._reap()

    def _spawn(self, kernel: str, logs: Path | None) -> Standby | None:
        log_path = logs / f"standby-{secrets.token_hex(6)}.log" if logs is not None else None
        argv = [sys.executable, "-m", "nb2pipe.jobs.standby", "--kernel", kernel]
        try:
            if log_path is not None:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with open(log_path, "ab") as out:
                    process = subprocess.Popen(
                        argv, cwd=self.cwd, env=self._env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=out, start_new_session=True,
                    )  # fmt: skip
            else:
                process = subprocess.Popen(
                    argv, cwd=self.cwd, env=self._env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    start_new_session=True,
                )  # fmt: skip
        except OSError as exc:
            log.warning("could not start a standby for kernel %s: %s", kernel, exc)
            return None
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        standby = Standby(process, kernel, log_path, time.monotonic())
        self.waiting.append(standby)
        self.started += 1
        log.info("started standby %d for kernel %s", process.pid, kernel)
        return standby

    def _env(self) -> dict[str, str]:
        return dict(os.environ if self.env is None else self.env)

    def _discard(self, standby: Standby, reason: str, *, quiet: bool) -> None:
        self.waiting.remove(standby)
        dead = standby.state == "dead"
        standby.end(kill=dead)
        self._ended.append(standby)
        if quiet:
            log.debug("discarded standby %d: %s", standby.pid, reason)
            if standby.log_path is not None:  # nothing worth keeping from a standby that was simply not needed
                with contextlib.suppress(OSError):
                    standby.log_path.unlink()
        else:
            where = f"; its output: {standby.log_path}" if standby.log_path is not None else ""
            log.warning("standby %d for kernel %s %s%s", standby.pid, standby.kernel, reason, where)

    def _reap(self) -> None:
        """Forget standbys that ended (``poll`` waits for them, so none is left a zombie)."""
        self._ended = [s for s in self._ended if s.process.poll() is None]


def notebook_kernel(path: str, cache: dict[str, tuple[int, str | None]]) -> str | None:
    """The kernel name a cold ``nb2pipe job run`` of ``path`` would use (None when it cannot be read)."""
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return None
    cached = cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    name: str | None
    try:
        with open(path, encoding="utf-8") as fh:
            data: Any = json.load(fh)
        spec = data.get("metadata", {}).get("kernelspec") or {}
        name = str(spec.get("name") or "python3")
    except (OSError, ValueError, AttributeError):
        name = None
    cache[path] = (stamp, name)
    return name
