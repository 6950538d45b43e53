"""nb2pipe against a couple of hundred real notebooks shipped inside pinned PyPI packages.

The contract checked for every notebook: ``nb2pipe.convert`` either writes a pipeline package or raises
:class:`nb2pipe.errors.Nb2PipeError` with a one-line message that names the notebook's file. Any other
exception (or a hang) is a bug. The same holds after ``nb2pipe tag NB --by headings`` proposed stages,
and the ``tag`` command itself must exit 0 or exit 2 with such a line, never with a traceback.

Most of these notebooks carry no stage tags, so "clear error" is the expected outcome for many of them
in the first test; the second test is where real conversions happen. The notebooks are downloaded once
into a cache outside the repository (see ``tests/pypi_notebooks.py``); run with ``-s`` or look at the
terminal for the per-package outcome counts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

import nb2pipe
from nb2pipe.errors import Nb2PipeError

pytestmark = pytest.mark.network

#: The pinned packages hold 234 notebooks; fewer than this means the fetcher broke.
MIN_NOTEBOOKS = 200
#: A single conversion (or `nb2pipe tag` run) taking longer than this counts as a hang.
PER_NOTEBOOK_TIMEOUT_S = 120

CONVERTED = "converted"
CLEAR_ERROR = "clear error"
FAILED = "FAILED"


def _load_helper() -> ModuleType:
    """Import tests/pypi_notebooks.py by path, whatever pytest's rootdir and import mode are."""
    name = "nb2pipe_tests_pypi_notebooks"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "pypi_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pypi_notebooks = _load_helper()


@dataclass(frozen=True)
class Outcome:
    notebook: Path
    label: str
    kind: str  # CONVERTED, CLEAR_ERROR or FAILED
    detail: str = ""
    #: For crashes: exception type and innermost frame, to group failures with one cause.
    signature: str = ""


@pytest.fixture(scope="module")
def real_notebooks() -> list[Path]:
    try:
        paths: list[Path] = pypi_notebooks.fetch_pypi_notebooks()
    except pypi_notebooks.PyPIUnreachableError as exc:
        pytest.skip(f"PyPI is unreachable, so the real notebooks cannot be fetched: {exc}")
    return paths


def _label(nb: Path) -> str:
    """``<package>-<version>/<path in archive>`` for messages."""
    try:
        return nb.relative_to(pypi_notebooks.cache_root()).as_posix()
    except ValueError:
        return str(nb)


def _package(label: str) -> str:
    return label.split("/", 1)[0]


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so that a converter's ``except Exception`` can't eat it."""


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise _Hang(f"no answer after {seconds}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _crash_summary(exc: BaseException) -> tuple[str, str]:
    """(the exception with the innermost frames of its traceback, a signature to group by)."""
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    where = [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames]
    signature = f"{type(exc).__name__} at {where[-1] if where else '?'}"
    return f"{type(exc).__name__}: {exc} [{'; '.join(where)}]", signature


def _check_error_message(message: str, nb_name: str) -> str | None:
    """Why *message* is not a clear error about *nb_name*, or None when it is."""
    if nb_name not in message:
        return f"message does not name {nb_name!r}: {message!r}"
    if "\n" in message.strip():
        return f"message is not one line: {message!r}"
    return None


def _convert(convert: Callable[..., object], nb: Path, out_dir: Path, label: str) -> Outcome:
    """Run ``nb2pipe.convert`` on *nb* and classify what happened."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _deadline(PER_NOTEBOOK_TIMEOUT_S):
            convert(nb, out_dir)
    except Nb2PipeError as exc:
        problem = _check_error_message(str(exc), nb.name)
        if problem:
            return Outcome(nb, label, FAILED, f"{type(exc).__name__}: {problem}")
        return Outcome(nb, label, CLEAR_ERROR, f"{type(exc).__name__}: {exc}")
    except (Exception, _Hang) as exc:
        summary, signature = _crash_summary(exc)
        return Outcome(nb, label, FAILED, "crash: " + summary, signature)
    written = [p for p in out_dir.iterdir() if p.is_dir()]
    if not written:
        return Outcome(nb, label, FAILED, f"convert returned but wrote no package under {out_dir}")
    return Outcome(nb, label, CONVERTED)


def _nb2pipe_cli() -> list[str]:
    exe = Path(sys.executable).with_name("nb2pipe")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("nb2pipe")
    if found is None:
        pytest.fail("the nb2pipe console script is not installed next to this Python nor on PATH")
    return [found]


