"""Run one stage where an executor put it: load its inputs, restore its state, call it, publish its result.

This module is what runs inside a worker (a local worker process, a Dask worker), so it imports little. A
:class:`Task` carries everything the stage needs as plain data, including where its inputs live in the cache; the
worker writes the stage's outputs straight into the cache (write, then rename) and sends back a small
:class:`Result`. An exception in the user's code is a value here (``Result.failure``), located in the notebook:
the stage module marks every cell with a ``# --- cell <id> ---`` line, so a traceback line maps to a cell and a line
within it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import shutil
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..gcpause import collector_paused
from . import serialize, state
from .cache import META, STATE, VALUES, Cache, file_hash


@dataclass(frozen=True)
class Task:
    """One stage to run, as plain picklable data."""

    run_id: str
    stage: str
    module: str
    function: str
    #: Directory to put on ``sys.path`` so the pipeline package imports.
    package_root: str
    #: Working directory of the stage (the notebook's folder for a notebook target).
    workdir: str
    key: str
    home: str
    #: Input name -> cache entry directory of the producing stage.
    inputs: dict[str, str]
    params: dict[str, Any]
    #: State key -> cache entry directory of the stage that last changed it.
    state_in: dict[str, str]
    state_out: list[str]
    outputs: list[str]
    writes: list[str]
    #: Input name -> its content hash (an input handed on unchanged is written as a reference to it).
    input_hashes: dict[str, str]
    #: Output name -> stages that read it (named in serialization errors).
    consumers: dict[str, list[str]]
    #: Where the stage's stdout and stderr are kept with the run.
    log_dir: str
    #: Capture output at the file-descriptor level (child processes, C code); off in threaded workers.
    capture_fd: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """Why a stage failed, located in the notebook."""

    #: ``exception`` (the user's code raised), ``serialize`` (an output cannot be stored), ``input`` (cache).
    kind: str
    ename: str
    evalue: str
    cell_id: str | None = None
    #: 1-based line within the cell.
    line: int | None = None
    source: str | None = None
    traceback: str = ""
    variable: str | None = None
    consumers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    """What a worker sends back."""

    stage: str
    key: str
    status: str  # 'ran' or 'failed'
    started_at: float
    ended_at: float
    outputs: dict[str, str] = field(default_factory=dict)
    failure: Failure | None = None
    stdout: str = ""
    stderr: str = ""
    worker: str = ""


_INITIAL_ENV: dict[str, str] = dict(os.environ)
#: How much of a stage's output travels back with its result (all of it stays in the run's log files).
_KEEP = 200_000


def _load_inputs(task: Task, cache: Cache) -> tuple[dict[str, Any], serialize.Loader]:
    entries = {Path(entry).name: Path(entry) for entry in task.inputs.values()}

    def locate(key: str) -> Path | None:
        path = cache.entry_path(key)
        return path if path.is_dir() else None

    # One loader for all producers: each bundle is read once, names that were one object there stay one object
    # here, and a value one producer handed on from another, or pulled out of another's value, is that other
    # producer's object (or, when the handing stage changed it in place, its newer copy: those bundles are read
    # first). The stage's own bundle is written with the same loader, to refer back to these objects.
    loader = serialize.Loader(entries, locate)
    first = sorted(entries, key=lambda key: not serialize.supersedes(entries[key] / VALUES))
    for key in first:
        loader.load(entries[key] / VALUES, key)
    return {name: loader.objects[(Path(entry).name, name)] for name, entry in task.inputs.items()}, loader


def _load_state(task: Task) -> dict[str, Any]:
    snapshot: dict[str, Any] = {}
    for key, entry in sorted(task.state_in.items()):
        import pickle

        saved = pickle.loads((Path(entry) / STATE).read_bytes())  # noqa: S301 - our own cache
        if key in saved:
            snapshot[key] = saved[key]
    return snapshot


@dataclass
class _Output:
    """What a stage printed, filled in when its capture ends."""

    stdout: str = ""
    stderr: str = ""


_LOG_DIRS: set[str] = set()
#: The two files (stdout, stderr) a worker's stages write to; the local executor passes its own, to follow them.
_CAPTURE: list[Any] = []


def use_capture_files(stdout_fd: int, stderr_fd: int) -> None:
    """Capture stages' output into these open files (shared with the orchestrator, which reads them live)."""
    _CAPTURE[:] = [os.fdopen(stdout_fd, "r+b", buffering=0), os.fdopen(stderr_fd, "r+b", buffering=0)]


