"""The orchestrator: order, cache keys, cache hits, the run store; executors only run what is left.

For each stage, as soon as everything it depends on has finished, the orchestrator computes its cache key from
the stage's code version, the content hashes of its inputs (known from its producers' results), the values of the
parameters it reads, the hashes of the process-wide state it receives and the content of the files it reads. A
published entry under that key is the stage's result (``cached``); otherwise the stage goes to the executor. Every
run and every stage's ending is recorded in the run store, including Ctrl-C (``cancelled``).
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Nb2PipeError
from ..parameters import Declared, resolve
from ..runstore import RunStore, store_home, to_json
from .cache import Cache, Entry, cache_key, file_hash
from .execute import Failure, Result, Task, Warm
from .target import Pipeline, load_target

#: Seconds between heartbeats of a running pipeline run.
HEARTBEAT_EVERY = 10.0


class RunError(Nb2PipeError):
    """A run that cannot start or continue: unknown stage in ``--only``/``--from``, a missing cached input."""


@dataclass
class StageOutcome:
    """How one stage of a run ended (a value, not an exception: cached and skipped are results too)."""

    name: str
    #: ``ran``, ``cached``, ``failed``, ``skipped`` (or ``pending`` when the run was cancelled first).
    status: str = "pending"
    key: str | None = None
    seconds: float = 0.0
    #: Output name -> content hash.
    outputs: dict[str, str] = field(default_factory=dict)
    #: The cache entry holding the outputs.
    location: str | None = None
    #: Output name -> how it is stored (``format``, ``buffers``, ``bytes``, ``same_as``), from the entry.
    formats: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure: Failure | None = None
    stdout: str = ""
    stderr: str = ""
    #: Why a stage was skipped.
    reason: str = ""


@dataclass
class RunReport:
    """The summary of a run (what ``--json`` prints)."""

    run_id: str
    pipeline: str
    status: str
    parameters: dict[str, Any]
    stages: list[StageOutcome]
    run_dir: str
    executor: str
    notebook: str | None = None
    cells: dict[str, int] = field(default_factory=dict)
    #: Things the user should know that did not stop the run (state the runner cannot carry).
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": self.status,
            "executor": self.executor,
            "parameters": self.parameters,
            "run_dir": self.run_dir,
            "warnings": self.warnings,
            "stages": [
                {
                    "name": s.name,
                    "status": s.status,
                    "time": round(s.seconds, 4),
                    "cache_key": s.key,
                    "outputs": {
                        n: {
                            "hash": h,
                            "location": f"{s.location}/values.bin#{n}" if s.location else None,
                            **s.formats.get(n, {}),
                        }
                        for n, h in s.outputs.items()
                    },
                    **({"error": describe_failure(s, self.cells)} if s.failure else {}),
                    **({"reason": s.reason} if s.reason else {}),
                }
                for s in self.stages
            ],
        }


Event = Callable[[str, StageOutcome], None]


def describe_failure(outcome: StageOutcome, cells: Mapping[str, int] | None = None) -> str:
    """One line: the stage, the notebook cell and the user's line, and the error."""
    f = outcome.failure
    if f is None:
        return ""
    if f.kind == "serialize":
        readers = " and ".join(repr(c) for c in f.consumers) or "a later stage"
        return (
            f"stage {outcome.name!r}: `{f.variable}` cannot be passed to stage {readers}: {f.evalue}; make it "
            f"picklable, or create it in the stage that uses it"
        )
    where = ""
    if f.cell_id:
        number = (cells or {}).get(f.cell_id)
        where = f"cell {number} (id {f.cell_id})" if number else f"cell {f.cell_id}"
        if f.line:
            where += f", line {f.line}"
        if f.source:
            where += f": `{f.source}`"
        where = " at " + where
    return f"stage {outcome.name!r} failed{where}: {f.ename}: {f.evalue}"


def _declared(spec: Mapping[str, Any]) -> list[Declared]:
    return [Declared(p["name"], p["type"], p["default"], repr(p["default"])) for p in spec.get("parameters", [])]


def _check_stages(names: Iterable[str], known: Sequence[str], flag: str) -> list[str]:
    out = []
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; stages: {', '.join(known)}"
            raise RunError(f"{flag} {name}: no such stage{hint}")
        out.append(name)
    return out


