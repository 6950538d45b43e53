"""A pool of pre-started kernels for sweeps, reruns and scheduled runs.

Starting a kernel (a Python process importing ipykernel, then a handshake) is most of what a trivial papermill run
costs. The pool starts kernels ahead of time in background threads, hands each one to exactly one run through the
papermill engine (:class:`~nb2pipe.jobs.engine.Nb2PipeEngine`, ``kernel_pool=``), and discards it afterwards,
starting a fresh one in its place. Kernels are never reused: ``%reset`` leaves imported modules, monkeypatches,
threads and process-wide state behind, so a reused kernel would leak one run into the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import queue
import threading
from typing import Any


class PoolClosedError(RuntimeError):
    """The pool was closed while a run waited for a kernel."""


class KernelPool:
    """``size`` ready kernels of one spec; :meth:`acquire` takes one (used for one run), :meth:`discard` ends it."""

    def __init__(
        self,
        kernel_name: str = "python3",
        size: int = 2,
        *,
        cwd: str | os.PathLike[str] | None = None,
        start_timeout: float = 60.0,
        total: int | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a kernel pool needs at least one kernel")
        self.kernel_name, self.size, self.start_timeout = kernel_name, size, start_timeout
        #: Start no more than this many kernels over the pool's life (a sweep knows how many runs it has).
        self._budget = total if total is not None else -1
        self.cwd = os.fspath(cwd) if cwd is not None else os.getcwd()
        self._ready: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        #: Kernels handed out or discarded so far (each one exactly once).
        self.used: list[str] = []
        #: The environment each ready kernel was started with, by kernel id (see :meth:`environment_changes`).
        self._environments: dict[str, dict[str, str]] = {}
        self._discarding: list[threading.Thread] = []
        for _ in range(size if total is None else min(size, total)):
            self._spawn()

    def __enter__(self) -> KernelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> None:
        if self._closed.is_set():
            return
        with self._lock:
            if self._budget == 0:
                return
            self._budget -= 1
        thread = threading.Thread(target=self._start_one, name="nb2pipe-kernel-pool", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _start_one(self) -> None:
        from jupyter_client.manager import AsyncKernelManager

        km = AsyncKernelManager(kernel_name=self.kernel_name)
        environment = dict(os.environ)  # what jupyter_client hands the kernel (plus its kernelspec's env)

        async def start() -> None:
            await km.start_kernel(cwd=self.cwd)
            client = km.client()
            client.start_channels()
            try:
                await client.wait_for_ready(timeout=self.start_timeout)
            finally:
                client.stop_channels()

        try:
            asyncio.run(start())
        except Exception as exc:  # a kernel that does not start is handed out as the error it gave
            self._ready.put(exc)
            _shutdown(km)
            return
        if self._closed.is_set():
            _shutdown(km)
            return
        with self._lock:
            self._environments[str(km.kernel_id)] = environment
        self._ready.put(km)

    def acquire(self, kernel_name: str) -> Any | None:
        """A ready kernel manager (waiting for one if needed), or None when ``kernel_name`` is not this pool's."""
        if kernel_name != self.kernel_name:
            return None
        if self._closed.is_set():
            raise PoolClosedError("the kernel pool is closed")
        item = self._ready.get(timeout=self.start_timeout)
        self._spawn()  # start the replacement while this one runs
        if isinstance(item, BaseException):
            raise item
        self.used.append(str(item.kernel_id))
        return item

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every kernel the pool can still start is ready (benchmarks measure a warm pool)."""
        import time

        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while time.monotonic() < deadline:
            with self._lock:
                starting = any(t.is_alive() for t in self._threads)
            if not starting:
                return True
            time.sleep(0.02)
        return False

    def ready(self) -> list[Any]:
        """The kernels ready to be handed out (or the errors of kernels that did not start), without taking them."""
        with self._ready.mutex:
            return list(self._ready.queue)

    def environment_changes(self, km: Any) -> tuple[dict[str, str], list[str]]:
        """How this process's environment differs from the one ``km`` was started with: (set or changed, removed).

        A pooled kernel starts before its run is known; a host that sets variables for the run (the scheduler's
        ``NB2PIPE_SCHEDULE``...) gets them into the kernel through these, as a cold kernel would have inherited them.
        """
        with self._lock:
            started = self._environments.pop(str(km.kernel_id), None)
        if started is None:
            return {}, []
        now = dict(os.environ)
        changed = {k: v for k, v in now.items() if started.get(k) != v}
        return changed, sorted(set(started) - set(now))

    def discard(self, km: Any) -> None:
        """End a kernel that ran its one notebook (in the background: the run does not wait for it)."""
        thread = threading.Thread(target=_shutdown, args=(km,), name="nb2pipe-kernel-discard", daemon=True)
        with self._lock:
            self._discarding = [t for t in self._discarding if t.is_alive()] + [thread]
        thread.start()

    def close(self) -> None:
        """Stop refilling, shut down every kernel not yet handed out, and wait for discarded ones to end."""
        self._closed.set()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=self.start_timeout)
        while True:
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, BaseException):
                _shutdown(item)
        with self._lock:
            discarding = list(self._discarding)
        for thread in discarding:
            thread.join(timeout=10)


#: A pool this process's ``nb2pipe job run`` takes its kernel from (set by a standby job process).
_PROCESS_POOL: KernelPool | None = None


def set_process_pool(pool: KernelPool | None) -> None:
    """Let ``nb2pipe job run`` in this process take its kernel from ``pool`` (see :mod:`nb2pipe.jobs.standby`)."""
    global _PROCESS_POOL
    _PROCESS_POOL = pool


def process_pool() -> KernelPool | None:
    """The pool set by :func:`set_process_pool`, if any."""
    return _PROCESS_POOL


def _shutdown(km: Any) -> None:
    async def stop() -> None:
        with contextlib.suppress(Exception):
            if await km.is_alive():
                await km.shutdown_kernel(now=True)
        with contextlib.suppress(Exception):
            pending = km.cleanup_resources()
            if inspect.isawaitable(pending):
                await pending

    with contextlib.suppress(Exception):
        asyncio.run(stop())
