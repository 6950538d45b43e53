"""How fast ``nb2pipe convert`` is, alone and next to ``jupyter nbconvert --to script``.

Run it as a plain script from the repository root::

    python benchmarks/bench_convert.py

1. Generates a synthetic tagged notebook (1,000 code cells in 200 stages, nbformat 4.5 with cell ids)
   whose cells pass variables forward the way real analyses do, and times ``nb2pipe convert`` on it
   through the CLI (wall time of the subprocess, best of 3) against a 2 s target: PASS or FAIL. The CPU time
   of each run (user + system, from ``getrusage(RUSAGE_CHILDREN)``) is reported too, with its own PASS or FAIL
   against the same target: on a shared machine the wall time also counts waiting for a core, the CPU time
   does not.
2. Times ``nb2pipe convert NB -o DIR`` and ``jupyter nbconvert --to script NB --output-dir DIR`` on
   every ``example_notebooks/*.ipynb`` and on the synthetic notebook, best of 5 each, in the same run;
   ratio = nbconvert / nb2pipe, so > 1 means nb2pipe is faster.
3. Prints the results as Markdown tables and writes them as JSON to ``benchmarks/results/convert.json``.

Only the standard library and nbformat are used. The exit code is 0 when the target is met and every
command succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat import v4

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "benchmarks" / "results" / "convert.json"
EXAMPLES = ROOT / "example_notebooks"
SYNTHETIC_NAME = "synthetic_pipeline"

HELPERS = '''\
import math
import statistics


class Record:
    """A small mutable object, like the models and reports real notebooks pass around."""

    def __init__(self, name, weight=1.0):
        self.name = name
        self.weight = weight
        self.value = 0.0
        self.history = []


def scale(xs, k):
    return [x * k for x in xs[-40:]]


def summarize(xs):
    xs = list(xs)
    return {"n": len(xs), "mean": statistics.fmean(xs) if xs else 0.0}
'''


# --------------------------------------------------------------------------------------------------
# The synthetic notebook


def _stage_cells(s: int, rng: random.Random) -> list[str]:
    """Five cells for stage *s* (> 0): each reads a couple of names bound by earlier stages."""

    def earlier() -> int:
        # Mostly recent stages, sometimes one far back, like a notebook that reuses an early table.
        if rng.random() < 0.8:
            return rng.randrange(max(0, s - 8), s)
        return rng.randrange(0, s)

    a, b, c = earlier(), earlier(), earlier()
    k = rng.choice(["0.5", "0.9", "1.1", "1.25"])
    threshold = rng.choice(["0", "0.5", "1.0"])
    return [
        f"rows_{s} = scale(rows_{a}, {k}) + [len(cfg_{b})]\n"
        f'cfg_{s} = {{"stage": {s}, "source": {a}, "total": sum(rows_{s})}}',
        f'rows_{s}.append(summarize(rows_{s})["mean"])\n'
        f'cfg_{s}["peak"] = max(rows_{s})\n'
        f'rec_{s} = Record("s{s}", weight=score_{b})\n'
        f'rec_{s}.value = cfg_{s}["total"] / (1 + len(rows_{s}))',
        f"feat_{s} = [round(x * rec_{c}.value, 3) for x in rows_{s} if x > {threshold}]\n"
        f"totals_{s} = {{key: v for key, v in cfg_{b}.items() if isinstance(v, (int, float))}}\n"
        f'totals_{s}["n_feat"] = len(feat_{s})',
        f"def combine_{s}(xs, extra):\n"
        f"    acc = 0.0\n"
        f"    for x in xs:\n"
        f"        acc += math.sqrt(abs(x))\n"
        f"    return acc / (1 + len(xs)) + extra\n"
        f"\n"
        f'score_{s} = combine_{s}(feat_{s}, totals_{s}.get("peak", 0.0) / 1000)\n'
        f"rec_{s}.history.append(score_{s})\n"
        f"rec_{s}.weight *= 1 + score_{a} / 100",
        f"summary_{s} = summarize(feat_{s} + rec_{s}.history)\n"
        f'summary_{s}["score"] = score_{s}\n'
        f"print(f\"stage {s}: n={{summary_{s}['n']}} score={{score_{s}:.3f}}\")",
    ]


def _first_stage_cells() -> list[str]:
    return [
        HELPERS,
        'rows_0 = [float(i) for i in range(20)]\ncfg_0 = {"stage": 0, "total": sum(rows_0)}',
        'rec_0 = Record("s0")\nrec_0.value = 1.5\nscore_0 = 1.0',
        "feat_0 = [x / 2 for x in rows_0]\ntotals_0 = dict(cfg_0)",
        "summary_0 = summarize(feat_0)\nsummary_0",
    ]


def synthetic_sources(cells: int, stages: int, seed: int = 2024) -> list[list[str]]:
    """The code of each stage's cells (*cells* in all, spread evenly over *stages*)."""
    if stages < 1 or cells < stages * 5 or cells % stages:
        raise SystemExit(f"need a multiple of the stage count, >= 5 per stage: {cells}/{stages}")
    per_stage = cells // stages
    rng = random.Random(seed)
    out: list[list[str]] = []
    for s in range(stages):
        body = _first_stage_cells() if s == 0 else _stage_cells(s, rng)
        # Stages larger than 5 cells get extra cells that derive a little more from the stage.
        body += [f'summary_{s}["extra_{j}"] = len(feat_{s}) * {j}' for j in range(per_stage - len(body))]
        out.append(body)
    return out


