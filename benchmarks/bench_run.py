"""How fast ``nb2pipe run`` is, next to a plain Python script and papermill, measured in the same run.

Run it from the repository root::

    python benchmarks/bench_run.py

1. First run: for every ``example_notebooks/*.ipynb``, the converted pipeline run from the command line with an
   empty store (``nb2pipe run DIR``), against the same code as a plain script (``python script.py``, the code
   cells concatenated) and against ``papermill`` on the notebook. Targets: run / script <= 1.3 and
   run / papermill <= 0.5. Best of 3 each.
2. Re-run with nothing changed: ``nb2pipe run NOTEBOOK`` a second time, end to end from the command line.
   Target: < 0.5 s. Best of 5.
3. Per-stage overhead of the local executor: a generated 100-stage chain of trivial stages, ``nb2pipe run``
   with an empty store minus the same code as a plain script, divided by 100. Target: < 20 ms. Best of 3.

Prints a Markdown table and writes ``benchmarks/results/run.json``. Exit code 0 when every target is met.
"""

from __future__ import annotations

import json
import os
import platform
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
EXAMPLES = ROOT / "example_notebooks"
RESULTS = ROOT / "benchmarks" / "results" / "run.json"
BIN = Path(sys.executable).parent
NB2PIPE = str(BIN / "nb2pipe")


def timed(
    cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, setup: Callable[[], None] | None = None
) -> float:
    if setup:
        setup()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def best(n: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(n))


def script_of(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    lines = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "skip" not in cell.metadata.get("tags", []):
            lines.extend(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!")))
            lines.append("")
    return "\n".join(lines)


def chain_notebook(path: Path, stages: int = 100) -> None:
    nb = v4.new_notebook()
    nb.nbformat, nb.nbformat_minor = 4, 5
    for i in range(stages):
        source = "x0 = 0" if i == 0 else f"x{i} = x{i - 1} + 1"
        cell = v4.new_code_cell(source)
        cell.metadata["tags"] = [f"stage:s{i}"]
        cell.id = f"c{i}"
        nb.cells.append(cell)
    nb.cells.append(v4.new_code_cell(f"print(x{stages - 1})"))
    nb.cells[-1].id = "last"
    nbformat.write(nb, path)


def main() -> int:
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="nb2pipe-bench-run-"))
    env = {**os.environ, "NB2PIPE_HOME": str(work / "store"), "MPLBACKEND": "Agg"}

    def fresh_store() -> None:
        shutil.rmtree(work / "store", ignore_errors=True)

    rows = []
    for nb in sorted(EXAMPLES.glob("*.ipynb")):
        local = work / nb.name
        shutil.copy(nb, local)
        subprocess.run([NB2PIPE, "convert", str(local), "-o", str(work / "pipelines"), "-q"], check=True)
        pipeline_dir = work / "pipelines" / local.stem
        script = work / f"{local.stem}_script.py"
        script.write_text(script_of(local))
        t_run = best(
            3, lambda p=pipeline_dir: timed([NB2PIPE, "run", str(p), "-q"], cwd=work, env=env, setup=fresh_store)
        )
        t_script = best(3, lambda s=script: timed([sys.executable, str(s)], cwd=work, env=env))
        t_pm = best(
            3,
            lambda n=local: timed(
                [str(BIN / "papermill"), str(n), str(work / "out.ipynb"), "--no-progress-bar", "-k", "python3"],
                cwd=work,
                env=env,
            ),
        )
        fresh_store()
        timed([NB2PIPE, "run", str(local), "-q"], cwd=work, env=env)
        t_rerun = best(5, lambda n=local: timed([NB2PIPE, "run", str(n), "-q"], cwd=work, env=env))
        rows.append(
            {
                "notebook": nb.name,
                "run_s": round(t_run, 3),
                "script_s": round(t_script, 3),
                "papermill_s": round(t_pm, 3),
                "run_vs_script": round(t_run / t_script, 2),
                "run_vs_papermill": round(t_run / t_pm, 2),
                "rerun_s": round(t_rerun, 3),
            }
        )

    chain = work / "chain100.ipynb"
    chain_notebook(chain)
    subprocess.run([NB2PIPE, "convert", str(chain), "-o", str(work / "pipelines"), "-q"], check=True)
    chain_dir = work / "pipelines" / "chain100"
    chain_script = work / "chain100_script.py"
    chain_script.write_text(script_of(chain))
    t_chain = best(3, lambda: timed([NB2PIPE, "run", str(chain_dir), "-q"], cwd=work, env=env, setup=fresh_store))
    t_chain_script = best(3, lambda: timed([sys.executable, str(chain_script)], cwd=work, env=env))
    per_stage_ms = (t_chain - t_chain_script) / 100 * 1000
    fresh_store()
    timed([NB2PIPE, "run", str(chain), "-q"], cwd=work, env=env)
    t_chain_rerun = best(5, lambda: timed([NB2PIPE, "run", str(chain), "-q"], cwd=work, env=env))

    targets = {
        "run_vs_script<=1.3": all(r["run_vs_script"] <= 1.3 for r in rows),
        "run_vs_papermill<=0.5": all(r["run_vs_papermill"] <= 0.5 for r in rows),
        "rerun<0.5s": all(r["rerun_s"] < 0.5 for r in rows) and t_chain_rerun < 0.5,
        "per_stage<20ms": per_stage_ms < 20,
    }
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            # Other work on the machine skews every wall time; the ratios are measured in the same minutes.
            "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
        "notebooks": rows,
        "chain100": {
            "run_s": round(t_chain, 3),
            "script_s": round(t_chain_script, 3),
            "per_stage_overhead_ms": round(per_stage_ms, 2),
            "rerun_s": round(t_chain_rerun, 3),
        },
        "targets": targets,
    }
    print("| notebook | nb2pipe run (first) | plain script | papermill | run/script | run/papermill | re-run |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['notebook']} | {r['run_s']:.2f} s | {r['script_s']:.2f} s | {r['papermill_s']:.2f} s | "
            f"{r['run_vs_script']:.2f} | {r['run_vs_papermill']:.2f} | {r['rerun_s']:.2f} s |"
        )
    c = result["chain100"]
    print(
        f"\n100-stage chain: {c['run_s']:.2f} s (plain script {c['script_s']:.2f} s) -> "
        f"{c['per_stage_overhead_ms']:.1f} ms per stage; re-run {c['rerun_s']:.2f} s"
    )
    for name, ok in targets.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
