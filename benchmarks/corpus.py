"""Fidelity on real notebooks nobody here wrote: auto-tag, convert, run and verify; compare with soorgeon.

The corpus is the example notebooks that pinned PyPI packages ship in their sdists (fetched by
``tests/pypi_notebooks.py`` into a cache outside the repository, never copied into it). A notebook joins the
corpus when it executes offline, unchanged, in under a minute of CPU time on this machine, in a virtual environment that
holds the packages it needs (pinned below; built once under the cache).

For each corpus notebook, in a scratch folder:

1. ``nb2pipe tag NB --by headings -o tagged.ipynb`` proposes stages from the markdown headings;
2. ``nb2pipe verify tagged.ipynb --json`` executes the notebook (papermill) and the converted pipeline and compares
   every value that crosses a stage boundary.

Outcomes: **reproduced** (every value equal; values that differ between two runs of the notebook itself are
reported as nondeterministic), **diverged** (stage, variable), **refused** (a clear ``nb2pipe`` error, quoted),
**crashed** (anything else: an internal error, a traceback, a timeout). With ``--soorgeon``, the same notebooks
go through ``soorgeon refactor`` + ``ploomber build`` in their own environment, and the printed outputs of the
built tasks are compared with the notebook's.

Writes ``benchmarks/results/fidelity.json`` and ``fidelity.md``. Run from the repository root::

    python benchmarks/corpus.py                # select (cached) + fidelity
    python benchmarks/corpus.py --soorgeon     # also soorgeon + ploomber
    python benchmarks/corpus.py --limit 5      # a quick look

Exit status: 0 when there is no crash and no divergence and at least 90% of the corpus reproduces, else 1.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: Packages the corpus notebooks import, pinned so the corpus is reproducible.
CORPUS_REQUIREMENTS = (
    "linearmodels==7.1",
    "arch==8.0.0",
    "dowhy==0.14",
    "tsfresh==0.21.2",
    "seaborn==0.13.2",
    # NumPy 2.4 made converting a size-1 array to a scalar an error, which dowhy 0.14's datasets still do; pandas
    # 2.3 is the series these releases were tested with.
    "numpy==2.3.5",
    "pandas==2.3.3",
    "xarray==2025.12.0",  # linearmodels' panel data-formats notebook
    "ipykernel",
    "papermill",
)
SOORGEON_REQUIREMENTS = ("soorgeon", "ploomber", "ipykernel")
#: Packages whose shipped notebooks make the corpus (the others in tests/pypi_notebooks.py are format fixtures).
CORPUS_PACKAGES = ("dowhy", "linearmodels", "arch", "tsfresh")
SELECT_TIMEOUT_S = 60
#: The kernel ``nb2pipe verify`` falls back to when a notebook names one that is not installed (tsfresh's
#: notebooks still say ``python2``): the venv has exactly one, Python 3.
KERNEL = ("-k", "python3")
VERIFY_TIMEOUT_S = 600


def _load_fetcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nb2pipe_pypi_notebooks", ROOT / "tests" / "pypi_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nb2pipe" / "corpus"


def ensure_venv(name: str, requirements: tuple[str, ...], editable: bool) -> Path:
    """A virtual environment under the cache with ``requirements`` (and nb2pipe from this checkout)."""
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:10]
    venv = cache_dir() / f"{name}-{key}"
    python = venv / "bin" / "python"
    stamp = venv / ".ready"
    if not stamp.exists():
        print(f"corpus: building {venv} ({', '.join(requirements)})", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
        subprocess.run([str(python), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"], check=True)
        stamp.write_text(json.dumps(requirements))
    if editable:  # always current: the checkout under test, with the runner's extras
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[dask]"], check=True)
    return venv


def corpus_candidates() -> list[Path]:
    fetcher = _load_fetcher()
    packages = tuple(p for p in fetcher.PINNED if p.name in CORPUS_PACKAGES)
    return [p for p in fetcher.fetch_pypi_notebooks(packages=packages) if ".ipynb_checkpoints" not in p.parts]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    env["PYTHONHASHSEED"] = "0"
    return env


def select(venv: Path, candidates: list[Path], jobs: int) -> dict[str, dict[str, Any]]:
    """Which candidates execute offline in under a minute of CPU time (cached by notebook hash)."""
    cache_file = cache_dir() / f"selection-{venv.name}.json"  # per environment: what runs depends on what is installed
    cache: dict[str, dict[str, Any]] = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    found: dict[str, dict[str, Any]] = {}

    def probe(path: Path) -> tuple[str, dict[str, Any]]:
        key = _sha(path)
        if key in cache:
            return key, cache[key]
        work = cache_dir() / "select" / key[:16]
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        start = time.perf_counter()
        command = [str(venv / "bin" / "papermill"), str(path), str(work / "out.ipynb"), "--cwd", str(work), *KERNEL]
        code, cpu, stderr = _run_cpu_limited(command, _env(venv), work / "stderr.txt")
        if code is None or cpu > SELECT_TIMEOUT_S:
            ok, why = False, f"over {SELECT_TIMEOUT_S} s"
        else:
            ok, why = code == 0, _last_error(stderr)
        shutil.rmtree(work, ignore_errors=True)
        wall = round(time.perf_counter() - start, 1)
        return key, {"ok": ok, "seconds": wall, "cpu_seconds": round(cpu, 1), "why": "" if ok else why}

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for path, (key, result) in zip(candidates, pool.map(probe, candidates), strict=True):
            found[_short(path)] = result
            if not result["why"].startswith("over "):  # a timeout may be load on the machine: probe again
                cache[key] = {**result, "notebook": _short(path)}
                cache_file.write_text(json.dumps(cache, indent=1, sort_keys=True))
    return found


def _run_cpu_limited(command: list[str], env: dict[str, str], stderr_file: Path) -> tuple[int | None, float, str]:
    """Run ``command``; its exit code (None when it ran past the wall guard), CPU seconds and stderr.

    The minute is CPU time (user + sys of papermill and the kernel it reaps): the machine is shared, and a
    notebook must not leave the corpus because another process held the cores. A wall guard of five times the
    limit still stops a notebook that waits forever.
    """
    with open(stderr_file, "wb") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        deadline = time.monotonic() + 5 * SELECT_TIMEOUT_S
        code: int | None = None
        cpu = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                code, cpu = os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
                proc.returncode = code
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.2)
    return code, cpu, stderr_file.read_text(errors="replace")


def _short(path: Path) -> str:
    parts = path.parts
    for i, part in enumerate(parts):
        if re.fullmatch(r"[A-Za-z0-9_.-]+-\d[\w.]*", part):
            return "/".join(parts[i:])
    return path.name


def _last_error(stderr: str) -> str:
    """The last ``SomeError: message`` line (ploomber's own wrappers skipped: the cause is more telling)."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith("ploomber.exceptions.") and re.match(
            r"^[A-Za-z_.]*[A-Za-z](Error|Exception|Exit)\w*: ", line
        ):
            return line[:200]
    return lines[-1][:200] if lines else ""