def _closure(start: Iterable[str], graph: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


class _Run:
    """State of one run while it executes."""

    def __init__(self, pipeline: Pipeline, home: Path, params: dict[str, Any], run_id: str, run_dir: Path) -> None:
        self.p = pipeline
        self.home = home
        self.cache = Cache(home)
        self.params = params
        self.run_id = run_id
        self.run_dir = run_dir
        self.stages = pipeline.stages
        self.order: list[str] = list(pipeline.spec["order"])
        self.deps: dict[str, set[str]] = {s: set() for s in self.order}
        self.children: dict[str, set[str]] = {s: set() for s in self.order}
        for edge in pipeline.spec.get("edges", []):
            if edge["from"] in self.deps and edge["to"] in self.deps:
                self.deps[edge["to"]].add(edge["from"])
                self.children[edge["from"]].add(edge["to"])
        for name, stage in self.stages.items():
            extra = [i["from"] for i in stage["inputs"]] + [p for p in stage["state"]["inputs"].values() if p]
            for producer in extra:
                if producer in self.deps:
                    self.deps[name].add(producer)
                    self.children[producer].add(name)
        self.consumers: dict[str, dict[str, list[str]]] = {s: {} for s in self.order}
        for name, stage in self.stages.items():
            for i in stage["inputs"]:
                self.consumers.setdefault(i["from"], {}).setdefault(i["name"], []).append(name)
        self.entries: dict[str, Entry] = {}
        self.outcomes = {s: StageOutcome(s) for s in self.order}

    def key(self, name: str) -> str:
        stage = self.stages[name]
        inputs = {i["name"]: self.entries[i["from"]].outputs[i["name"]] for i in stage["inputs"]}
        state = {
            k: (self.entries[src].state.get(k) if src in self.entries else None) if src else None
            for k, src in stage["state"]["inputs"].items()
        }
        files = {rel: file_hash(self.p.workdir / rel) for rel in stage.get("reads", [])}
        params = {p: self.params[p] for p in stage["parameters"]}
        return cache_key(stage=name, version=stage["version"], inputs=inputs, params=params, state=state, files=files)

    def task(self, name: str, key: str, capture_fd: bool) -> Task:
        stage = self.stages[name]
        state_in = {
            k: str(self.entries[src].path)
            for k, src in stage["state"]["inputs"].items()
            if src and src in self.entries and k in self.entries[src].state
        }
        return Task(
            run_id=self.run_id,
            stage=name,
            module=stage["module"],
            function=stage["function"],
            package_root=str(self.p.package_root),
            workdir=str(self.p.workdir),
            key=key,
            home=str(self.home.resolve()),
            inputs={i["name"]: str(self.entries[i["from"]].path) for i in stage["inputs"]},
            input_hashes={i["name"]: self.entries[i["from"]].outputs[i["name"]] for i in stage["inputs"]},
            params={p: copy.deepcopy(self.params[p]) for p in stage["parameters"]},
            state_in=state_in,
            state_out=list(stage["state"]["outputs"]),
            outputs=list(stage["outputs"]),
            writes=list(stage.get("writes", [])),
            consumers=self.consumers.get(name, {}),
            log_dir=str(self.run_dir.resolve()),
            capture_fd=capture_fd,
            meta={"version": stage["version"], "pipeline": self.p.name},
        )

    def restore_written(self, entry: Entry) -> None:
        """A cached stage's written files are part of its result: put back any that changed or vanished."""
        for rel, digest in sorted(entry.meta.get("writes", {}).items()):
            target = self.p.workdir / rel
            if digest == "missing" or file_hash(target) == digest:
                continue
            index = list(self.stages[entry.meta["stage"]].get("writes", [])).index(rel)
            saved = entry.path / "files" / str(index)
            if saved.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.nb2pipe-tmp")
                shutil.copy2(saved, tmp)
                os.replace(tmp, target)


def _stage_row(run_id: str, o: StageOutcome, started: float | None = None) -> tuple[Any, ...]:
    outputs = {n: {"hash": h, "location": f"{o.location}/values.bin#{n}"} for n, h in o.outputs.items()}
    error = describe_failure(o) if o.failure else (o.reason or None)
    ended = time.time() if o.status != "running" else None
    return (o.status, o.key, started, ended, to_json(outputs) if outputs else None, error, run_id, o.name)


def _record_stage(store: RunStore, run_id: str, o: StageOutcome, started: float | None = None) -> None:
    _write_stage_rows(store, [_stage_row(run_id, o, started)])


def _write_stage_rows(store: RunStore, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    with store.transaction() as db:
        db.executemany(
            "UPDATE stage_runs SET status = ?, cache_key = ?, started_at = COALESCE(?, started_at), ended_at = ?, "
            "outputs = ?, error = ? WHERE run_id = ? AND stage = ?",
            rows,
        )
    rows.clear()


def run_pipeline(
    target: str | os.PathLike[str],
    *,
    pairs: Sequence[tuple[str, str]] = (),
    files: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
    workers: int | None = None,
    force: bool = False,
    only: Sequence[str] = (),
    from_stages: Sequence[str] = (),
    executor: str = "local",
    executor_options: Mapping[str, Any] | None = None,
    home: str | os.PathLike[str] | None = None,
    on_event: Event | None = None,
) -> RunReport:
    """Run a notebook or converted pipeline; return the report. Failures of user code are in the report."""
    home_path = store_home(home)
    pipeline = load_target(target, home_path)
    declared = _declared(pipeline.spec)
    overrides = resolve(declared, pairs, files, target=str(target), values=values)
    params = {d.name: copy.deepcopy(d.default) for d in declared} | overrides
    order = list(pipeline.spec["order"])
    only_set = set(_check_stages(only, order, "--only"))
    from_set = set(_check_stages(from_stages, order, "--from"))
    emit = on_event or (lambda kind, outcome: None)

    from .. import runstore

    # A run started by the scheduler is created under the id it allocated, with its schedule and fire time.
    scheduled = runstore.scheduled_run()
    run_id = scheduled[0] if scheduled else runstore.new_run_id()
    schedule_fields: dict[str, Any] = dict(scheduled[1]) if scheduled else {}
    run_dir = home_path / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _Run(pipeline, home_path, params, run_id, run_dir)
    forced = set(order) if force else set()
    forced |= _closure(from_set, state.children)
    needed = set(order)
    if only_set:
        forced |= only_set
        needed = _closure(only_set, state.deps)
    running: dict[str, float] = {}

    def on_output(stage: str, stream: str, text: str) -> None:
        if len(running) > 1:  # several stages print at once: say whose line it is
            text = "".join(f"[{stage}] {line}" for line in text.splitlines(keepends=True))
        chunk = StageOutcome(stage)
        setattr(chunk, stream, text)
        emit("output", chunk)

    listener = on_output if on_event is not None else None
    keys, engine = _start_early(state, needed, forced, executor, workers, executor_options, listener)
    try:
        store = RunStore(home_path)
        store.reap_orphans()
        store.create_run(
            "pipeline",
            str(target),
            parameters=params,
            status="running",
            run_id=run_id,
            target_hash=pipeline.target_hash,
            run_dir=str(run_dir),
            started_at=time.time(),
            pid=os.getpid(),
            pgid=os.getpgid(0),
            executor=executor,
            **schedule_fields,
        )
        with store.transaction() as db:
            db.executemany(
                "INSERT INTO stage_runs (run_id, stage, status, version) VALUES (?, ?, 'pending', ?)",
                [(run_id, s, state.stages[s]["version"]) for s in order],
            )
    except BaseException:
        if engine is not None:  # started early, above
            engine.kill()
        raise
    report = RunReport(
        run_id,
        pipeline.name,
        "running",
        params,
        [state.outcomes[s] for s in order],
        str(run_dir),
        executor,
        str(pipeline.notebook) if pipeline.notebook else None,
        pipeline.cell_numbers(),
    )
    from .state import unsupported

    for name in order:
        stage = state.stages[name]
        for key in unsupported(list(stage["state"]["inputs"]) + list(stage["state"]["outputs"])):
            report.warnings.append(
                f"stage {name!r}: process-wide state {key!r} cannot be carried between stages by the runner; "
                "seed or set it inside the stage that uses it"
            )
    for warning in report.warnings:
        emit("warning", StageOutcome("", reason=warning))
    deferred: list[tuple[Any, ...]] = []
    pending = [s for s in order if s in needed]
    last_beat = time.time()
    try:
        while pending or running:
            for name in list(pending):
                outcome = state.outcomes[name]
                deps = state.deps[name]
                blocked = [d for d in deps if state.outcomes[d].status in ("failed", "skipped")]
                if blocked:
                    outcome.status, outcome.reason = "skipped", f"{blocked[0]!r} did not finish"
                    pending.remove(name)
                    _record_stage(store, run_id, outcome)
                    emit("skipped", outcome)
                    continue
                if not all(state.outcomes[d].status in ("ran", "cached") for d in deps):
                    continue
                pending.remove(name)
                key = keys.pop(name, "") or state.key(name)
                outcome.key = key
                entry = None if name in forced else state.cache.get(key)
                if entry is not None:
                    state.restore_written(entry)
                    state.entries[name] = entry
                    outcome.status, outcome.outputs, outcome.location = "cached", entry.outputs, str(entry.path)
                    outcome.formats = entry.meta.get("formats", {})
                    deferred.append(_stage_row(run_id, outcome))  # written with the next batch: one transaction
                    emit("cached", outcome)
                    continue
                if only_set and name not in only_set:
                    raise RunError(
                        f"--only: stage {name!r} has no cached result for these inputs and parameters; "
                        "run the pipeline without --only first"
                    )
                if engine is None:
                    engine = _load_engine(executor, workers, executor_options, listener)
                _write_stage_rows(store, deferred)
                outcome.status = "running"
                running[name] = time.time()
                _record_stage(store, run_id, outcome, started=running[name])
                emit("started", outcome)
                engine.submit(state.task(name, key, capture_fd=engine.name == "local"))
            _write_stage_rows(store, deferred)
            if not running:
                if pending:  # nothing can start: should not happen with a valid DAG
                    raise RunError(f"stages {', '.join(pending)} can never start (their inputs are missing)")
                break
            for result in engine.wait(1.0):
                _finish(state, result, running.pop(result.stage))
                outcome = state.outcomes[result.stage]
                _record_stage(store, run_id, outcome)
                emit(outcome.status, outcome)
            if time.time() - last_beat > HEARTBEAT_EVERY:
                store.heartbeat(run_id)
                last_beat = time.time()
    except KeyboardInterrupt:
        _write_stage_rows(store, deferred)
        if engine is not None:
            engine.kill()
            engine = None
        for name in running:
            outcome = state.outcomes[name]
            outcome.status, outcome.reason = "failed", "cancelled (interrupted)"
            _record_stage(store, run_id, outcome)
        report.status = "cancelled"
        store.finish_run(run_id, "cancelled", status_detail="interrupted (Ctrl-C or SIGTERM)")
        store.close()
        return report
    except BaseException as exc:
        if engine is not None:
            engine.kill()
            engine = None
        store.finish_run(run_id, "failed", status_detail=f"{type(exc).__name__}: {exc}", error_message=str(exc))
        store.close()
        raise
    finally:
        if engine is not None:
            engine.close()
    for name in order:
        outcome = state.outcomes[name]
        if outcome.status == "pending":
            outcome.status, outcome.reason = "skipped", "not selected (--only)"
            _record_stage(store, run_id, outcome)
    failed = [o for o in report.stages if o.status == "failed"]
    report.status = "failed" if failed else "succeeded"
    fields: dict[str, Any] = {}
    if failed and failed[0].failure:
        f = failed[0].failure
        fields = {"error_cell_id": f.cell_id, "error_name": f.ename, "error_message": describe_failure(failed[0])}
        fields["error_cell"] = report.cells.get(f.cell_id or "")
    store.finish_run(run_id, report.status, **fields)
    store.close()
    (run_dir / "report.json").write_text(json.dumps(report.to_json(), indent=1, default=repr))
    return report


def _load_engine(
    executor: str,
    workers: int | None,
    options: Mapping[str, Any] | None,
    listener: Callable[[str, str, str], None] | None,
) -> Any:
    """The executor, streaming what stages print to ``listener`` when it can (the local one does)."""
    from .executors import load

    engine = load(executor, workers=workers, **dict(options or {}))
    stream = getattr(engine, "stream", None)
    if listener is not None and stream is not None:
        stream(listener)
    return engine


def _start_early(
    state: _Run,
    needed: set[str],
    forced: set[str],
    executor: str,
    workers: int | None,
    options: Mapping[str, Any] | None,
    listener: Callable[[str, str, str], None] | None,
) -> tuple[dict[str, str], Any]:
    """Key the stages that depend on nothing; when one of them must run, start the executor now.

    Those keys are final (they depend on no other stage), so whether the first stages will run is known before the
    run store is opened. The local executor then starts a worker importing their modules while the orchestrator
    records the run; a run served from the cache starts nothing.
    """
    keys = {name: state.key(name) for name in state.order if name in needed and not state.deps[name]}
    due = [name for name, key in keys.items() if name in forced or state.cache.get(key) is None]
    if not due or executor != "local":
        # Another engine (a Dask cluster) is started where it always was: after the run is recorded, so a
        # scheduler that cannot be reached fails a recorded run.
        return keys, None
    engine = _load_engine(executor, workers, options, listener)
    warm = getattr(engine, "warm", None)
    if warm is not None:
        modules = tuple(state.stages[name]["module"] for name in due)
        warm(Warm(str(state.p.package_root), str(state.p.workdir), modules))
    return keys, engine


def _finish(state: _Run, result: Result, started: float) -> None:
    outcome = state.outcomes[result.stage]
    outcome.seconds = result.ended_at - started
    outcome.stdout, outcome.stderr = result.stdout, result.stderr
    if result.status == "ran":
        entry = state.cache.get(result.key)
        if entry is None:
            outcome.status = "failed"
            outcome.failure = Failure("input", "CacheError", f"the result of {result.stage!r} was not published")
            return
        state.entries[result.stage] = entry
        outcome.status, outcome.outputs, outcome.location = "ran", entry.outputs, str(entry.path)
        outcome.formats = entry.meta.get("formats", {})
    else:
        outcome.status, outcome.failure = "failed", result.failure