def _tag(cli: list[str], nb: Path, tagged: Path, label: str) -> Outcome:
    """``nb2pipe tag NB --by headings -o TAGGED``: CONVERTED when it wrote *tagged*."""
    tagged.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*cli, "tag", str(nb), "--by", "headings", "-o", str(tagged)]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=PER_NOTEBOOK_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return Outcome(nb, label, FAILED, f"tag: no answer after {PER_NOTEBOOK_TIMEOUT_S}s")
    err = proc.stderr.strip()
    if proc.returncode == 0:
        if not tagged.is_file():
            return Outcome(nb, label, FAILED, f"tag exited 0 but wrote no {tagged.name}")
        return Outcome(nb, label, CONVERTED)
    if proc.returncode == 2 and "Traceback" not in err:
        problem = _check_error_message(err, nb.name)
        if problem:
            return Outcome(nb, label, FAILED, f"tag exit 2: {problem}")
        return Outcome(nb, label, CLEAR_ERROR, f"tag exit 2: {err}")
    tail = " | ".join(err.splitlines()[-4:])
    return Outcome(nb, label, FAILED, f"tag crashed (exit {proc.returncode}): {tail}")


def _report(title: str, outcomes: list[Outcome], success: str = CONVERTED) -> str:
    """Per-package outcome counts (*success* names the CONVERTED outcome), then every failure."""
    per_package: dict[str, Counter[str]] = {}
    for o in outcomes:
        per_package.setdefault(_package(o.label), Counter())[o.kind] += 1
    totals = Counter(o.kind for o in outcomes)
    lines = [
        f"{title}: {len(outcomes)} notebooks, {totals[CONVERTED]} {success}, "
        f"{totals[CLEAR_ERROR]} clear errors, {totals[FAILED]} failures",
        f"  {'package':<22} {'notebooks':>9} {success:>9} {CLEAR_ERROR:>11} {FAILED:>7}",
    ]
    for package, counts in per_package.items():
        lines.append(
            f"  {package:<22} {sum(counts.values()):>9} {counts[CONVERTED]:>9} "
            f"{counts[CLEAR_ERROR]:>11} {counts[FAILED]:>7}"
        )
    error_types = Counter(o.detail.split(":", 1)[0] for o in outcomes if o.kind == CLEAR_ERROR)
    if error_types:
        lines.append("clear errors by type: " + ", ".join(f"{t} {n}" for t, n in error_types.most_common()))
    failures = [o for o in outcomes if o.kind == FAILED]
    signatures = Counter(o.signature for o in failures if o.signature)
    if signatures:
        lines.append("crashes by cause:")
        lines.extend(f"  {n:4d}  {sig}" for sig, n in signatures.most_common())
    if failures:
        lines.append("failures:")
        lines.extend(f"  {o.label}: {o.detail}" for o in failures)
    return "\n".join(lines)


def _print_report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print("\n" + text)


def test_enough_real_notebooks_are_fetched(real_notebooks: list[Path]) -> None:
    assert len(real_notebooks) >= MIN_NOTEBOOKS, (
        f"only {len(real_notebooks)} notebooks fetched, expected at least {MIN_NOTEBOOKS}"
    )
    assert all(p.is_file() and p.suffix == ".ipynb" for p in real_notebooks)
    packages = {_package(_label(p)) for p in real_notebooks}
    assert {p.key for p in pypi_notebooks.PINNED} <= packages
    # A second call must be served from the cache: same paths, no download.
    assert pypi_notebooks.fetch_pypi_notebooks() == real_notebooks


def test_convert_real_notebooks(real_notebooks: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    convert = nb2pipe.convert
    outcomes = [_convert(convert, nb, tmp_path / f"{i:03d}", _label(nb)) for i, nb in enumerate(real_notebooks)]
    report = _report("nb2pipe.convert on the notebooks as shipped", outcomes)
    _print_report(capsys, report)
    if any(o.kind == FAILED for o in outcomes):
        pytest.fail(report, pytrace=False)


def test_convert_real_notebooks_after_tag_by_headings(
    real_notebooks: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    convert = nb2pipe.convert
    cli = _nb2pipe_cli()
    # Keep the original file name, so that error messages about the tagged copy must name it too.
    tagged = [tmp_path / "tagged" / f"{i:03d}" / nb.name for i, nb in enumerate(real_notebooks)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        tag_outcomes = list(
            pool.map(
                lambda args: _tag(cli, args[0], args[1], _label(args[0])),
                zip(real_notebooks, tagged, strict=True),
            )
        )
    outcomes: list[Outcome] = []
    for i, (tag_outcome, copy) in enumerate(zip(tag_outcomes, tagged, strict=True)):
        if tag_outcome.kind != CONVERTED:  # tag refused it clearly, or crashed
            outcomes.append(tag_outcome)
            continue
        outcomes.append(_convert(convert, copy, tmp_path / "out" / f"{i:03d}", tag_outcome.label))
    report = "\n".join(
        [
            _report("nb2pipe tag --by headings", tag_outcomes, success="tagged"),
            _report("then nb2pipe.convert on the tagged copies", outcomes),
        ]
    )
    _print_report(capsys, report)
    if any(o.kind == FAILED for o in outcomes):
        pytest.fail(report, pytrace=False)
