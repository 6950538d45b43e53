"""``nb2pipe verify``: the notebook and its pipeline must compute the same values at every stage boundary.

The notebook is executed with papermill (a real kernel, the same parameters) with a small capture cell after each
stage's last cell that pickles the values that stage hands to others. It is executed twice: a value that differs
between two executions of the notebook itself (unseeded randomness, timings) is reported as nondeterministic,
never as a divergence. The pipeline runs through the normal runner (its cache included: a cached result is, by
construction, what the stage computes for these inputs), and each output is compared with the notebook's value,
tolerantly for floats, arrays and DataFrames. Each stage's inputs are compared too, with the notebook's values
captured before the stage's first cell: a change between two stages that the conversion did not see. The first
divergence is reported by stage, variable and cell.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Nb2PipeError
from . import serialize
from .compare import difference

CAPTURE_TAG = "nb2pipe-verify-capture"

_CAPTURE = """\
def _nb2pipe_capture(path, names, namespace):
    import pickle
    try:
        import cloudpickle as pickler
    except ImportError:
        pickler = pickle
    out = {}
    for name in names:
        if name in namespace:
            try:
                out[name] = pickler.dumps(namespace[name], protocol=5)
            except Exception:
                out[name] = None
    with open(path, "wb") as fh:
        pickle.dump(out, fh)