@dataclass
class Outcome:
    notebook: str
    outcome: str  # reproduced | diverged | refused | crashed
    stages: int = 0  # stages with a value checked at their boundary
    values: int = 0
    nondeterministic: int = 0
    detail: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    pipeline_stages: int = 0  # stages proposed by ``nb2pipe tag --by headings``


def fidelity(venv: Path, path: Path, work: Path) -> Outcome:
    """Tag by headings, then verify; classify what happened."""
    name = _short(path)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    notebook = work / "nb.ipynb"
    shutil.copy(path, notebook)
    for extra in path.parent.iterdir():  # data files next to the notebook, as the notebook expects
        if extra.is_file() and extra.suffix != ".ipynb" and extra.stat().st_size < 50_000_000:
            shutil.copy(extra, work / extra.name)
    nb2pipe = str(venv / "bin" / "nb2pipe")
    env = {**_env(venv), "NB2PIPE_HOME": str(work / ".nb2pipe")}
    start = time.perf_counter()
    tag = subprocess.run(
        [nb2pipe, "tag", str(notebook), "--by", "headings", "-o", str(work / "tagged.ipynb")],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        check=False,
    )
    if tag.returncode != 0:
        kind = "refused" if tag.returncode == 2 and _one_line_error(tag.stderr) else "crashed"
        return Outcome(name, kind, detail=f"tag: {tag.stderr.strip()[-300:]}")
    proposed = _stage_count(work / "tagged.ipynb")
    try:
        proc = subprocess.run(
            [nb2pipe, "verify", str(work / "tagged.ipynb"), "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=work,
            timeout=VERIFY_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(name, "crashed", detail=f"verify: over {VERIFY_TIMEOUT_S} s")
    seconds = round(time.perf_counter() - start, 1)
    report: dict[str, Any] = {}
    if proc.stdout.strip():
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError:
            report = {}
    checks = report.get("checks", [])
    stages = len({c.get("stage") for c in checks})
    nondet = sum(c.get("status") == "nondeterministic" for c in checks)
    if proc.returncode == 0:
        kind, detail = "reproduced", ""
    elif proc.returncode == 1:
        kind, detail = "diverged", _nb2pipe_lines(proc.stderr)
    elif proc.returncode == 2 and _one_line_error(proc.stderr):
        kind, detail = "refused", _nb2pipe_lines(proc.stderr)
    else:
        kind, detail = "crashed", proc.stderr.strip()[-600:]
    return Outcome(name, kind, stages, len(checks), nondet, detail, seconds, pipeline_stages=proposed)


def _stage_count(path: Path) -> int:
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    tags = {t for c in cells for t in c.get("metadata", {}).get("tags", []) if str(t).startswith("stage:")}
    return len(tags)


def _nb2pipe_lines(stderr: str) -> str:
    """The lines nb2pipe itself printed (kernels add warnings around them)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip().startswith("nb2pipe:")]
    return " ".join(lines) if lines else stderr.strip()[-400:]


def _one_line_error(stderr: str) -> bool:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("nb2pipe:")]
    return bool(lines) and "Traceback" not in stderr and "internal error" not in stderr


def soorgeon(venv: Path, path: Path, work: Path) -> dict[str, Any]:
    """soorgeon refactor + ploomber build; compare the printed output of the built tasks with the notebook's."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    notebook = work / "nb.ipynb"
    shutil.copy(path, notebook)
    env = _env(venv)
    result: dict[str, Any] = {"refactored": False, "built": False, "reproduced": False}
    refactor = subprocess.run(
        [str(venv / "bin" / "soorgeon"), "refactor", "nb.ipynb"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=300,
        check=False,
    )
    if refactor.returncode != 0:
        result["error"] = _last_error(refactor.stderr or refactor.stdout)
        return result
    result["refactored"] = True
    try:
        build = subprocess.run(
            [str(venv / "bin" / "ploomber"), "build", "--force"],
            capture_output=True,
            text=True,
            cwd=work,
            env=env,
            timeout=VERIFY_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        result["error"] = "ploomber build timed out"
        return result
    if build.returncode != 0:
        result["error"] = _last_error(build.stderr or build.stdout)
        return result
    result["built"] = True
    references = []
    for i in range(2):  # twice, as nb2pipe verify does: output that varies by itself proves nothing either way
        reference = work / f"reference{i}.ipynb"
        subprocess.run(
            [str(venv / "bin" / "papermill"), str(notebook), str(reference), "--cwd", str(work), *KERNEL],
            capture_output=True,
            env=env,
            timeout=VERIFY_TIMEOUT_S,
            check=False,
        )
        references.append(_printed(reference) if reference.exists() else None)
    products = [*(work / "output").glob("*.ipynb"), *(work / "products").glob("*.ipynb")]  # soorgeon's layouts
    products.sort(key=lambda p: p.stat().st_mtime)  # the order the tasks ran
    built = _lines("".join(_printed(p) for p in products))
    result["reproduced"] = references[0] is not None and _lines(references[0]) == built
    result["nondeterministic"] = references[0] != references[1]
    return result


def _printed(path: Path) -> str:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return ""
    out = []
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stdout":
                out.append("".join(o.get("text", "")))
    text = re.sub(r"0x[0-9a-f]+", "0x?", "".join(out))
    return re.sub(r"\b\d\d:\d\d:\d\d\b", "HH:MM:SS", text)  # the clock in model summaries


def _lines(text: str) -> list[str]:
    """The printed lines in a canonical order: ploomber runs independent tasks in its own order."""
    return sorted(ln.rstrip() for ln in text.splitlines() if ln.strip())


def write_report(
    outcomes: list[Outcome], selection: dict[str, dict[str, Any]], soorgeon_rows: dict[str, dict[str, Any]]
) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    counts = Counter(o.outcome for o in outcomes)
    total = len(outcomes)
    data = {
        "corpus": total,
        "candidates": len(selection),
        "counts": dict(counts),
        "requirements": CORPUS_REQUIREMENTS,
        "python": sys.version.split()[0],
        "outcomes": [asdict(o) for o in outcomes],
        "soorgeon": soorgeon_rows,
        "excluded": {k: v for k, v in selection.items() if not v["ok"]},
    }
    (RESULTS / "fidelity.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    pct = 100 * counts["reproduced"] / total if total else 0.0
    lines = [
        "# Fidelity on real notebooks",
        "",
        f"Generated by `python benchmarks/corpus.py`. Corpus: {total} notebooks shipped in the sdists of "
        f"{', '.join(CORPUS_PACKAGES)} that execute offline in under {SELECT_TIMEOUT_S} s of CPU time "
        f"(of {len(selection)} candidates). Stages proposed by `nb2pipe tag --by headings`; "
        "`nb2pipe verify` compares every value crossing a stage boundary.",
        "",
        f"**reproduced {counts['reproduced']}/{total} ({pct:.0f}%)**, diverged {counts['diverged']}, "
        f"refused {counts['refused']}, crashed {counts['crashed']}.",
        "",
    ]
    reproduced = [o for o in outcomes if o.outcome == "reproduced"]
    lines += [
        f"Of the {len(reproduced)} reproduced notebooks, {sum(o.pipeline_stages >= 2 for o in reproduced)} were "
        f"split into two stages or more and {sum(o.values > 0 for o in reproduced)} passed at least one value from "
        "a stage to another (the values column counts them).",
        "",
    ]
    if soorgeon_rows:
        lines += soorgeon_table(outcomes, soorgeon_rows)
    lines += [
        "| notebook | outcome | stages | values | nondeterministic | detail |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for o in outcomes:
        detail = o.detail.replace("|", "\\|").replace("\n", " ")[:160]
        if o.extra.get("rerun"):
            detail = f"(re-run {o.extra['rerun']}, after a fix) {detail}".strip()
        lines.append(f"| {o.notebook} | {o.outcome} | {o.stages} | {o.values} | {o.nondeterministic} | {detail} |")
    (RESULTS / "fidelity.md").write_text("\n".join(lines) + "\n")


def soorgeon_table(outcomes: list[Outcome], soorgeon_rows: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines: what each tool converted, built and reproduced on the same notebooks."""
    counts = Counter(o.outcome for o in outcomes)
    s: Counter[str] = Counter()
    for row in soorgeon_rows.values():
        s.update(k for k in ("refactored", "built", "reproduced") if row.get(k))
    varies = sum(bool(r.get("built") and r.get("nondeterministic")) for r in soorgeon_rows.values())
    return [
        "| tool | converted | built and ran | reproduced |",
        "| --- | ---: | ---: | ---: |",
        f"| nb2pipe | {len(outcomes) - counts['refused'] - counts['crashed']} | "
        f"{counts['reproduced'] + counts['diverged']} | {counts['reproduced']} |",
        f"| soorgeon + ploomber | {s['refactored']} | {s['built']} | {s['reproduced']} |",
        "",
        "nb2pipe: `nb2pipe verify` compares every value crossing a stage boundary (values that differ between two "
        "runs of the notebook itself are not held against it). soorgeon: `soorgeon refactor` then `ploomber build`; "
        "reproduced when the built tasks print the lines the notebook prints (in any order: ploomber picks its own; "
        "clock times masked) "
        f"({varies} of the built notebooks print something different on each run of the notebook itself, so "
        "they cannot count as reproduced).",
        "",
    ]


def rerun(venv: Path, paths: list[Path], scratch: Path) -> int:
    """Verify ``paths`` again and replace their rows in fidelity.json; the report says which rows were re-run."""
    data = json.loads((RESULTS / "fidelity.json").read_text())
    rows = {o["notebook"]: o for o in data["outcomes"]}
    for path in paths:
        outcome = fidelity(venv, path, scratch / _sha(path)[:16])
        outcome.extra["rerun"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print(f"{outcome.outcome:10} {outcome.seconds:6.1f}s {outcome.notebook} {outcome.detail[:120]}", flush=True)
        rows[outcome.notebook] = asdict(outcome)
    outcomes = [Outcome(**rows[o["notebook"]]) for o in data["outcomes"]]
    selection = {**{o.notebook: {"ok": True} for o in outcomes}, **data["excluded"]}
    write_report(outcomes, selection, data.get("soorgeon", {}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="only the first N corpus notebooks")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks processed at once (default 2)")
    parser.add_argument("--soorgeon", action="store_true", help="also run soorgeon + ploomber on the corpus")
    parser.add_argument("--select-only", action="store_true", help="only build the corpus (which notebooks run)")
    parser.add_argument("--report-only", action="store_true", help="re-render fidelity.md from fidelity.json")
    parser.add_argument(
        "--rerun",
        nargs="+",
        metavar="TEXT",
        help="verify again only the corpus notebooks whose name contains TEXT (after a fix) and update their rows "
        "in fidelity.json, marked as re-run; the other rows and soorgeon's stay as they were",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        data = json.loads((RESULTS / "fidelity.json").read_text())
        outcomes = [Outcome(**{**o, "detail": _nb2pipe_lines(o["detail"])}) for o in data["outcomes"]]
        selection = {**{o.notebook: {"ok": True} for o in outcomes}, **data["excluded"]}
        write_report(outcomes, selection, data.get("soorgeon", {}))
        return 0

    venv = ensure_venv("venv", CORPUS_REQUIREMENTS, editable=True)
    candidates = corpus_candidates()
    if args.rerun:  # rows of the last report: no new selection
        kept = {o["notebook"] for o in json.loads((RESULTS / "fidelity.json").read_text())["outcomes"]}
        chosen = [p for p in candidates if _short(p) in kept and any(t in _short(p) for t in args.rerun)]
        return rerun(venv, chosen, cache_dir() / "work")
    selection = select(venv, candidates, args.jobs)
    corpus = [p for p in candidates if selection[_short(p)]["ok"]]
    print(f"corpus: {len(corpus)} of {len(candidates)} candidate notebooks execute offline in time", file=sys.stderr)
    if args.select_only:
        for name, row in sorted(selection.items()):
            print(f"{'ok  ' if row['ok'] else 'skip'} {row['seconds']:6.1f}s {name} {row['why']}")
        return 0
    corpus = corpus[: args.limit] if args.limit else corpus
    scratch = cache_dir() / "work"

    def one(path: Path) -> Outcome:
        outcome = fidelity(venv, path, scratch / _sha(path)[:16])
        print(f"{outcome.outcome:10} {outcome.seconds:6.1f}s {outcome.notebook} {outcome.detail[:120]}", flush=True)
        return outcome

    soorgeon_rows: dict[str, Any] = {}
    svenv = (
        ensure_venv("soorgeon", (*SOORGEON_REQUIREMENTS, *CORPUS_REQUIREMENTS), editable=False)
        if args.soorgeon
        else None
    )

    def compare(path: Path) -> None:
        assert svenv is not None
        soorgeon_rows[_short(path)] = soorgeon(svenv, path, scratch / ("s-" + _sha(path)[:16]))
        print(f"soorgeon   {_short(path)} {soorgeon_rows[_short(path)]}", flush=True)

    # One pool for both tools: the same notebooks, in the same run, sharing the machine alike.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        ours = [pool.submit(one, path) for path in corpus]
        theirs = [pool.submit(compare, path) for path in corpus] if svenv is not None else []
        outcomes = [f.result() for f in ours]
        for f in theirs:
            f.result()
    soorgeon_rows = {_short(p): soorgeon_rows[_short(p)] for p in corpus if _short(p) in soorgeon_rows}
    write_report(outcomes, selection, soorgeon_rows)
    counts = Counter(o.outcome for o in outcomes)
    ok = not counts["crashed"] and not counts["diverged"] and counts["reproduced"] >= 0.9 * max(1, len(outcomes))
    print(f"fidelity: {dict(counts)}; report in {RESULTS / 'fidelity.md'}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
