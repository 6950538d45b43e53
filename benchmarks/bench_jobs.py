"""How fast tracked notebook jobs are, next to bare papermill, measured in the same run.

Run it as a plain script from the repository root::

    python benchmarks/bench_jobs.py [--repeat 5]

1. Cold run: ``nb2pipe job run NB -p x 2`` against ``papermill NB OUT -p x 2`` on a trivial notebook, both as
   command-line processes, interleaved, median of ``--repeat``. Target: nb2pipe / papermill <= 1.10.
2. Warm pool: ``nb2pipe.jobs.run(NB, pool=pool)`` in one process with a warm :class:`KernelPool` (refilled before
   each run), median. Targets: <= 0.3 s, and papermill (command line, from 1.) / warm run >= 5.
   The in-process ``papermill.execute_notebook`` time is shown too.
3. Ten runs: ``nb2pipe job sweep NB -p x 1,...,10 --parallel 2`` against ten sequential ``papermill`` commands.
   Target: papermill / sweep >= 1.6.
4. Ten reruns: ``nb2pipe job rerun ID1 ... ID10 --parallel 2`` (a kernel pool, as in a sweep) against the same ten
   sequential ``papermill`` commands. Target: papermill / reruns >= 1.6.
5. Scheduled runs, fire to finished: a real :class:`~nb2pipe.scheduler.Scheduler` (real clock, in a thread, as
   ``nb2pipe scheduler`` and the Jupyter server host it) fires the notebook every 20 s; fire to finished is the
   run's recorded end minus its fire time. Warm (two standbys, the default) and cold (``standbys=0``), medians of
   ``--repeat`` fires, against the ``papermill`` command of 1. (what cron starting papermill at the fire would take).
   Targets: warm <= 0.3 s and papermill / warm >= 5.
6. ``job list`` over a store of 100,000 runs (three parameters each, metrics on every tenth): the API call
   (``nb2pipe.jobs.list``, reaping included) best of 5, unfiltered and filtered by status and by parameter value,
   and the ``nb2pipe job list`` command end to end. Target: the API call < 100 ms.

Prints a Markdown table of ratios and writes everything to ``benchmarks/results/jobs.json``. Exit code 0 when
every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
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
DEFAULT_RESULTS = ROOT / "benchmarks" / "results" / "jobs.json"
BIN = Path(sys.executable).parent
NB2PIPE = [str(BIN / "nb2pipe")]
PAPERMILL = [str(BIN / "papermill")]


def trivial_notebook(folder: Path) -> Path:
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, v4.new_code_cell("y = x * 2\nprint(y)")]
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i}"
    path = folder / "trivial.ipynb"
    nbformat.write(nb, path)
    return path


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def stats(times: list[float]) -> dict[str, Any]:
    return {"median_s": statistics.median(times), "best_s": min(times), "times_s": times}


def bench_cold(nb: Path, work: Path, env: dict[str, str], repeat: int) -> dict[str, Any]:
    ours, theirs = [], []
    for i in range(repeat + 1):  # the first pair warms the OS caches and is not counted
        a = timed([*NB2PIPE, "job", "run", str(nb), "-p", "x", "2"], env)
        b = timed([*PAPERMILL, str(nb), str(work / f"out{i}.ipynb"), "-p", "x", "2", "--no-progress-bar"], env)
        if i:
            ours.append(a)
            theirs.append(b)
    result = {"nb2pipe_job_run": stats(ours), "papermill": stats(theirs)}
    result["ratio_nb2pipe_over_papermill"] = result["nb2pipe_job_run"]["median_s"] / result["papermill"]["median_s"]
    return result


def bench_warm(nb: Path, work: Path, repeat: int) -> dict[str, Any]:
    import papermill

    from nb2pipe import jobs
    from nb2pipe.jobs.pool import KernelPool

    home = work / "warm-home"
    in_process = []
    for i in range(repeat + 1):
        start = time.perf_counter()
        papermill.execute_notebook(str(nb), str(work / f"pm{i}.ipynb"), {"x": 2}, progress_bar=False)
        if i:
            in_process.append(time.perf_counter() - start)
    warm = []
    with KernelPool("python3", size=1, cwd=work) as pool:
        for i in range(repeat + 1):
            pool.wait_ready()
            time.sleep(0.5)  # let the new kernel finish importing before the clock starts
            start = time.perf_counter()
            result = jobs.run(nb, {"x": 2}, pool=pool, home=home)
            elapsed = time.perf_counter() - start
            if result.status != "succeeded":
                raise SystemExit(f"warm run {result.id} {result.status}: {result.detail}")
            if i:  # the first run pays for importing papermill and nbclient in this process
                warm.append(elapsed)
    return {"warm_pool_run": stats(warm), "papermill_in_process": stats(in_process)}


def bench_ten(nb: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    values = ",".join(str(i) for i in range(1, 11))
    sweep = timed([*NB2PIPE, "job", "sweep", str(nb), "-p", "x", values, "--parallel", "2"], env)
    start = time.perf_counter()
    for i in range(10):
        timed([*PAPERMILL, str(nb), str(work / f"seq{i}.ipynb"), "-p", "x", str(i), "--no-progress-bar"], env)
    sequential = time.perf_counter() - start
    return {"sweep_parallel_2_s": sweep, "papermill_sequential_s": sequential, "ratio": sequential / sweep}


def bench_rerun(nb: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """``nb2pipe job rerun`` of ten recorded runs with ``--parallel 2`` (a kernel pool), as one command."""
    home = work / "rerun-home"
    renv = {**env, "NB2PIPE_HOME": str(home)}
    for i in range(10):
        timed([*NB2PIPE, "job", "run", str(nb), "-p", "x", str(i)], renv)
    out = subprocess.run([*NB2PIPE, "job", "list", "--json", "-n", "10"], env=renv, capture_output=True, text=True)
    ids = [r["id"] for r in json.loads(out.stdout)]
    return {"rerun_parallel_2_s": timed([*NB2PIPE, "job", "rerun", *ids, "--parallel", "2"], renv)}


def bench_scheduled(nb: Path, work: Path, standbys: int, fires: int) -> dict[str, Any]:
    """A real scheduler (real clock, in a thread, as ``nb2pipe scheduler`` and the Jupyter server host it) fires a
    notebook every 20 s; each run's fire-to-finished time is its recorded end minus its fire time. The first fire
    is not counted (a standby may not be ready for a schedule added moments before)."""
    from nb2pipe.scheduler import Scheduler, ScheduleStore

    home = work / f"scheduled-{standbys}"
    store = ScheduleStore.open(home)
    store.add(name="every20s", kind="job", target=str(nb.absolute()), cron="* * * * * */20", timezone="UTC",
              parameters={"x": 2}, catchup="none", max_concurrent=1, retries=0, retry_delay=0.0, timeout=None,
              now=time.time())  # fmt: skip
    scheduler = Scheduler(home, standbys=standbys)
    scheduler.start()
    query = (
        "SELECT a.fire_time, r.ended_at, r.status FROM schedule_attempts a JOIN runs r ON r.id = a.run_id "
        "WHERE r.ended_at IS NOT NULL ORDER BY a.fire_time"
    )
    try:
        deadline = time.monotonic() + 30 * (fires + 2)
        while len(store.runs.query(query)) < fires + 1 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        scheduler.stop(timeout=30)
        scheduler.drain(timeout=60)
        handed = getattr(getattr(scheduler.launcher, "standbys", None), "handed", 0)
        scheduler.close()
    rows = store.runs.query(query)[1 : fires + 1]
    store.close()
    if len(rows) < fires or any(r["status"] != "succeeded" for r in rows):
        raise SystemExit(f"scheduled runs (standbys={standbys}) did not all succeed: {[tuple(r) for r in rows]}")
    return {**stats([r["ended_at"] - r["fire_time"] for r in rows]), "runs_handed_to_a_standby": handed}


def build_store(home: Path, runs: int) -> None:
    """A store of ``runs`` finished job runs, written directly (the schema is the real one, migrations applied)."""
    from nb2pipe.runstore import RunStore, to_json

    rng = random.Random(0)
    start = time.time() - runs * 60.0
    statuses = ["succeeded"] * 8 + ["failed", "timed-out"]
    with RunStore(home) as store, store.transaction() as db:
        rows, params, metrics = [], [], []
        for i in range(runs):
            run_id = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(start + i * 60))}-{i:06x}"
            p = {"lr": rng.choice([0.1, 0.01, 0.001]), "depth": rng.randint(1, 12), "name": f"exp{i % 50}"}
            created = start + i * 60
            rows.append(
                (
                    run_id,
                    "job",
                    f"/work/notebooks/nb{i % 20}.ipynb",
                    to_json(p),
                    rng.choice(statuses),
                    created,
                    created,
                    created + 2,
                    created + 2,
                    "host",
                    "user",
                    "python3",
                )
            )
            params += [(run_id, k, to_json(v)) for k, v in p.items()]
            if i % 10 == 0:
                metrics.append((run_id, "acc", to_json(rng.random()), created + 2))
        db.executemany(
            "INSERT INTO runs (id, kind, target, parameters, status, created_at, started_at, ended_at, heartbeat_at, "
            "host, user, kernel) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.executemany("INSERT INTO run_parameters VALUES (?, ?, ?)", params)
        db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", metrics)
    with RunStore(home) as store:
        store.query("ANALYZE")


def best_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_list(work: Path, env: dict[str, str], runs: int) -> dict[str, Any]:
    from nb2pipe import jobs

    home = work / "big-home"
    start = time.perf_counter()
    build_store(home, runs)
    built = time.perf_counter() - start
    out: dict[str, Any] = {"runs": runs, "build_s": built}
    out["api_latest_20_s"] = best_of(lambda: jobs.list(home=home))
    out["api_status_failed_s"] = best_of(lambda: jobs.list(home=home, status="failed"))
    out["api_parameter_lr_s"] = best_of(lambda: jobs.list(home=home, parameters={"lr": "0.001"}))
    out["api_parameter_name_2pct_s"] = best_of(lambda: jobs.list(home=home, parameters={"name": "exp7"}))
    out["api_parameter_no_match_s"] = best_of(lambda: jobs.list(home=home, parameters={"name": "none"}))
    out["api_two_parameters_s"] = best_of(lambda: jobs.list(home=home, parameters={"name": "exp7", "lr": "0.1"}))
    out["api_notebook_s"] = best_of(lambda: jobs.list(home=home, notebook="nb7.ipynb"))
    out["cli_job_list_s"] = min(timed([*NB2PIPE, "job", "list", "--home", str(home)], env) for _ in range(3))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the job-list store")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="nb2pipe-bench-jobs-") as tmp:
        work = Path(tmp)
        nb = trivial_notebook(work)
        env = {**os.environ, "NB2PIPE_HOME": str(work / "home")}
        os.chdir(work)
        cold = bench_cold(nb, work, env, args.repeat)
        warm = bench_warm(nb, work, args.repeat)
        ten = bench_ten(nb, work, env)
        ten.update(bench_rerun(nb, work, env))
        ten["rerun_ratio"] = ten["papermill_sequential_s"] / ten["rerun_parallel_2_s"]
        scheduled = {
            "warm": bench_scheduled(nb, work, standbys=2, fires=args.repeat),
            "cold": bench_scheduled(nb, work, standbys=0, fires=args.repeat),
        }
        listing = bench_list(work, env, args.runs)

    papermill_cli = cold["papermill"]["median_s"]
    warm_s = warm["warm_pool_run"]["median_s"]
    targets = {
        "cold run <= 1.10 x papermill": cold["ratio_nb2pipe_over_papermill"] <= 1.10,
        "warm-pool run <= 0.3 s": warm_s <= 0.3,
        "warm-pool run >= 5 x faster than papermill": papermill_cli / warm_s >= 5,
        "10 runs --parallel 2 >= 1.6 x faster than sequential papermill": ten["ratio"] >= 1.6,
        "rerun of 10 runs --parallel 2 >= 1.6 x faster than sequential papermill": ten["rerun_ratio"] >= 1.6,
        "scheduled run, fire to finished, warm <= 0.3 s": scheduled["warm"]["median_s"] <= 0.3,
        "scheduled run warm >= 5 x faster than papermill": papermill_cli / scheduled["warm"]["median_s"] >= 5,
        "job list over 100,000 runs < 100 ms": max(v for k, v in listing.items() if k.startswith("api_")) < 0.1,
    }
    rows = [
        (
            "cold `job run` vs `papermill` (median)",
            f"{cold['nb2pipe_job_run']['median_s']:.2f} s",
            f"{papermill_cli:.2f} s",
            f"{cold['ratio_nb2pipe_over_papermill']:.2f} (nb2pipe / papermill)",
        ),
        (
            "warm-pool run vs `papermill` (median)",
            f"{warm_s:.3f} s",
            f"{papermill_cli:.2f} s",
            f"{papermill_cli / warm_s:.1f}x faster",
        ),
        (
            "warm-pool run vs in-process `execute_notebook`",
            f"{warm_s:.3f} s",
            f"{warm['papermill_in_process']['median_s']:.2f} s",
            f"{warm['papermill_in_process']['median_s'] / warm_s:.1f}x faster",
        ),
        (
            "10 runs: `sweep --parallel 2` vs 10 x `papermill`",
            f"{ten['sweep_parallel_2_s']:.1f} s",
            f"{ten['papermill_sequential_s']:.1f} s",
            f"{ten['ratio']:.2f}x faster",
        ),
        (
            "10 reruns: `job rerun ID... --parallel 2` vs 10 x `papermill`",
            f"{ten['rerun_parallel_2_s']:.1f} s",
            f"{ten['papermill_sequential_s']:.1f} s",
            f"{ten['rerun_ratio']:.2f}x faster",
        ),
        (
            "scheduled run, fire to finished: warm (standby) vs `papermill`",
            f"{scheduled['warm']['median_s']:.3f} s",
            f"{papermill_cli:.2f} s",
            f"{papermill_cli / scheduled['warm']['median_s']:.1f}x faster",
        ),
        (
            "scheduled run, fire to finished: cold (`--standbys 0`) vs `papermill`",
            f"{scheduled['cold']['median_s']:.2f} s",
            f"{papermill_cli:.2f} s",
            f"{scheduled['cold']['median_s'] / papermill_cli:.2f} (nb2pipe / papermill)",
        ),
    ]
    print("| benchmark | nb2pipe | papermill | ratio |\n| --- | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    labels = {
        "api_latest_20_s": "latest 20",
        "api_status_failed_s": "--status failed",
        "api_parameter_lr_s": "-p lr 0.001 (a third)",
        "api_parameter_name_2pct_s": "-p name exp7 (2%)",
        "api_parameter_no_match_s": "no match",
        "api_two_parameters_s": "two parameters",
        "api_notebook_s": "--notebook",
    }
    shown = ", ".join(f"{label} {listing[key] * 1000:.1f} ms" for key, label in labels.items())
    print(f"\n`job list` over {listing['runs']:,} runs (API, best of 5): {shown}; ")
    print(f"`nb2pipe job list` command end to end {listing['cli_job_list_s'] * 1000:.0f} ms")
    print()
    for name, ok in targets.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    result = {
        "benchmark": "jobs",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "cold": cold,
        "warm": warm,
        "ten_runs": ten,
        "scheduled": scheduled,
        "job_list": listing,
        "targets": targets,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