_nb2pipe_capture(%r, %r, globals())
del _nb2pipe_capture
"""


class VerifyError(Nb2PipeError):
    """The notebook cannot be verified: it fails by itself, or its kernel cannot start."""


@dataclass(frozen=True)
class ValueCheck:
    """One value at one stage boundary."""

    stage: str
    name: str
    #: ``equal``, ``diverged``, ``nondeterministic`` or ``unavailable`` (the notebook's value cannot be pickled).
    status: str
    cell: int | None = None
    cell_id: str | None = None
    detail: str = ""
    #: ``output`` (the stage's value against the notebook's after its last cell) or ``input`` (what the stage
    #: received against the notebook's value before its first cell: a change the conversion missed in between).
    kind: str = "output"


@dataclass
class VerifyReport:
    notebook: str
    run_id: str
    pipeline_status: str
    checks: list[ValueCheck] = field(default_factory=list)
    pipeline_error: str = ""

    @property
    def divergences(self) -> list[ValueCheck]:
        return [c for c in self.checks if c.status == "diverged"]

    @property
    def ok(self) -> bool:
        return not self.divergences and self.pipeline_status == "succeeded"

    def to_json(self) -> dict[str, Any]:
        return {
            "notebook": self.notebook,
            "run_id": self.run_id,
            "pipeline_status": self.pipeline_status,
            "pipeline_error": self.pipeline_error or None,
            "equivalent": self.ok,
            "checks": [c.__dict__ for c in self.checks],
        }


def _instrument(notebook: Path, analysis: Any, capture_dir: Path) -> dict[str, Any]:
    """The notebook JSON with a capture cell before each stage's first cell (its inputs, in ``in-<stage>.pkl``)
    and after its last cell (its outputs, in ``<stage>.pkl``)."""
    nb: dict[str, Any] = json.loads(notebook.read_text(encoding="utf-8"))
    before: dict[int, list[tuple[str, list[str]]]] = {}
    after: dict[int, list[tuple[str, list[str]]]] = {}
    for stage in analysis.flow.stages:
        if not stage.cells:
            continue
        if stage.inputs:
            first = min(c.cell.index for c in stage.cells)
            before.setdefault(first, []).append((f"in-{stage.name}", sorted(stage.inputs)))
        if stage.outputs:
            last = max(c.cell.index for c in stage.cells)
            after.setdefault(last, []).append((stage.name, list(stage.outputs)))
    cells: list[dict[str, Any]] = []

    def capture(file: str, names: list[str]) -> None:
        cells.append(
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"nb2pipe-capture-{len(cells)}",
                "metadata": {"tags": [CAPTURE_TAG]},
                "outputs": [],
                "source": _CAPTURE % (str(capture_dir / f"{file}.pkl"), names),
            }
        )

    for index, cell in enumerate(nb["cells"]):
        for file, names in before.get(index, []):
            capture(file, names)
        cells.append(cell)
        for file, names in after.get(index, []):
            capture(file, names)
    nb["cells"] = cells
    nb.setdefault("nbformat_minor", 5)
    if nb.get("nbformat_minor", 0) < 5:
        nb["nbformat_minor"] = 5
    return nb


def _execute(source: Path, out: Path, parameters: Mapping[str, Any], cwd: Path, kernel: str | None) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            str(source),
            str(out),
            parameters=dict(parameters),
            kernel_name=kernel,
            progress_bar=False,
            cwd=str(cwd),
        )
    except PapermillExecutionError as exc:
        raise VerifyError(
            f"the notebook itself fails (cell {exc.cell_index + 1}): {exc.ename}: {exc.evalue}; fix it before "
            "verifying the pipeline"
        ) from None


def _captured(capture_dir: Path, stage: str) -> dict[str, bytes | None]:
    path = capture_dir / f"{stage}.pkl"
    if not path.exists():
        return {}
    data: dict[str, bytes | None] = pickle.loads(path.read_bytes())  # noqa: S301 - written by our capture cell
    return data


def _binding_cells(analysis: Any) -> dict[tuple[str, str], Any]:
    """(stage, name) -> the notebook cell that last binds or modifies ``name`` in that stage."""
    out: dict[tuple[str, str], Any] = {}
    for stage in analysis.flow.stages:
        for unit in stage.body:
            for name in list(unit.binds) + list(unit.mutates):
                out[(stage.name, name)] = unit.cell.cell
    return out


@contextlib.contextmanager
def _importable(package: Path) -> Iterator[None]:
    """The pipeline package importable here while its values load, as it is in the workers.

    A value that crossed a stage may hold a function or class the notebook defined (a bootstrap object keeping the
    statistic it was given): pickle stores those by reference, ``<package>.shared.name``. Afterwards the package's
    modules are forgotten again, so a later verify of another notebook with the same name cannot see them.
    """
    root, top = str(package.parent), package.name
    before = set(sys.modules)
    sys.path.insert(0, root)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(root)
        for name in [n for n in sys.modules if n not in before and (n == top or n.startswith(top + "."))]:
            del sys.modules[name]


def verify(
    notebook: str | os.PathLike[str],
    *,
    pairs: Sequence[tuple[str, str]] = (),
    files: Sequence[str] = (),
    home: str | os.PathLike[str] | None = None,
    kernel: str | None = None,
    executions: int = 2,
) -> VerifyReport:
    """Execute the notebook (papermill) and its pipeline with the same parameters; compare every boundary value."""
    from ..converter import analyze
    from ..parameters import from_pipeline, resolve
    from ..runstore import store_home
    from .run import describe_failure, run_pipeline
    from .target import load_target

    path = Path(notebook)
    analysis = analyze(path)
    overrides = resolve(from_pipeline(analysis.flow.parameters), pairs, files, target=str(path))
    kernel = kernel or _kernel_name(analysis)
    with tempfile.TemporaryDirectory(prefix="nb2pipe-verify-") as tmp_name:
        tmp = Path(tmp_name)
        dirs = [tmp / f"exec{i}" for i in range(max(1, executions))]
        sources = []
        for d in dirs:
            d.mkdir()
            source = d / "instrumented.ipynb"
            source.write_text(json.dumps(_instrument(path, analysis, d)), encoding="utf-8")
            sources.append(source)
        with ThreadPoolExecutor(max_workers=len(dirs)) as pool:
            futures = [
                pool.submit(_execute, s, d / "executed.ipynb", overrides, path.resolve().parent, kernel)
                for s, d in zip(sources, dirs, strict=True)
            ]
            report_run = run_pipeline(path, values=overrides, home=home)
            for f in futures:
                f.result()
        report = VerifyReport(str(path), report_run.run_id, report_run.status)
        failed = [o for o in report_run.stages if o.status == "failed"]
        if failed:
            report.pipeline_error = describe_failure(failed[0], report_run.cells)
        cells = _binding_cells(analysis)
        package = load_target(path, store_home(home)).directory
        flows = {s.name: s for s in analysis.flow.stages}
        bundles: dict[str, dict[str, Any]] = {}
        with _importable(package):  # values and comparisons may need the package's own modules
            for outcome in report_run.stages:
                if outcome.location is not None:
                    bundles[outcome.name] = serialize.load(Path(outcome.location) / "values.bin")
            for outcome in report_run.stages:
                flow = flows.get(outcome.name)
                if flow is not None:
                    report.checks += _check_inputs(flow, bundles, dirs, cells)
                if outcome.name in bundles:
                    report.checks += _check_outputs(outcome.name, bundles[outcome.name], dirs, cells)
    return report


def _notebook_values(blobs: Sequence[bytes | None], name: str) -> tuple[list[Any] | None, str]:
    """The captured values of ``name`` (None when one did not pickle), and how they differ between executions."""
    if any(b is None for b in blobs):
        return None, ""
    values = [pickle.loads(b) for b in blobs if b is not None]  # noqa: S301 - our capture
    return values, next((found for v in values[1:] if (found := difference(values[0], v, name))), None) or ""


def _check_outputs(
    stage: str, pipeline_values: Mapping[str, Any], dirs: Sequence[Path], cells: Mapping[tuple[str, str], Any]
) -> list[ValueCheck]:
    """Each output of ``stage`` against the values the notebook executions captured after its last cell."""
    checks: list[ValueCheck] = []
    captures = [_captured(d, stage) for d in dirs]
    for name in pipeline_values:
        cell = cells.get((stage, name))
        where: dict[str, Any] = {"cell": cell.number if cell else None, "cell_id": cell.id if cell else None}
        values, unstable = _notebook_values([c.get(name) for c in captures], name)
        if values is None:
            checks.append(ValueCheck(stage, name, "unavailable", **where, detail="not picklable in the kernel"))
        elif unstable:
            checks.append(ValueCheck(stage, name, "nondeterministic", **where, detail=unstable))
        else:
            diverged = difference(values[0], pipeline_values[name], name)
            status = "diverged" if diverged else "equal"
            checks.append(ValueCheck(stage, name, status, **where, detail=diverged or ""))
    return checks


def _check_inputs(
    flow: Any, bundles: Mapping[str, Mapping[str, Any]], dirs: Sequence[Path], cells: Mapping[tuple[str, str], Any]
) -> list[ValueCheck]:
    """What ``flow``'s stage received against the notebook's values before its first cell.

    The producer's output already matched the notebook after the producer; a difference here means the notebook
    changed the value between the two stages in a way the conversion did not see (the worst kind of divergence:
    the stage runs, on a stale value). Values unavailable or nondeterministic in the notebook were reported with
    the producer's outputs.
    """
    checks: list[ValueCheck] = []
    captures = [_captured(d, f"in-{flow.name}") for d in dirs]
    for name, producer in sorted(flow.inputs.items()):
        if producer not in bundles or name not in bundles[producer]:
            continue
        values, unstable = _notebook_values([c.get(name) for c in captures], name)
        if values is None or unstable:
            continue
        cell = cells.get((producer, name))
        where: dict[str, Any] = {"cell": cell.number if cell else None, "cell_id": cell.id if cell else None}
        diverged = difference(values[0], bundles[producer][name], name)
        detail = (
            f"received from stage {producer!r}, but the notebook had changed it before stage {flow.name!r} "
            f"(a change the conversion did not see): {diverged}"
            if diverged
            else ""
        )
        checks.append(
            ValueCheck(flow.name, name, "diverged" if diverged else "equal", **where, detail=detail, kind="input")
        )
    return checks


def _kernel_name(analysis: Any) -> str | None:
    spec = analysis.notebook.metadata.get("kernelspec")
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        try:
            KernelSpecManager().get_kernel_spec(spec["name"])
            return str(spec["name"])
        except NoSuchKernel:
            return "python3"
    return "python3"
