"""The local executor: a small pool of worker processes on this machine, started only when a stage must run.

Each worker is a fresh ``python -m nb2pipe.runner.worker`` (never the user's kernel) that runs one stage at a time.
Workers are spawned lazily, one more only when a stage is ready and every worker is busy, so a chain of stages uses
one process and pays the libraries' import cost once; ``--workers N`` caps how many run side by side. The first one
may be started early (:meth:`LocalExecutor.warm`) to import the first stages' modules while the orchestrator sets up.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import selectors
import signal
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from typing import IO

from .execute import Failure, Result, Task, Warm

#: ``listener(stage, stream, text)``: complete lines a running stage printed on ``stdout`` or ``stderr``.
Listener = Callable[[str, str, str], None]
#: How often the output of running stages is read while streaming.
POLL_EVERY = 0.1


class _Tail:
    """Follows one capture file of a worker from where a stage started, handing complete lines to the listener."""

    def __init__(self, stage: str, stream: str, fd: int) -> None:
        self.stage, self.stream, self.fd = stage, stream, fd
        # The worker is idle: everything earlier stages printed is in the file already.
        self.offset = os.fstat(fd).st_size
        self.partial = b""

    def poll(self, listener: Listener, final: bool = False) -> None:
        chunks = [self.partial]
        while chunk := os.pread(self.fd, 1 << 16, self.offset):
            chunks.append(chunk)
            self.offset += len(chunk)
        data = b"".join(chunks)
        cut = len(data) if final else data.rfind(b"\n") + 1
        self.partial = data[cut:]
        if cut:
            text = data[:cut].decode("utf-8", errors="replace")
            listener(self.stage, self.stream, text if text.endswith("\n") else text + "\n")


class _Worker:
    def __init__(self) -> None:
        # Stage output goes to two unnamed files this process keeps open too (created once per worker, not per
        # stage), so it can be shown while the stage runs.
        self.capture = [tempfile.TemporaryFile(buffering=0), tempfile.TemporaryFile(buffering=0)]
        fds = [fh.fileno() for fh in self.capture]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nb2pipe.runner.worker", *map(str, fds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=fds,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout
        self.task: Task | None = None
        self.tails: list[_Tail] = []

    def send(self, task: Task, live: bool) -> None:
        self.task = task
        if live and task.capture_fd:
            streams = zip(("stdout", "stderr"), self.capture, strict=True)
            self.tails = [_Tail(task.stage, name, fh.fileno()) for name, fh in streams]
        self.post(task)

    def post(self, message: Task | Warm) -> None:
        pickle.dump(message, self.stdin, protocol=5)
        self.stdin.flush()


class LocalExecutor:
    """Run stages in local worker processes, at most ``workers`` at a time."""

    name = "local"

    def __init__(self, workers: int | None = None, **_: object) -> None:
        self.max_workers = max(1, workers or min(4, os.cpu_count() or 1))
        self.workers: list[_Worker] = []
        self.queue: deque[Task] = deque()
        self.selector = selectors.DefaultSelector()
        self.listener: Listener | None = None

    def stream(self, listener: Listener) -> None:
        """Hand what running stages print to ``listener``, line by line, while they run."""
        self.listener = listener

    def warm(self, request: Warm) -> None:
        """Start a worker now and have it import ``request.modules`` while the orchestrator gets ready.

        Called when the first stages are known to need running: the worker's interpreter start and the stage
        modules' imports (most of a first stage's time) overlap the orchestrator's own setup.
        """
        if not self.workers:
            self._spawn()
        self.workers[0].post(request)

    def _spawn(self) -> _Worker:
        worker = _Worker()
        self.workers.append(worker)
        self.selector.register(worker.stdout, selectors.EVENT_READ, worker)
        return worker

    def submit(self, task: Task) -> None:
        self.queue.append(task)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.queue:
            idle = next((w for w in self.workers if w.task is None), None)
            if idle is None:
                if len(self.workers) >= self.max_workers:
                    return
                idle = self._spawn()
            idle.send(self.queue.popleft(), self.listener is not None)

    def wait(self, timeout: float) -> list[Result]:
        results = []
        if self.listener is not None:
            timeout = min(timeout, POLL_EVERY)
        for key, _ in self.selector.select(timeout):
            worker: _Worker = key.data
            task = worker.task
            assert task is not None
            try:
                result: Result = pickle.load(worker.stdout)  # noqa: S301 - from our own worker
            except (EOFError, pickle.UnpicklingError, OSError):
                self.selector.unregister(worker.stdout)
                self.workers.remove(worker)
                code = worker.proc.wait()
                why = f"the worker process died (exit code {code})"
                if code < 0:
                    why = f"the worker process was killed by signal {signal.Signals(-code).name}"
                failure = Failure("crash", "WorkerDied", why)
                import time

                result = Result(task.stage, task.key, "failed", time.time(), time.time(), failure=failure)
            self._follow(worker, final=True)
            worker.task = None
            results.append(result)
        for worker in self.workers:
            self._follow(worker)
        self._dispatch()
        return results

    def _follow(self, worker: _Worker, final: bool = False) -> None:
        if self.listener is None:
            return
        for tail in worker.tails:
            tail.poll(self.listener, final)
        if final:
            worker.tails = []

    def close(self) -> None:
        # Every result is published (renamed into the cache) before a worker answers, so idle workers hold
        # nothing: stop them at once instead of waiting for an interpreter full of numerical libraries to
        # finalize (that alone took a second on the examples).
        self.kill()

    def kill(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.proc.kill()
        for worker in self.workers:
            worker.proc.wait()
            for fh in worker.capture:
                fh.close()
            for stream in (worker.stdin, worker.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
        self.workers.clear()
        self.selector.close()
