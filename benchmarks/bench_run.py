"""How fast ``nb2pipe run`` is, next to a plain Python script and papermill, measured in the same run.

Run it from the repository root::

    python benchmarks/bench_run.py

1. First run: for every ``example_notebooks/*.ipynb``, the converted pipeline run from the command line with an
   empty store (``nb2pipe run DIR``), against the same code as a plain script (``python script.py``, the code
   cells concatenated) and against ``papermill`` on the notebook. Targets: run / script <= 1.3 and
   run / papermill <= 0.5. ``--rounds`` rounds (default 3), the three measured one after the other in each round;
   the ratios are of the best times, with the range of the per-round ratios, and CPU time (user + sys of the
   process and the children it waited for: workers, the kernel) next to the wall time.
2. Re-run with nothing changed: ``nb2pipe run NOTEBOOK`` a second time, end to end from the command line.
   Target: < 0.5 s. Best of 5.
3. Per-stage overhead of the local executor: a generated 100-stage chain of trivial stages, ``nb2pipe run``
   with an empty store minus the same code as a plain script, divided by 100. Target: < 20 ms. Best of 3.

4. Serialization of the values between stages (CPU time, best of 5): the runner's bundle (pickle 5, raw aligned
   buffers, memory-mapped when large) against ``.npy`` files for an array and Parquet (when pyarrow is installed)
   for DataFrames -- the measurements behind the choice of format in ``nb2pipe/runner/serialize.py``.
5. What keeping identity across stages costs a stage's write (CPU time, best of 5): the same outputs written with
   the references to the producer's objects (the lookup in what the stage read, the hash of an input an output was
   pulled out of) and without.

Prints Markdown tables and writes ``benchmarks/results/run.json``. Exit code 0 when every target is met.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
from nbformat import v4

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "example_notebooks"
RESULTS = ROOT / "benchmarks" / "results" / "run.json"
BIN = Path(sys.executable).parent
NB2PIPE = str(BIN / "nb2pipe")


#: CPU seconds (user + sys) of the children waited for by the last :func:`timed` call.
LAST_CPU = [0.0]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, setup: Callable[[], None] | None = None
) -> float:
    if setup:
        setup()
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    LAST_CPU[0] = _children_cpu() - cpu
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


def _cpu_min(fn: Callable[[], float], n: int) -> tuple[float, float]:
    """Best wall time and best CPU time of ``n`` calls of ``fn``."""
    walls, cpus = [], []
    for _ in range(n):
        walls.append(fn())
        cpus.append(LAST_CPU[0])
    return min(walls), min(cpus)


def best_cpu(fn: Callable[[], object]) -> float:
    """Best CPU time (user + sys of this process) of 5 calls of ``fn``, each after a collection."""
    best_s = float("inf")
    for _ in range(5):
        gc.collect()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        fn()
        after = resource.getrusage(resource.RUSAGE_SELF)
        best_s = min(best_s, after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime)
    return round(best_s, 4)


def serialization(work: Path) -> list[dict[str, object]]:
    """CPU time to write and read a value with the runner's bundle, ``.npy`` and Parquet (when installed)."""
    import numpy as np
    import pandas as pd

    from nb2pipe.runner import serialize

    rng = np.random.default_rng(0)
    n = 500_000
    values = {
        "array 80 MB (float64)": rng.random((4000, 2500)),
        "DataFrame 1M x 8 float64": pd.DataFrame(rng.random((1_000_000, 8)), columns=[f"c{i}" for i in range(8)]),
        "DataFrame 500k rows, mixed": pd.DataFrame(
            {
                "i": np.arange(n),
                "f": rng.random(n),
                "s": [f"s{i % 1000}" for i in range(n)],
                "cat": pd.Categorical(["a", "b"] * (n // 2)),
                "t": pd.date_range("2020-01-01", periods=n, freq="s"),
            }
        ),
    }
    try:
        import pyarrow  # noqa: F401

        parquet = True
    except ImportError:
        parquet = False
    rows: list[dict[str, object]] = []
    bundle, other = work / "values.bin", work / "value.other"
    for name, value in values.items():
        row: dict[str, object] = {
            "value": name,
            "bundle_write_s": best_cpu(lambda v=value: serialize.dump({"v": v}, bundle)),
            # Reading only maps the file; touching every page is part of the cost, so it is counted.
            "bundle_read_s": best_cpu(lambda: _touch(serialize.load(bundle)["v"])),
            "bundle_mb": round(bundle.stat().st_size / 1e6, 1),
        }
        if isinstance(value, np.ndarray):
            path = other.with_suffix(".npy")
            row["other"] = ".npy"
            row["other_write_s"] = best_cpu(lambda v=value, p=path: np.save(p, v))
            row["other_read_s"] = best_cpu(lambda p=path: _touch(np.load(p, mmap_mode="c")))
            row["other_mb"] = round(path.stat().st_size / 1e6, 1)
        elif parquet:
            path = other.with_suffix(".parquet")
            row["other"] = "parquet"
            row["other_write_s"] = best_cpu(lambda v=value, p=path: v.to_parquet(p))
            row["other_read_s"] = best_cpu(lambda p=path: _touch(pd.read_parquet(p)))
            row["other_mb"] = round(path.stat().st_size / 1e6, 1)
        rows.append(row)
    return rows


class _Model:
    """A fitted model's stand-in: some parameters in an array."""

    def __init__(self, seed: int) -> None:
        import numpy as np

        self.coef = np.random.default_rng(seed).random(6250)  # 50 KB


def identity_cost(work: Path) -> list[dict[str, object]]:
    """CPU time of a stage's write with the references that keep identity across stages, and without.

    A stage reads its inputs from a producer's bundle; its write then looks its outputs up in what it read (the
    producers' pickle memos) and hashes an input an output was pulled out of, to know it unchanged.
    """
    import numpy as np
    import pandas as pd

    from nb2pipe.runner import serialize

    cases: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], dict[str, Any]]]] = [
        (
            "new DataFrame from 300k records + 80 MB array",
            {"records": [{"a": i, "b": float(i)} for i in range(300_000)], "arr": np.random.rand(10_000_000)},
            lambda got: {"df": pd.DataFrame({"s": got["arr"][:100_000]}), "n": len(got["records"])},
        ),
        (
            "best = max(models) of 200 models (10 MB)",
            {"models": [_Model(i) for i in range(200)]},
            lambda got: {"best": max(got["models"], key=lambda m: m.coef[0])},
        ),
    ]
    rows: list[dict[str, object]] = []
    for name, inputs, stage in cases:
        producer = work / "producer"
        producer.mkdir(exist_ok=True)
        serialize.dump(inputs, producer / "values.bin")
        loader = serialize.Loader({"producer": producer})
        got = loader.load(producer / "values.bin", "producer")
        sources = {k: serialize.Source("producer", serialize.value_hash(v), v) for k, v in got.items()}
        outputs = stage(got)

        def plain(outputs: dict[str, Any] = outputs) -> object:
            return serialize.dump(outputs, work / "out.bin")

        def keeping_identity(
            outputs: dict[str, Any] = outputs,
            sources: dict[str, serialize.Source] = sources,
            loader: serialize.Loader = loader,
        ) -> object:
            return serialize.dump(outputs, work / "out.bin", sources, loader)

        rows.append({"case": name, "plain_write_s": best_cpu(plain), "identity_write_s": best_cpu(keeping_identity)})
    return rows