def make_synthetic_notebook(path: Path, cells: int, stages: int) -> dict[str, object]:
    """Write the synthetic notebook to *path*; return a description of it."""
    sources = synthetic_sources(cells, stages)
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    intro = f"# Synthetic pipeline\n{cells} code cells in {stages} stages."
    nb.cells.append(v4.new_markdown_cell(intro, id="intro"))
    for s, body in enumerate(sources):
        for i, code in enumerate(body):
            cell = v4.new_code_cell(code, id=f"s{s:03d}-c{i}")  # stable ids: the same file every run
            if i == 0:
                cell.metadata["tags"] = [f"stage:s{s:03d}"]
            nb.cells.append(cell)
    nbformat.validate(nb)
    assert (nb.nbformat, nb.nbformat_minor) >= (4, 5) and all("id" in c for c in nb.cells)
    nbformat.write(nb, str(path))
    _check_runs(sources)
    return {
        "path": path.name,
        "code_cells": sum(len(b) for b in sources),
        "stages": stages,
        "bytes": path.stat().st_size,
        "nbformat": f"{nb.nbformat}.{nb.nbformat_minor}",
    }


def _check_runs(sources: list[list[str]]) -> None:
    """Run the notebook's code top to bottom, so the benchmark input is a notebook that works."""
    code = "\n\n".join(cell for body in sources for cell in body)
    namespace: dict[str, object] = {"__name__": "__synthetic__"}
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        exec(compile(code, "<synthetic notebook>", "exec"), namespace)


# --------------------------------------------------------------------------------------------------
# Timing


