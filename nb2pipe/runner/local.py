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
from collections import deque
from typing import IO

from .execute import Failure, Result, Task, Warm


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nb2pipe.runner.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout
        self.task: Task | None = None

    def send(self, task: Task) -> None:
        self.task = task
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
            idle.send(self.queue.popleft())

    def wait(self, timeout: float) -> list[Result]:
        results = []
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
            worker.task = None
            results.append(result)
        self._dispatch()
        return results

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
            for stream in (worker.stdin, worker.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
        self.workers.clear()
        self.selector.close()
