"""One tracked run, end to end: check, record, execute with papermill, and record how it ended.

The order matters for "no half-written record": everything a user can get wrong (a missing or corrupt notebook,
an unknown parameter, a value of the wrong type, an unwritable run folder) is refused before the run is recorded.
From then on, every way out (success, failure, timeout, cancel, a dead kernel, an unknown kernel, an error of our own)
goes through :func:`_conclude`, which writes the executed notebook with the ending in its metadata and then records
the same ending, metrics and artifacts in one transaction. If another process recorded an ending first (``job cancel``
after killing a stuck run, the orphan reaper), the notebook is rewritten to agree with the store.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..errors import Nb2PipeError
from ..runstore import ACTIVE_STATUSES, RunStore, StoreError, new_run_id, scheduled_run, to_json
from .engine import Ending, RunControl
from .record import OUTPUT_ENV, RUN_ENV, metrics_from_notebook

if TYPE_CHECKING:
    from .pool import KernelPool

#: Exit codes of ``nb2pipe job run`` by ending (2, bad input, also covers a run that never started).
EXIT_CODES: Final = {"succeeded": 0, "failed": 1, "timed-out": 124, "cancelled": 130}
HEARTBEAT_ENV: Final = "NB2PIPE_HEARTBEAT_SECONDS"
#: When set, every run is also logged to MLflow at this tracking URI (as ``--mlflow URI``).
MLFLOW_ENV: Final = "NB2PIPE_MLFLOW"
HEARTBEAT_SECONDS: Final = 5.0
NEVER_STARTED: Final = "never started"
INTERRUPTED: Final = "cancelled: KeyboardInterrupt"


#: Runs executing in this process, so a sweep's Ctrl-C can cancel them all.
_ACTIVE: dict[str, RunControl] = {}
_ACTIVE_LOCK = threading.Lock()


def cancel_local(detail: str) -> None:
    """Cancel every run executing in this process."""
    with _ACTIVE_LOCK:
        controls = list(_ACTIVE.values())
    for control in controls:
        control.cancel(detail)


class JobError(Nb2PipeError):
    """A job cannot be set up (unwritable run folder, non-Python kernel given parameters, unknown kernel)."""


@dataclass(frozen=True)
class JobResult:
    """A finished tracked run, as recorded."""

    id: str
    status: str
    detail: str | None
    #: The executed notebook in the run folder.
    notebook: Path
    run_dir: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    #: ``{"cell": number, "cell_id", "name", "message"}`` when a cell failed, timed out or was cancelled.
    error: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        if self.detail and self.detail.startswith(NEVER_STARTED):
            return 2
        return EXIT_CODES.get(self.status, 1)


def heartbeat_seconds() -> float:
    try:
        return float(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_SECONDS))
    except ValueError:
        return HEARTBEAT_SECONDS


class _Heartbeat(threading.Thread):
    """Keeps the run's heartbeat fresh and turns a cancel request recorded in the store into a cancel."""

    def __init__(self, home: Path, run_id: str, control: RunControl) -> None:
        super().__init__(name=f"nb2pipe-heartbeat-{run_id}", daemon=True)
        self.home, self.run_id, self.control = home, run_id, control
        self.stopped = threading.Event()

    def run(self) -> None:
        interval = heartbeat_seconds()
        with RunStore(self.home) as store:
            while not self.stopped.wait(interval):
                with contextlib.suppress(StoreError):
                    store.heartbeat(self.run_id)
                    rows = store.query("SELECT cancel_requested FROM runs WHERE id = ?", (self.run_id,))
                    if rows and rows[0][0] and not self.control.cancelled:
                        self.control.cancel("cancelled: requested with 'nb2pipe job cancel'")