def _tool(name: str) -> str:
    """The console script *name* next to this Python (the venv), else on PATH."""
    local = Path(sys.executable).with_name(name)
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed (looked next to {sys.executable} and on PATH)")
    return found


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run *cmd*; its wall time, its CPU time (user + system, the process and its children) and the result."""
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start, _children_cpu() - cpu, proc


def best_of(repeat: int, make_cmd: Callable[[int], list[str]], label: str) -> dict[str, object]:
    """Run ``make_cmd(run_index)`` *repeat* times; best wall and CPU times, or the error of a failed run."""
    times: list[float] = []
    cpu_times: list[float] = []
    for i in range(repeat):
        elapsed, cpu, proc = _run(make_cmd(i))
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            return {
                "ok": False,
                "best_s": None,
                "times_s": times,
                "best_cpu_s": None,
                "cpu_times_s": cpu_times,
                "error": f"{label} exited {proc.returncode}: {err[-1] if err else ''}",
            }
        times.append(elapsed)
        cpu_times.append(cpu)
    return {
        "ok": True,
        "best_s": min(times),
        "times_s": times,
        "best_cpu_s": min(cpu_times),
        "cpu_times_s": cpu_times,
        "error": None,
    }


def _version(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return (proc.stdout or proc.stderr).strip().splitlines()[-1] if proc.returncode == 0 else "?"


def _fmt(seconds: object) -> str:
    return f"{seconds:.3f}" if isinstance(seconds, float) else "error"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=1000, help="code cells in the synthetic notebook")
    parser.add_argument("--stages", type=int, default=200, help="stages in the synthetic notebook")
    parser.add_argument("--target", type=float, default=2.0, help="seconds, for PASS/FAIL")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON output file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    nb2pipe = _tool("nb2pipe")
    jupyter = _tool("jupyter")
    work = Path(tempfile.mkdtemp(prefix="nb2pipe-bench-"))
    try:
        synthetic = work / f"{SYNTHETIC_NAME}.ipynb"
        described = make_synthetic_notebook(synthetic, args.cells, args.stages)
        print(
            f"synthetic notebook: {described['code_cells']} code cells, {described['stages']} "
            f"stages, {described['bytes']} bytes, nbformat {described['nbformat']}"
        )

        # 1. The target: nb2pipe convert on the synthetic notebook, best of 3.
        target_run = best_of(
            3,
            lambda i: [nb2pipe, "convert", str(synthetic), "-o", str(work / "target" / str(i))],
            "nb2pipe convert",
        )
        best = target_run["best_s"]
        passed = bool(target_run["ok"]) and isinstance(best, float) and best < args.target
        # On a loaded machine the wall time also counts waiting for a core: the CPU time says what an idle one would.
        best_cpu = target_run["best_cpu_s"]
        passed_cpu = bool(target_run["ok"]) and isinstance(best_cpu, float) and best_cpu < args.target

        # 2. nb2pipe convert against jupyter nbconvert --to script, best of 5 each.
        notebooks = [*sorted(EXAMPLES.glob("*.ipynb")), synthetic]
        rows: list[dict[str, object]] = []
        for nb in notebooks:
            out = work / "compare" / nb.stem
            ours = best_of(
                5,
                lambda i, nb=nb, out=out: [
                    nb2pipe,
                    "convert",
                    str(nb),
                    "-o",
                    str(out / f"nb2pipe-{i}"),
                ],
                "nb2pipe convert",
            )
            theirs = best_of(
                5,
                lambda i, nb=nb, out=out: [
                    jupyter,
                    "nbconvert",
                    "--to",
                    "script",
                    str(nb),
                    "--output-dir",
                    str(out / f"nbconvert-{i}"),
                ],
                "jupyter nbconvert",
            )
            a, b = ours["best_s"], theirs["best_s"]
            ratio = b / a if isinstance(a, float) and isinstance(b, float) and a > 0 else None
            rows.append(
                {
                    "notebook": nb.name if nb != synthetic else f"{nb.name} (synthetic)",
                    "nb2pipe_s": a,
                    "nbconvert_s": b,
                    "ratio_nbconvert_over_nb2pipe": ratio,
                    "nb2pipe_times_s": ours["times_s"],
                    "nbconvert_times_s": theirs["times_s"],
                    "nb2pipe_cpu_s": ours["best_cpu_s"],
                    "nbconvert_cpu_s": theirs["best_cpu_s"],
                    "nb2pipe_cpu_times_s": ours["cpu_times_s"],
                    "nbconvert_cpu_times_s": theirs["cpu_times_s"],
                    "errors": [e for e in (ours["error"], theirs["error"]) if e],
                }
            )
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    results = {
        "benchmark": "convert",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "versions": {
            "nb2pipe": _version([nb2pipe, "--version"]),
            "nbconvert": _version([jupyter, "nbconvert", "--version"]),
            "nbformat": nbformat.__version__,
        },
        "synthetic_notebook": described,
        "target": {
            "command": "nb2pipe convert SYNTHETIC -o DIR",
            "repeat": 3,
            "target_s": args.target,
            "best_s": best,
            "times_s": target_run["times_s"],
            "best_cpu_s": target_run["best_cpu_s"],
            "cpu_times_s": target_run["cpu_times_s"],
            "load_average": os.getloadavg(),
            "error": target_run["error"],
            "pass": passed,
            "pass_cpu": passed_cpu,
        },
        "comparison": {
            "repeat": 5,
            "commands": [
                "nb2pipe convert NB -o DIR",
                "jupyter nbconvert --to script NB --output-dir DIR",
            ],
            "ratio": "nbconvert_s / nb2pipe_s (> 1 means nb2pipe is faster)",
            "rows": rows,
        },
    }

    verdict = "PASS" if passed else "FAIL"
    print()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print("| benchmark | best of 3, wall (s) | best of 3, CPU (s) | target (s) | result, wall | result, CPU |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    print(
        f"| nb2pipe convert, {described['code_cells']} cells / {described['stages']} stages "
        f"| {_fmt(best)} | {_fmt(best_cpu)} | {args.target:.1f} | {verdict} | {'PASS' if passed_cpu else 'FAIL'} |"
    )
    if target_run["error"]:
        print(f"\n{target_run['error']}")
    print()
    print(
        "| notebook | nb2pipe convert, wall (CPU) (s) | nbconvert --to script, wall (CPU) (s) "
        "| nbconvert / nb2pipe, wall (CPU) |"
    )
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        ratio = row["ratio_nbconvert_over_nb2pipe"]
        a_cpu, b_cpu = row["nb2pipe_cpu_s"], row["nbconvert_cpu_s"]
        cpu_ratio = b_cpu / a_cpu if isinstance(a_cpu, float) and isinstance(b_cpu, float) and a_cpu > 0 else None
        print(
            f"| {row['notebook']} | {_fmt(row['nb2pipe_s'])} ({_fmt(a_cpu)}) "
            f"| {_fmt(row['nbconvert_s'])} ({_fmt(b_cpu)}) "
            f"| {f'{ratio:.2f}' if isinstance(ratio, float) else 'n/a'} "
            f"({f'{cpu_ratio:.2f}' if isinstance(cpu_ratio, float) else 'n/a'}) |"
        )
    for row in rows:
        for err in row["errors"]:  # type: ignore[attr-defined]
            print(f"\n{row['notebook']}: {err}")

    write_json_atomically(args.results, results)
    print(f"\nwrote {args.results}")
    ok = passed and all(not row["errors"] for row in rows)
    return 0 if ok else 1


def write_json_atomically(path: Path, data: object) -> None:
    """Write *data* to *path* so that readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    sys.exit(main())