def _touch(value: Any) -> float:
    """Read every number of an array or DataFrame (a memory-mapped one is paged in here)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return float(value.sum())
    return float(sum(value[c].to_numpy().sum() for c in value.columns if value[c].dtype.kind in "if"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of run / script / papermill per notebook")
    args = parser.parse_args()
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
        papermill = [str(BIN / "papermill"), str(local), str(work / "out.ipynb"), "--no-progress-bar", "-k", "python3"]
        rounds: list[dict[str, float]] = []
        for _ in range(args.rounds):
            r: dict[str, float] = {}
            r["run"] = timed([NB2PIPE, "run", str(pipeline_dir), "-q"], cwd=work, env=env, setup=fresh_store)
            r["run_cpu"] = LAST_CPU[0]
            r["script"] = timed([sys.executable, str(script)], cwd=work, env=env)
            r["script_cpu"] = LAST_CPU[0]
            r["papermill"] = timed(papermill, cwd=work, env=env)
            r["papermill_cpu"] = LAST_CPU[0]
            rounds.append(r)
        t_run, t_script, t_pm = (min(r[k] for r in rounds) for k in ("run", "script", "papermill"))
        fresh_store()
        timed([NB2PIPE, "run", str(local), "-q"], cwd=work, env=env)
        t_rerun, cpu_rerun = _cpu_min(lambda n=local: timed([NB2PIPE, "run", str(n), "-q"], cwd=work, env=env), 5)
        vs_pm = [r["run"] / r["papermill"] for r in rounds]
        vs_script = [r["run"] / r["script"] for r in rounds]
        rows.append(
            {
                "notebook": nb.name,
                "run_s": round(t_run, 3),
                "script_s": round(t_script, 3),
                "papermill_s": round(t_pm, 3),
                "run_vs_script": round(t_run / t_script, 2),
                "run_vs_papermill": round(t_run / t_pm, 2),
                "rerun_s": round(t_rerun, 3),
                "rounds": args.rounds,
                "run_vs_papermill_range": [round(min(vs_pm), 2), round(max(vs_pm), 2)],
                "run_vs_script_range": [round(min(vs_script), 2), round(max(vs_script), 2)],
                "cpu_s": {k: round(min(r[f"{k}_cpu"] for r in rounds), 3) for k in ("run", "script", "papermill")},
                "rerun_cpu_s": round(cpu_rerun, 3),
            }
        )

    chain = work / "chain100.ipynb"
    chain_notebook(chain)
    subprocess.run([NB2PIPE, "convert", str(chain), "-o", str(work / "pipelines"), "-q"], check=True)
    chain_dir = work / "pipelines" / "chain100"
    chain_script = work / "chain100_script.py"
    chain_script.write_text(script_of(chain))
    t_chain, cpu_chain = _cpu_min(
        lambda: timed([NB2PIPE, "run", str(chain_dir), "-q"], cwd=work, env=env, setup=fresh_store), 3
    )
    t_chain_script, cpu_chain_script = _cpu_min(
        lambda: timed([sys.executable, str(chain_script)], cwd=work, env=env), 3
    )
    per_stage_ms = (t_chain - t_chain_script) / 100 * 1000
    per_stage_cpu_ms = (cpu_chain - cpu_chain_script) / 100 * 1000
    fresh_store()
    timed([NB2PIPE, "run", str(chain), "-q"], cwd=work, env=env)
    t_chain_rerun = best(5, lambda: timed([NB2PIPE, "run", str(chain), "-q"], cwd=work, env=env))

    targets = {
        "run_vs_script<=1.3": all(r["run_vs_script"] <= 1.3 for r in rows),
        "run_vs_papermill<=0.5": all(r["run_vs_papermill"] <= 0.5 for r in rows),
        "rerun<0.5s": all(r["rerun_s"] < 0.5 for r in rows) and t_chain_rerun < 0.5,
        "per_stage<20ms": per_stage_ms < 20,
    }
    identity = identity_cost(work)
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
            "per_stage_overhead_cpu_ms": round(per_stage_cpu_ms, 2),
            "rerun_s": round(t_chain_rerun, 3),
        },
        "serialization": serialization(work),
        "identity": identity,
        "targets": targets,
    }
    print("| notebook | nb2pipe run (first) | plain script | papermill | run/script | run/papermill | re-run |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        lo, hi = r["run_vs_papermill_range"]
        print(
            f"| {r['notebook']} | {r['run_s']:.2f} s | {r['script_s']:.2f} s | {r['papermill_s']:.2f} s | "
            f"{r['run_vs_script']:.2f} | {r['run_vs_papermill']:.2f} ({lo:.2f}-{hi:.2f}) | {r['rerun_s']:.2f} s |"
        )
    print("\nCPU time (user + sys, best round): " + "; ".join(f"{r['notebook']} {r['cpu_s']}" for r in rows))
    print("\n| value | bundle write | bundle read | other | other write | other read |")
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    for v in result["serialization"]:  # type: ignore[attr-defined]
        print(
            f"| {v['value']} | {v['bundle_write_s']} s | {v['bundle_read_s']} s | {v.get('other', '-')} | "
            f"{v.get('other_write_s', '-')} s | {v.get('other_read_s', '-')} s |"
        )
    print("\n| a stage's write | without references | with references (identity across stages) |")
    print("| --- | ---: | ---: |")
    for row in identity:
        print(f"| {row['case']} | {row['plain_write_s']} s | {row['identity_write_s']} s |")
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