@contextlib.contextmanager
def on_stop_signals(callback: Callable[[str], None]) -> Iterator[None]:
    """While the block runs, Ctrl-C or SIGTERM call ``callback("cancelled: SIGINT")`` instead of raising; the
    previous handlers come back afterwards. Signal handlers exist only in the main thread: elsewhere, no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        callback(f"cancelled: {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _cancel_on_signals(control: RunControl, enabled: bool) -> Iterator[None]:
    """Ctrl-C or SIGTERM cancel the run cleanly (main thread only); a second one kills the kernel at once."""
    if not enabled:
        yield
        return
    with on_stop_signals(control.cancel):
        yield


def _inject(nb: Any, parameters: Mapping[str, Any]) -> int | None:
    """Add papermill's ``injected-parameters`` cell after the parameters cell, as literals; return its index."""
    from nbformat import v4

    from ..parameters import python_literal

    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    if not parameters:
        return None
    lines = ["# Parameters (nb2pipe)"] + [f"{name} = {python_literal(value)}" for name, value in parameters.items()]
    cell = v4.new_code_cell("\n".join(lines), metadata={"tags": ["injected-parameters"]})  # type: ignore[no-untyped-call]
    where = next(
        (i + 1 for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])),
        0,
    )
    nb.cells.insert(where, cell)
    return where


def _check_kernel(name: str) -> str | None:
    """None when the kernel exists, else why not (the run is then recorded as never started)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(name)
    except NoSuchKernel:
        available = ", ".join(sorted(manager.find_kernel_specs())) or "none"
        return f"{NEVER_STARTED}: no such kernel {name!r} (available: {available})"
    return None


def _artifacts(output_dir: Path, run_dir: Path, since: float) -> list[tuple[str, str, int]]:
    """Files in the output folder written during the run: (path, sha256, size)."""
    from .provenance import file_sha256

    found: list[tuple[str, str, int]] = []
    if not output_dir.is_dir():
        return found
    for path in sorted(p for p in output_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        if stat.st_mtime < since - 1.0:
            continue
        try:
            shown = str(path.relative_to(run_dir))
        except ValueError:
            shown = str(path)
        found.append((shown, file_sha256(path), stat.st_size))
    return found


def _error_info(ending: Ending, nb: Any, injected_at: int | None) -> dict[str, Any] | None:
    if ending.cell_index is None:
        return None
    index = ending.cell_index
    if injected_at is not None and index == injected_at:
        number = None  # the injected parameters cell
    else:
        number = index + 1 - (1 if injected_at is not None and index > injected_at else 0)
    return {"cell": number, "cell_id": ending.cell_id, "name": ending.error_name, "message": ending.error_message}


def write_ending(nb: Any, path: Path, run_id: str, status: str, detail: str | None, error: Any) -> None:
    """Write the executed notebook with the run's ending in ``metadata.nb2pipe`` (atomically)."""
    import nbformat

    from ..output import write_atomic

    nb.metadata["nb2pipe"] = {"run_id": run_id, "status": status, "status_detail": detail, "error": error}
    papermill = nb.metadata.setdefault("papermill", {})
    if status != "succeeded":
        papermill["exception"] = True
        for cell in nb.cells:  # a cell left "running" by a killed process did not complete
            meta = cell.get("metadata", {}).get("papermill")
            if meta and meta.get("status") == "running":
                meta["status"] = "failed"
    write_atomic(path, nbformat.writes(nb).encode("utf-8"))  # type: ignore[no-untyped-call]


