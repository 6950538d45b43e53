"""The papermill engine of tracked jobs: every ending told truthfully, a kernel from a pool when one is given.

papermill's own engine (2.x) marks a timed-out or interrupted notebook as if every cell had completed: the timeout
escapes its cell loop, ``cell_complete`` marks the running cell "completed" and ``notebook_complete`` marks every
pending cell "completed" too. This engine runs the cell loop itself: the cell that was running when the run failed,
timed out, was cancelled or lost its kernel is marked failed, the cells after it stay pending, and the
:class:`Ending` says which of those it was. It is registered as papermill engine ``nb2pipe`` (entry point group
``papermill.engine``), so ``papermill -e nb2pipe in.ipynb out.ipynb`` uses it too.

papermill imports its entry points while ``papermill.engines`` itself is being imported, so this module must not
import papermill at import time: :class:`Nb2PipeEngine` implements papermill's engine interface (the classmethods
``execute_notebook``, ``nb_kernel_name``, ``nb_language``) and imports papermill inside them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import Nb2PipeError

if TYPE_CHECKING:
    from .pool import KernelPool

#: Seconds between interrupting the kernel (SIGINT) on cancel and killing its process group.
KILL_GRACE = 5.0


class ExecutionEndedError(Nb2PipeError):
    """Raised to papermill (``papermill --engine nb2pipe``) for an ending that left no error output."""


@dataclass(frozen=True)
class Ending:
    """How an execution ended: one of the run store's final statuses, with the cause."""

    #: ``succeeded``, ``failed``, ``timed-out`` or ``cancelled``.
    status: str
    #: e.g. ``kernel died``, ``never started: no such kernel 'r'``, ``cell timeout 5 s``.
    detail: str | None = None
    #: 0-based index of the cell that was running, in the executed notebook.
    cell_index: int | None = None
    cell_id: str | None = None
    error_name: str | None = None
    error_message: str | None = None


class RunControl:
    """What the executing thread, the heartbeat thread and signal handlers share about one execution."""

    def __init__(
        self,
        *,
        timeout: float | None = None,
        cell_timeout: float | None = None,
        kill_grace: float = KILL_GRACE,
        on_kernel: Callable[[int | None], None] | None = None,
    ) -> None:
        #: Whole-run limit in seconds (kernel start included) and the per-cell limit.
        self.timeout, self.cell_timeout, self.kill_grace = timeout, cell_timeout, kill_grace
        self.deadline = time.monotonic() + timeout if timeout else None
        #: Called with the kernel's pid once it runs (to record it in the store).
        self.on_kernel = on_kernel
        #: Set by :meth:`cancel`: why the run is being cancelled.
        self.cancel_detail: str | None = None
        self.kernel_pid: int | None = None
        self.ending: Ending | None = None
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self.cancel_detail is not None

    def set_kernel(self, pid: int | None) -> None:
        with self._lock:
            self.kernel_pid = pid
            cancelled = self.cancelled
        if self.on_kernel is not None:
            self.on_kernel(pid)
        if cancelled:  # cancelled while the kernel was starting
            self.kill_kernel()

    def cancel(self, detail: str) -> None:
        """Cancel: interrupt the running cell, and kill the kernel if it does not stop within ``kill_grace``.

        Safe to call from a signal handler or another thread; a second call kills the kernel at once.
        """
        with self._lock:
            first = self.cancel_detail is None
            if first:
                self.cancel_detail = detail
            pid = self.kernel_pid
        if pid is None:
            return
        if not first:
            self.kill_kernel()
            return
        _signal_group(pid, signal.SIGINT)
        timer = threading.Timer(self.kill_grace, self.kill_kernel)
        timer.daemon = True
        timer.start()

    def kill_kernel(self) -> None:
        """SIGKILL the kernel's whole process group (it runs in its own session), children included."""
        pid = self.kernel_pid
        if pid is not None:
            _signal_group(pid, signal.SIGKILL)

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.01)

    def cell_limit(self, cell: Any = None) -> float | None:
        """nbclient's ``timeout_func``: the per-cell limit, shortened to what is left of the whole-run limit."""
        limits = [x for x in (self.cell_timeout, self.remaining()) if x is not None]
        return min(limits) if limits else None


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # jupyter_client starts kernels in a new session: pgid == pid
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _kernel_pid(km: Any) -> int | None:
    provisioner = getattr(km, "provisioner", None)
    process = getattr(provisioner, "process", None)
    pid = getattr(process, "pid", None) or getattr(provisioner, "pid", None)
    return int(pid) if pid else None