def _capture_files() -> list[Any]:
    if not _CAPTURE:  # a worker started without them: private scratch files
        import tempfile

        _CAPTURE.extend([tempfile.TemporaryFile(buffering=0), tempfile.TemporaryFile(buffering=0)])
    return _CAPTURE


def log_path(log_dir: str, stage: str, stream: str) -> Path:
    """Where a stage's ``stdout`` or ``stderr`` is kept with the run."""
    return Path(log_dir) / f"{stage}.{stream}"


@contextlib.contextmanager
def _captured(task: Task) -> Iterator[_Output]:
    """Send the stage's stdout/stderr to the worker's capture files (or buffers), then keep them with the run.

    At the file-descriptor level, child processes and C code included. A stage's output is appended to the files
    (never truncated: the orchestrator follows them from where the stage started, to show each line as it is
    printed; ``sys.stdout`` is line-buffered in a worker) and read back when the stage ends. Creating files per
    stage is avoided on purpose: it is the slowest part of a trivial stage.
    """
    result = _Output()
    if task.capture_fd:
        files = _capture_files()
        starts = [fh.seek(0, os.SEEK_END) for fh in files]
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(files[0].fileno(), 1)
        os.dup2(files[1].fileno(), 2)
        try:
            yield result
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            for fh, begin, attr in zip(files, starts, ("stdout", "stderr"), strict=True):
                end = fh.seek(0, os.SEEK_END)
                if end > begin:
                    setattr(result, attr, os.pread(fh.fileno(), end - begin, begin).decode("utf-8", "replace"))
    else:
        buffers = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(buffers[0]), contextlib.redirect_stderr(buffers[1]):
                yield result
        finally:
            result.stdout, result.stderr = buffers[0].getvalue(), buffers[1].getvalue()
    if result.stdout or result.stderr:
        if task.log_dir not in _LOG_DIRS:
            Path(task.log_dir).mkdir(parents=True, exist_ok=True)
            _LOG_DIRS.add(task.log_dir)
        for attr in ("stdout", "stderr"):
            text = getattr(result, attr)
            if text:
                log_path(task.log_dir, task.stage, attr).write_text(text, encoding="utf-8")


def locate(tb: traceback.StackSummary, stage_file: str) -> tuple[str | None, int | None, str | None]:
    """The cell id, the line within that cell, and the source line of the innermost frame in the stage module."""
    frames = [f for f in tb if os.path.abspath(f.filename) == os.path.abspath(stage_file)]
    if not frames or frames[-1].lineno is None:
        return None, None, None
    lineno = frames[-1].lineno
    try:
        lines = Path(stage_file).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None, None, frames[-1].line
    for i in range(lineno - 1, -1, -1):
        text = lines[i].strip()
        if text.startswith("# --- cell ") and text.endswith(" ---"):
            cell = text[len("# --- cell ") : -len(" ---")]
            return cell, lineno - 1 - i, lines[lineno - 1].strip()
    return None, None, lines[lineno - 1].strip() if lineno <= len(lines) else None


def _user_traceback(exc: BaseException, package_root: str) -> str:
    """The traceback without nb2pipe's own frames: it starts at the stage function."""
    tb = exc.__traceback__
    root = os.path.abspath(package_root)
    while tb is not None and not os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(root):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


@dataclass(frozen=True)
class Warm:
    """Import these stage modules now, before their stages are due (sent to a worker as soon as it starts)."""

    package_root: str
    workdir: str
    modules: tuple[str, ...]


def import_stage(module: str) -> Any:
    """Import a stage module with the cyclic garbage collector paused.

    Importing numerical libraries allocates hundreds of thousands of objects, none of them garbage; pausing the
    collector meanwhile saves about a tenth of the import time (pandas + scikit-learn: ~0.15 s).
    """
    if module in sys.modules:
        return sys.modules[module]
    with collector_paused():
        return importlib.import_module(module)


def warm(request: Warm) -> None:
    """Import ``request.modules`` ahead of their stages; an error is left for the stage to report."""
    _prepare_paths(request.package_root, request.modules[0] if request.modules else "", request.workdir)
    for module in request.modules:
        try:
            import_stage(module)
        except Exception:  # the stage imports it again and reports the error where it belongs
            return


def _prepare(task: Task) -> None:
    _prepare_paths(task.package_root, task.module, task.workdir)