def _conclude(
    store: RunStore,
    run_id: str,
    nb: Any,
    out_path: Path,
    ending: Ending,
    error: dict[str, Any] | None,
    artifacts: list[tuple[str, str, int]],
) -> tuple[str, str | None]:
    """Write the notebook, then record ending + metrics + artifacts in one transaction; return the recorded ending."""
    status, detail = ending.status, ending.detail
    try:
        write_ending(nb, out_path, run_id, status, detail, error)
    except OSError as exc:
        status, detail = "failed", f"cannot write the executed notebook {out_path}: {exc.strerror or exc}"
    metrics = metrics_from_notebook(nb)
    now = time.time()
    with store.transaction() as db:
        db.executemany(
            "INSERT INTO metrics VALUES (?, ?, ?, ?) ON CONFLICT (run_id, name) DO UPDATE "
            "SET value = excluded.value, recorded_at = excluded.recorded_at",
            [(run_id, name, to_json(value), now) for name, value in metrics.items()],
        )
        db.executemany("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)", [(run_id, *a) for a in artifacts])
        won = db.execute(
            "UPDATE runs SET status = ?, status_detail = ?, ended_at = ?, error_cell = ?, error_cell_id = ?, "
            "error_name = ?, error_message = ? WHERE id = ? AND status IN ('queued', 'running')",
            (
                status,
                detail,
                now,
                (error or {}).get("cell"),
                (error or {}).get("cell_id"),
                (error or {}).get("name"),
                (error or {}).get("message"),
                run_id,
            ),
        ).rowcount
    if not won:  # someone recorded an ending first: the notebook must say the same
        row = store.query("SELECT status, status_detail FROM runs WHERE id = ?", (run_id,))[0]
        status, detail = row["status"], row["status_detail"]
        with contextlib.suppress(OSError):
            write_ending(nb, out_path, run_id, status, detail, error)
    return status, detail


def run(
    notebook: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    pairs: Iterable[tuple[str, str]] = (),
    files: Iterable[str | os.PathLike[str]] = (),
    kernel: str | None = None,
    timeout: float | None = None,
    cell_timeout: float | None = None,
    home: str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    html: bool = False,
    log_output: bool = False,
    pool: KernelPool | None = None,
    rerun_of: str | None = None,
    executor: str = "local",
    worker: str | None = None,
    mlflow: str | None = None,
    handle_signals: bool = True,
    queued_run: str | None = None,
) -> JobResult:
    """Execute ``notebook`` with papermill as a tracked run and return how it ended (never raises for a bad run).

    Raises :class:`~nb2pipe.errors.Nb2PipeError` before anything is recorded when the notebook, the parameters or
    the run folder are wrong. ``queued_run`` starts a run that someone (a scheduler) recorded earlier as ``queued``
    instead of creating one; if it was cancelled meanwhile, it is not started.
    """
    import nbformat

    from ..notebook import read_notebook
    from ..parameters import notebook_parameters, resolve
    from .history import reap
    from .provenance import current_environment, git_state

    source = Path(notebook)
    if mlflow is None:
        mlflow = os.environ.get(MLFLOW_ENV) or None  # configured once, e.g. in a profile or a CI job
    checked = read_notebook(source)  # one-line errors for a missing or corrupt notebook
    declared = notebook_parameters(source)
    typed = resolve(declared, list(pairs), files, target=str(source), values=parameters)
    nb = nbformat.reads(checked.raw.decode("utf-8"), as_version=4)  # type: ignore[no-untyped-call]
    kernelspec = nb.metadata.get("kernelspec", {})
    kernel_name = kernel or kernelspec.get("name") or "python3"
    language = (nb.metadata.get("language_info", {}) or {}).get("name") or kernelspec.get("language") or "python"
    if typed and language.lower() != "python":
        raise JobError(f"{source}: parameters are injected as Python literals, but the notebook's kernel is {language}")

    store = RunStore(home)
    try:
        reap(store)
        scheduled = scheduled_run()
        if (
            queued_run is None
            and scheduled is not None
            and store.query("SELECT 1 FROM runs WHERE id = ?", (scheduled[0],))
        ):
            queued_run = scheduled[0]  # the scheduler recorded it as queued
        queued = _queued(store, queued_run) if queued_run is not None else None
        run_id = queued_run or (scheduled[0] if scheduled else new_run_id())
        run_dir = Path(runs_dir) if runs_dir is not None else store.home / "runs"
        run_dir = (run_dir / run_id).absolute()
        outputs = Path(output_dir).absolute() if output_dir is not None else run_dir / "outputs"
        try:
            run_dir.mkdir(parents=True)
            probe = run_dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise JobError(f"cannot create the run folder {run_dir}: {exc.strerror or exc}") from None
        out_path = run_dir / source.name
        commit, dirty = git_state(source.absolute().parent)
        try:
            env_id = store.ensure_environment(current_environment(store.home))
            started = time.time()
            fields = {
                "target_hash": checked_hash(checked.raw),
                "run_dir": str(run_dir),
                "started_at": started,
                "heartbeat_at": started,
                "pid": os.getpid(),
                "pgid": os.getpgrp(),
                "git_commit": commit,
                "git_dirty": None if dirty is None else int(dirty),
                "environment_id": env_id,
                "kernel": kernel_name,
                "executor": executor,
                "worker": worker,
                "rerun_of": rerun_of,
                "output_dir": str(outputs),
                **(scheduled[1] if scheduled else {}),
            }
            if queued is None:
                store.create_run(
                    "job", str(source.absolute()), parameters=typed, status="running", run_id=run_id, **fields
                )
            elif not _start_queued(store, run_id, typed, fields):
                run_dir.rmdir()
                detail = "cancelled before it started"
                store.finish_run(run_id, "cancelled", status_detail=detail)
                row = store.get_run(run_id)
                return JobResult(run_id, row["status"], row["status_detail"], out_path, run_dir, typed)
        except BaseException:
            with contextlib.suppress(OSError):
                run_dir.rmdir()
            raise
        return _execute(
            store,
            run_id,
            nb,
            typed,
            source=source,
            out_path=out_path,
            outputs=outputs,
            kernel_name=kernel_name,
            timeout=timeout,
            cell_timeout=cell_timeout,
            cwd=Path(cwd).absolute() if cwd is not None else Path.cwd(),
            html=html,
            log_output=log_output,
            pool=pool,
            mlflow=mlflow,
            handle_signals=handle_signals,
            started=started,
        )
    finally:
        store.close()