async def _wait_until_ready(kc: Any, timeout: float) -> None:
    """Until the kernel answers kernel_info on shell and IOPub carries that request's idle status."""
    from queue import Empty

    from nbclient.util import ensure_async

    deadline = time.monotonic() + timeout
    sent: set[str] = set()  # a slow kernel answers earlier requests late: any of ours will do
    while time.monotonic() < deadline:
        sent.add(kc.kernel_info())
        try:
            reply = await ensure_async(kc.shell_channel.get_msg(timeout=1))
        except Empty:
            if not await ensure_async(kc.is_alive()):
                raise RuntimeError("the kernel died before replying to kernel_info") from None
            continue
        if reply["parent_header"].get("msg_id") not in sent:
            continue
        try:
            while True:  # IOPub subscriptions connect asynchronously: no idle seen means "not yet", ask again
                msg = await ensure_async(kc.iopub_channel.get_msg(timeout=0.2))
                if (
                    msg["parent_header"].get("msg_id") in sent
                    and msg["msg_type"] == "status"
                    and msg["content"].get("execution_state") == "idle"
                ):
                    kc._handle_kernel_info_reply(reply)
                    return
        except Empty:
            continue
    raise RuntimeError(f"the kernel did not answer within {timeout:g} s")


class _TruthfulManager:
    """Mixin for papermill's execution manager.

    Saves by write-then-rename (a reader never sees half a notebook, and ext4 does not flush on every save as it
    does for a truncate-and-rewrite), and never marks a cell that did not run as completed: papermill's
    ``notebook_complete`` turns every pending cell into "completed", which is false after a kernel that did not
    start or a cancel before the first cell. Our cell loop completes every cell it visits itself.
    """

    nb: Any
    output_path: str | None
    start_time: Any
    end_time: Any

    def notebook_complete(self, **kwargs: Any) -> None:
        nb = kwargs.get("nb")
        if nb is not None:
            self.nb = nb
        self.end_time = self.now()  # type: ignore[attr-defined]
        meta = self.nb.metadata.papermill
        meta["end_time"] = self.end_time.isoformat()
        if meta.get("start_time") and self.start_time is not None:
            meta["duration"] = (self.end_time - self.start_time).total_seconds()
        self.cleanup_pbar()  # type: ignore[attr-defined]
        self.save()

    def save(self, **kwargs: Any) -> None:
        nb = kwargs.get("nb")
        if nb is not None:
            self.nb = nb
        if self.output_path:
            import nbformat

            tmp = f"{self.output_path}.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(nbformat.writes(self.nb))  # type: ignore[no-untyped-call]
                os.replace(tmp, self.output_path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        self.last_save_time = self.now()  # type: ignore[attr-defined]


_CLIENT: type | None = None
_MANAGER: type | None = None


def _manager_class() -> type:
    global _MANAGER
    if _MANAGER is None:
        from papermill.engines import NotebookExecutionManager

        _MANAGER = type("TruthfulExecutionManager", (_TruthfulManager, NotebookExecutionManager), {})
    return _MANAGER


def _client_class() -> type:
    """papermill's notebook client with a truthful cell loop (built on first use: papermill imports are heavy)."""
    global _CLIENT
    if _CLIENT is not None:
        return _CLIENT
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from nbclient.util import ensure_async, run_hook, run_sync
    from papermill.clientwrap import PapermillNotebookClient

    class TruthfulClient(PapermillNotebookClient):  # type: ignore[misc]
        kc: Any
        km: Any

        def __init__(self, nb_man: Any, control: RunControl, setup_code: str | None, **kw: Any) -> None:
            super().__init__(nb_man, timeout_func=control.cell_limit, **kw)
            self.control = control
            self.setup_code = setup_code

        async def async_start_new_kernel_client(self) -> Any:
            # jupyter_client's wait_for_ready ends by draining IOPub until it has been silent for 0.2 s, a fixed
            # cost per run; waiting for the idle status of our own kernel_info request proves the same thing.
            self.kc = self.km.client()
            await ensure_async(self.kc.start_channels())
            try:
                await _wait_until_ready(self.kc, self.startup_timeout)
            except Exception:
                if self.owns_km:
                    await self._async_cleanup_kernel()
                raise
            self.kc.allow_stdin = False
            await run_hook(self.on_notebook_start, notebook=self.nb)
            return self.kc

        start_new_kernel_client = run_sync(async_start_new_kernel_client)

        def execute(self, **kwargs: Any) -> Any:
            self.reset_execution_trackers()
            try:
                with self.setup_kernel(**kwargs):
                    self.control.set_kernel(_kernel_pid(self.km))
                    if self.setup_code and not self.control.cancelled:
                        self.wait_for_reply(self.kc.execute(self.setup_code, silent=True, store_history=False))
                    self.papermill_execute_cells()
                    if self.control.ending is None:
                        info = self.wait_for_reply(self.kc.kernel_info())
                        self.nb.metadata["language_info"] = info["content"]["language_info"]
                        self.set_widgets_metadata()
                        self.control.ending = Ending("succeeded")
                    else:
                        self.control.kill_kernel()  # never wait on a kernel that is stuck, timed out or cancelled
            finally:
                if not self.owns_km and self.kc is not None:  # a pooled kernel: its owner discards it
                    self.kc.stop_channels()
                    self.kc = None
            return self.nb

        def papermill_execute_cells(self) -> None:
            control = self.control
            for index, cell in enumerate(self.nb.cells):
                if control.cancelled:
                    control.ending = Ending("cancelled", control.cancel_detail)
                    return
                ending: Ending | None = None
                try:
                    self.nb_man.cell_start(cell, index)
                    self.execute_cell(cell, index)
                except CellExecutionError as ex:
                    if control.cancelled:
                        ending = Ending("cancelled", control.cancel_detail)
                    else:
                        ending = Ending("failed", None, error_name=ex.ename, error_message=ex.evalue)
                except CellTimeoutError:
                    if control.deadline is not None and time.monotonic() >= control.deadline - 0.05:
                        ending = Ending("timed-out", f"the run exceeded its timeout of {control.timeout:g} s")
                    else:
                        ending = Ending("timed-out", f"the cell exceeded its timeout of {control.cell_timeout:g} s")
                except DeadKernelError:
                    if control.cancelled:
                        ending = Ending("cancelled", control.cancel_detail)
                    else:
                        ending = Ending("failed", "kernel died", error_name="DeadKernelError", error_message="")
                finally:
                    if ending is not None:
                        self.nb_man.cell_exception(self.nb.cells[index], cell_index=index)
                        control.ending = Ending(
                            ending.status,
                            ending.detail,
                            index,
                            self.nb.cells[index].get("id"),
                            ending.error_name,
                            ending.error_message,
                        )
                    self.nb_man.cell_complete(self.nb.cells[index], cell_index=index)
                if ending is not None:
                    return

    _CLIENT = TruthfulClient
    return TruthfulClient


def _environment_code(changed: dict[str, str], removed: list[str]) -> str:
    """Python that brings a pooled kernel's environment up to date (as a cold kernel would have inherited it)."""
    if not changed and not removed:
        return ""
    code = f"import os as _nb2pipe_os; _nb2pipe_os.environ.update({changed!r})\n"
    code += "".join(f"_nb2pipe_os.environ.pop({name!r}, None)\n" for name in removed)
    return code + "del _nb2pipe_os\n"


class Nb2PipeEngine:
    """papermill engine ``nb2pipe``: truthful endings, whole-run and per-cell timeouts, cancel, kernel pools."""

    @classmethod
    def execute_notebook(
        cls,
        nb: Any,
        kernel_name: str | None,
        output_path: str | None = None,
        progress_bar: bool = False,
        log_output: bool = False,
        autosave_cell_every: int = 30,
        *,
        control: RunControl | None = None,
        kernel_pool: KernelPool | None = None,
        setup_code: str | None = None,
        start_timeout: float = 60,
        execution_timeout: float | None = None,
        cwd: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Execute ``nb`` (in place) and return it; the ending is left in ``control.ending``."""
        standalone = control is None  # run by papermill itself (papermill --engine nb2pipe), not by a job
        control = control or RunControl(cell_timeout=execution_timeout)
        nb_man = _manager_class()(
            nb,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
        )
        client_kwargs: dict[str, Any] = {
            "kernel_name": kernel_name or "",
            "startup_timeout": int(min(start_timeout, control.remaining() or start_timeout)) or 1,
            "log_output": log_output,
            "stdout_file": kwargs.get("stdout_file"),
            "stderr_file": kwargs.get("stderr_file"),
        }
        pooled = kernel_pool.acquire(kernel_name or "") if kernel_pool is not None else None
        if pooled is not None:
            assert kernel_pool is not None
            client_kwargs["km"] = pooled
            setup_code = _environment_code(*kernel_pool.environment_changes(pooled)) + (setup_code or "")
        nb_man.notebook_start()
        try:
            client = _client_class()(nb_man, control, setup_code, **client_kwargs)
            start_kwargs = {"cwd": cwd} if cwd and pooled is None else {}
            client.execute(**start_kwargs)
        finally:
            if pooled is not None:
                assert kernel_pool is not None
                kernel_pool.discard(pooled)
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        if papermill_exception := any(
            c.metadata.get("papermill", {}).get("status") == "failed" for c in nb.cells
        ):  # keep papermill's notebook-level flag in step with the cells
            nb.metadata.papermill["exception"] = papermill_exception
        ending = control.ending
        if standalone and ending is not None and ending.status != "succeeded" and ending.error_name is None:
            # papermill only notices errors that left an error output; tell it about the rest, after saving.
            nb_man.save()
            raise ExecutionEndedError(f"{ending.status}: {ending.detail}", cell=(ending.cell_index or 0) + 1)
        return nb

    @classmethod
    def nb_kernel_name(cls, nb: Any, name: str | None = None) -> str:
        from papermill.utils import nb_kernel_name

        return str(nb_kernel_name(nb, name))

    @classmethod
    def nb_language(cls, nb: Any, language: str | None = None) -> str:
        from papermill.utils import nb_language

        return str(nb_language(nb, language))


def register() -> None:
    """Register the engine with papermill in this process (the entry point does the same for other processes)."""
    from papermill.engines import papermill_engines

    papermill_engines.register("nb2pipe", Nb2PipeEngine)