def _prepare_paths(package_root: str, module: str, workdir: str) -> None:
    # A long-lived worker (Dask) may have imported another version of this package in an earlier run.
    top = module.split(".", 1)[0]
    loaded = sys.modules.get(top)
    if top and loaded is not None and not str(getattr(loaded, "__file__", "") or "").startswith(package_root):
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
    if not sys.path or sys.path[0] != package_root:
        with contextlib.suppress(ValueError):
            sys.path.remove(package_root)
        sys.path.insert(0, package_root)
        importlib.invalidate_caches()
    if os.environ != _INITIAL_ENV:
        os.environ.clear()
        os.environ.update(_INITIAL_ENV)
    os.chdir(workdir)


def execute(task: Task, worker: str = "") -> Result:
    """Run ``task`` here and publish its result in the cache; never raises for a failure of the user's code."""
    started = time.time()
    _prepare(task)
    cache = Cache(Path(task.home))
    failure: Failure | None = None
    outputs: dict[str, str] = {}
    try:
        kwargs, loader = _load_inputs(task, cache)
        snapshot = _load_state(task)
    except Exception as exc:  # a cache entry vanished under us (cache clear during a run)
        failure = Failure("input", type(exc).__name__, str(exc))
        return Result(task.stage, task.key, "failed", started, time.time(), failure=failure, worker=worker)
    sources = {
        name: serialize.Source(Path(task.inputs[name]).name, task.input_hashes[name], value)
        for name, value in kwargs.items()
        if name in task.input_hashes
    }
    kwargs.update(task.params)
    state.restore(snapshot)
    try:
        module = import_stage(task.module)
    except Exception as exc:  # the stage's imports or shared code fail: a failure of the stage, not of the worker
        text = _user_traceback(exc, task.package_root)
        stage_file = str(Path(task.package_root, *task.module.split(".")).with_suffix(".py"))
        cell, line, source = locate(traceback.extract_tb(exc.__traceback__), stage_file)
        failure = Failure("exception", type(exc).__name__, str(exc), cell, line, source, text)
        return Result(task.stage, task.key, "failed", started, time.time(), failure=failure, worker=worker)
    fn = getattr(module, task.function)
    with _captured(task) as printed:
        try:
            returned = fn(**kwargs)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            text = _user_traceback(exc, task.package_root)
            sys.stderr.write(text)
            cell, line, source = locate(traceback.extract_tb(exc.__traceback__), module.__file__ or "")
            failure = Failure("exception", type(exc).__name__, str(exc), cell, line, source, text)
    if failure is None:
        try:
            outputs = _publish(task, cache, returned, printed, sources, loader)
        except serialize.UnserializableValue as exc:
            consumers = tuple(task.consumers.get(exc.name, ()))
            failure = Failure("serialize", "UnserializableValue", exc.cause, variable=exc.name, consumers=consumers)
    return Result(
        task.stage,
        task.key,
        "failed" if failure else "ran",
        started,
        time.time(),
        outputs,
        failure,
        printed.stdout[-_KEEP:],
        printed.stderr[-_KEEP:],
        worker,
    )


def _publish(
    task: Task,
    cache: Cache,
    returned: dict[str, Any],
    printed: _Output,
    sources: dict[str, serialize.Source],
    loader: serialize.Loader,
) -> dict[str, str]:
    import json
    import pickle

    with cache.writing(task.key) as work:
        written = serialize.dump({k: returned[k] for k in task.outputs}, work / VALUES, sources, loader)
        snapshot = state.capture(task.state_out)
        state_hashes: dict[str, str] = {}
        if snapshot:
            blobs = {k: serialize.dumps_small(v) for k, v in snapshot.items()}
            state_hashes = {k: hashlib.sha256(b).hexdigest() for k, b in blobs.items()}
            (work / STATE).write_bytes(pickle.dumps(snapshot, protocol=5))
        files: dict[str, str] = {}
        if task.writes:
            (work / "files").mkdir()
            for i, rel in enumerate(task.writes):
                src = Path(task.workdir) / rel
                files[rel] = file_hash(src)
                if src.is_file():
                    shutil.copy2(src, work / "files" / str(i))
        for name in ("stdout", "stderr"):
            if getattr(printed, name):
                (work / name).write_text(getattr(printed, name), encoding="utf-8")
        meta = {
            "stage": task.stage,
            "version": task.meta.get("version"),
            "pipeline": task.meta.get("pipeline"),
            "serializer": written.serializer,
            "outputs": written.hashes,
            "formats": written.formats,
            "state": state_hashes,
            "writes": files,
            "run_id": task.run_id,
            "created_at": time.time(),
        }
        (work / META).write_text(json.dumps(meta, indent=1, sort_keys=True))
    return written.hashes