def _queued(store: RunStore, run_id: str) -> dict[str, Any]:
    rows = store.query("SELECT id, status FROM runs WHERE id = ? AND kind = 'job'", (run_id,))
    if not rows:
        raise JobError(f"no queued job run {run_id!r} in {store.path}")
    if rows[0]["status"] not in ("queued", "cancelled"):
        raise JobError(f"run {run_id} is {rows[0]['status']}, not queued: it cannot be started again")
    return dict(rows[0])


def _start_queued(store: RunStore, run_id: str, typed: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """Move a queued run to running with its provenance, unless a cancel request got there first."""
    assignments = ", ".join(f"{k} = :{k}" for k in fields)
    with store.transaction() as db:
        started = db.execute(
            f"UPDATE runs SET status = 'running', parameters = :_parameters, {assignments} "  # noqa: S608 - our columns
            "WHERE id = :_id AND status = 'queued' AND cancel_requested = 0",
            {**fields, "_id": run_id, "_parameters": to_json(dict(typed))},
        ).rowcount
        if started:
            db.execute("DELETE FROM run_parameters WHERE run_id = ?", (run_id,))
            db.executemany(
                "INSERT INTO run_parameters VALUES (?, ?, ?)",
                [(run_id, name, to_json(value)) for name, value in typed.items()],
            )
    return bool(started)


def checked_hash(raw: bytes) -> str:
    import hashlib

    return hashlib.sha256(raw).hexdigest()


def _execute(
    store: RunStore,
    run_id: str,
    nb: Any,
    typed: dict[str, Any],
    *,
    source: Path,
    out_path: Path,
    outputs: Path,
    kernel_name: str,
    timeout: float | None,
    cell_timeout: float | None,
    cwd: Path,
    html: bool,
    log_output: bool,
    pool: KernelPool | None,
    mlflow: str | None,
    handle_signals: bool,
    started: float,
) -> JobResult:
    injected_at = _inject(nb, typed)
    papermill = nb.metadata.setdefault("papermill", {})
    papermill.update(
        {"parameters": typed, "input_path": str(source), "output_path": str(out_path), "environment_variables": {}}
    )
    ending: Ending
    missing = _check_kernel(kernel_name) if pool is None or pool.kernel_name != kernel_name else None
    if missing is not None:
        ending = Ending("failed", missing)
    else:
        ending = _run_engine(
            store,
            run_id,
            nb,
            out_path,
            outputs,
            kernel_name,
            timeout,
            cell_timeout,
            cwd,
            log_output,
            pool,
            handle_signals,
        )
    error = _error_info(ending, nb, injected_at)
    artifacts = _artifacts(outputs, out_path.parent, started)
    status, detail = _conclude(store, run_id, nb, out_path, ending, error, artifacts)
    if ending.detail == INTERRUPTED:
        raise KeyboardInterrupt
    if html:
        _render_html(out_path)
    if mlflow is not None:
        from .mlflow_sink import log_run

        log_run(store, run_id, mlflow)
    run = store.get_run(run_id)
    return JobResult(run_id, status, detail, out_path, out_path.parent, typed, run["metrics"], error)


def _run_engine(
    store: RunStore,
    run_id: str,
    nb: Any,
    out_path: Path,
    outputs: Path,
    kernel_name: str,
    timeout: float | None,
    cell_timeout: float | None,
    cwd: Path,
    log_output: bool,
    pool: KernelPool | None,
    handle_signals: bool,
) -> Ending:
    from papermill.engines import papermill_engines

    from .engine import register

    register()

    def on_kernel(pid: int | None) -> None:
        with contextlib.suppress(StoreError):
            store.update_run(run_id, kernel_pid=pid)

    control = RunControl(timeout=timeout, cell_timeout=cell_timeout, on_kernel=on_kernel)
    env = {RUN_ENV: run_id, OUTPUT_ENV: str(outputs), "NB2PIPE_HOME": str(store.home.absolute())}
    setup = f"import os as _nb2pipe_os; _nb2pipe_os.environ.update({env!r}); _nb2pipe_os.chdir({str(cwd)!r})\n"
    # The kernel keeps the fire time (a notebook may use it) but not the schedule's name: a command started inside
    # the notebook (`nb2pipe job run other.ipynb`) must not adopt this run's id as if it were the scheduled run.
    setup += "_nb2pipe_os.environ.pop('NB2PIPE_SCHEDULE', None)\ndel _nb2pipe_os"
    heartbeat = _Heartbeat(store.home, run_id, control)
    heartbeat.start()
    with _ACTIVE_LOCK:
        _ACTIVE[run_id] = control
    try:
        with _cancel_on_signals(control, handle_signals):
            papermill_engines.execute_notebook_with_engine(
                "nb2pipe",
                nb,
                kernel_name,
                output_path=str(out_path),
                progress_bar=False,
                log_output=log_output,
                stdout_file=sys.stdout if log_output else None,
                stderr_file=sys.stderr if log_output else None,
                control=control,
                kernel_pool=pool,
                setup_code=setup,
                cwd=str(cwd),
            )
    except Exception as exc:  # the kernel did not start, or something of ours broke: still a truthful ending
        control.kill_kernel()
        if control.cancelled:
            return Ending("cancelled", control.cancel_detail)
        if control.kernel_pid is None:
            return Ending("failed", f"{NEVER_STARTED}: the kernel did not start: {type(exc).__name__}: {exc}")
        return control.ending or Ending("failed", f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:  # Ctrl-C where we do not handle signals (the API): record it, then let it go on
        control.kill_kernel()
        return Ending("cancelled", INTERRUPTED)
    finally:
        heartbeat.stopped.set()
        with _ACTIVE_LOCK:
            _ACTIVE.pop(run_id, None)
    return control.ending or Ending("cancelled", control.cancel_detail)


def _render_html(path: Path) -> None:
    """The executed notebook as HTML next to it; a rendering problem is a warning, the run's ending stands."""
    try:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_filename(str(path))  # type: ignore[no-untyped-call]
        path.with_suffix(".html").write_text(body, encoding="utf-8")
    except Exception as exc:
        print(f"nb2pipe: warning: could not render {path} as HTML: {type(exc).__name__}: {exc}", file=sys.stderr)


def is_active(status: str) -> bool:
    return status in ACTIVE_STATUSES
