"""``nb2pipe job ...``: run notebooks as tracked jobs and look back at them.

Registered through ``nb2pipe.cli.COMMAND_MODULES``. Only argparse at import time: papermill and friends are imported
when a notebook runs, never for ``list``/``show``/``--help``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

EXIT_CODES_HELP = """\
exit codes:
  0    the run succeeded (sweep: every run succeeded)
  1    the run failed: a cell raised, or the kernel died (sweep: at least one run did not succeed)
  2    bad input: missing or corrupt notebook, unknown parameter, wrong type, unknown kernel (never started),
       unwritable run folder; one line on stderr, nothing half-recorded
  124  the run timed out (--timeout or --cell-timeout)
  130  the run was cancelled (Ctrl-C, SIGTERM, nb2pipe job cancel)

examples:
  nb2pipe job run train.ipynb -p lr 0.01 -p epochs 5          a tracked papermill run
  nb2pipe job sweep train.ipynb -p lr 0.1,0.01 -p depth 3,5 --parallel 2
  nb2pipe job list --status failed -p lr 0.01 --since 2d
  nb2pipe job compare 20261127-0915 20261127-0921             parameters and metrics side by side
"""


def _home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="DIR", help="run store folder (default: $NB2PIPE_HOME or .nb2pipe)")


def _run_options(p: argparse.ArgumentParser, parameters: bool = True) -> None:
    if parameters:
        from ..parameters import add_parameter_options

        add_parameter_options(p)
    p.add_argument("--kernel", metavar="NAME", help="kernel to run (default: the notebook's kernelspec)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="limit for the whole run (kernel start included)")
    p.add_argument("--cell-timeout", type=float, metavar="SECONDS", help="limit for each cell")
    p.add_argument("--runs-dir", metavar="DIR", help="where run folders go (default: HOME/runs)")
    p.add_argument(
        "--output-dir", metavar="DIR", help="declared output folder: files written there are stored with their hashes"
    )
    p.add_argument("--cwd", metavar="DIR", help="working directory of the kernel (default: the current one)")
    p.add_argument("--html", action="store_true", help="also render the executed notebook to HTML (nbconvert)")
    p.add_argument("--log-output", action="store_true", help="stream the cells' output to this terminal")
    p.add_argument(
        "--mlflow",
        nargs="?",
        const="",
        metavar="TRACKING_URI",
        help="also log the run to MLflow (default URI: $MLFLOW_TRACKING_URI)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _home(p)


def register(sub: Any, export_sub: Any) -> None:
    """Add ``nb2pipe job`` and its subcommands."""
    job = sub.add_parser(
        "job",
        help="run notebooks as tracked jobs (papermill) and look back at them",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    jobs = job.add_subparsers(dest="job_command", metavar="SUBCOMMAND")
    jobs.required = True

    def add(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = jobs.add_parser(
            name, help=help, epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        return parser

    p = add("run", "execute a notebook with papermill as a tracked run")
    p.add_argument("notebook", help="the notebook (.ipynb); it is never modified")
    _run_options(p)
    p.set_defaults(handler=_cmd_run)

    p = add("sweep", "run a parameter grid, each combination a tracked run")
    p.add_argument("notebook")
    _run_options(p)
    p.add_argument("--parallel", type=int, default=1, metavar="N", help="runs at once (default 1)")
    p.add_argument("--executor", choices=["local", "dask"], default="local", help="where the runs execute")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address (default: a LocalCluster)")
    p.add_argument("--no-pool", action="store_true", help="start each run's kernel cold instead of from a pool")
    p.set_defaults(handler=_cmd_sweep)

    p = add("list", "list runs, newest first")
    p.add_argument("--notebook", metavar="PATH", help="only runs of this notebook")
    p.add_argument("--status", help="queued, running, succeeded, failed, timed-out or cancelled")
    p.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="parameter value"
    )
    p.add_argument("--since", metavar="TIME", help="created at or after (2026-11-27, 2026-11-27T09:30, 2h, 3d)")
    p.add_argument("--until", metavar="TIME", help="created at or before")
    p.add_argument("-n", "--limit", type=int, default=20, help="at most this many (default 20; 0 for all)")
    p.add_argument("--removed", action="store_true", help="include removed runs")
    p.add_argument("--json", action="store_true")
    _home(p)
    p.set_defaults(handler=_cmd_list)

    p = add("show", "everything recorded about a run")
    p.add_argument("run_id", metavar="ID", help="run id or an unambiguous prefix")
    p.add_argument("--json", action="store_true")
    _home(p)
    p.set_defaults(handler=_cmd_show)

    p = add("compare", "parameters and metrics of runs side by side")
    p.add_argument("run_ids", nargs="+", metavar="ID")
    p.add_argument("--json", action="store_true")
    _home(p)
    p.set_defaults(handler=_cmd_compare)

    p = add("open", "print the path of a run's executed notebook")
    p.add_argument("run_id", metavar="ID")
    p.add_argument("--json", action="store_true")
    _home(p)
    p.set_defaults(handler=_cmd_open)

    p = add("rerun", "run recorded runs' notebooks again with the same parameters and kernel")
    p.add_argument("run_id", metavar="ID", nargs="+", help="run ids (or unambiguous prefixes); several run as a batch")
    _run_options(p, parameters=False)
    p.add_argument("--parallel", type=int, default=1, metavar="N", help="reruns at once (default 1)")
    p.add_argument("--no-pool", action="store_true", help="start each rerun's kernel cold instead of from a pool")
    p.set_defaults(handler=_cmd_rerun)

    p = add("cancel", "cancel a running job (its process and its kernel), also from another terminal")
    p.add_argument("run_id", metavar="ID")
    p.add_argument("--grace", type=float, default=10.0, metavar="SECONDS", help="wait before killing (default 10)")
    p.add_argument("--json", action="store_true")
    _home(p)
    p.set_defaults(handler=_cmd_cancel)

    p = add("rm", "remove a finished run from the history (an audit record is kept)")
    p.add_argument("run_id", metavar="ID")
    p.add_argument("--files", action="store_true", help="also delete the run folder")
    p.add_argument("--json", action="store_true", help="print the removed run as recorded in the audit log")
    _home(p)
    p.set_defaults(handler=_cmd_rm)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "kernel": args.kernel,
        "timeout": args.timeout,
        "cell_timeout": args.cell_timeout,
        "home": args.home,
        "runs_dir": args.runs_dir,
        "output_dir": args.output_dir,
        "cwd": args.cwd,
        "html": args.html,
        "log_output": args.log_output,
        "mlflow": _mlflow_uri(args.mlflow),
    }


def _mlflow_uri(value: str | None) -> str | None:
    if value is None:
        return None
    import os

    return value or os.environ.get("MLFLOW_TRACKING_URI") or "mlruns"


def _result_json(result: Any) -> dict[str, Any]:
    return {
        "id": result.id,
        "status": result.status,
        "status_detail": result.detail,
        "notebook": str(result.notebook),
        "run_dir": str(result.run_dir),
        "parameters": result.parameters,
        "metrics": result.metrics,
        "error": result.error,
    }


def _say(result: Any) -> None:
    line = f"run {result.id} {result.status}"
    if result.detail:
        line += f" ({result.detail})"
    if result.error and result.error.get("name"):
        cell = result.error.get("cell")
        where = f"cell {cell}" if cell is not None else "the injected parameters"
        if result.error.get("cell_id"):
            where += f" (id {result.error['cell_id']})"
        line += f" at {where}: {result.error['name']}: {result.error.get('message') or ''}".rstrip()
    elif result.error and result.error.get("cell") is not None:
        line += f" at cell {result.error['cell']}"
    line += f"\n  notebook: {result.notebook}"
    for name, value in result.metrics.items():
        line += f"\n  {name} = {value!r}"
    print(line, file=sys.stdout if result.status == "succeeded" else sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    from .execute import run
    from .pool import process_pool

    options = _options(args)
    result = run(args.notebook, pairs=args.parameter, files=args.parameters_file, pool=process_pool(), **options)
    if args.json:
        print(json.dumps(_result_json(result), indent=2, default=repr))
    else:
        _say(result)
    return result.exit_code


def _cmd_rerun(args: argparse.Namespace) -> int:
    options = {k: v for k, v in _options(args).items() if v is not None and k != "home"}
    if len(args.run_id) == 1:  # one rerun: nothing to overlap its kernel start with, so no pool (see docs/jobs.md)
        from . import rerun

        result = rerun(args.run_id[0], home=args.home, **options)
        if args.json:
            print(json.dumps(_result_json(result), indent=2, default=repr))
        else:
            _say(result)
        return result.exit_code
    from .sweeps import reruns

    results = reruns(args.run_id, parallel=args.parallel, pool=not args.no_pool, home=args.home, **options)
    return _say_all(results, args.json)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweeps import grid_from_pairs, sweep

    grid = grid_from_pairs(args.notebook, args.parameter)
    results = sweep(
        args.notebook,
        grid,
        parallel=args.parallel,
        files=args.parameters_file,
        executor=args.executor,
        scheduler=args.scheduler,
        pool=not args.no_pool,
        **_options(args),
    )
    return _say_all(results, args.json)


def _say_all(results: list[Any], as_json: bool) -> int:
    """One line per run (or a JSON list); exit 0 only when every run succeeded."""
    if as_json:
        print(json.dumps([_result_json(r) for r in results], indent=2, default=repr))
    else:
        for r in results:
            params = " ".join(f"{k}={v!r}" for k, v in r.parameters.items())
            metrics = " ".join(f"{k}={v!r}" for k, v in r.metrics.items())
            print(f"{r.id}  {r.status:10} {params}  {metrics}".rstrip())
    return 0 if results and all(r.status == "succeeded" for r in results) else 1


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _duration(seconds: float | None) -> str:
    return f"{seconds:.1f}s" if seconds is not None else "-"


def _cmd_list(args: argparse.Namespace) -> int:
    from . import list as list_runs
    from .history import parse_time

    runs = list_runs(
        home=args.home,
        notebook=args.notebook,
        status=args.status,
        parameters=dict(args.parameter),
        since=parse_time(args.since) if args.since else None,
        until=parse_time(args.until) if args.until else None,
        limit=args.limit or None,
        removed=args.removed,
    )
    if args.json:
        print(json.dumps(runs, indent=2, default=repr))
        return 0
    if not runs:
        print("no runs", file=sys.stderr)
        return 0
    print(f"{'ID':22} {'STATUS':10} {'CREATED':19} {'TIME':>7}  NOTEBOOK  PARAMETERS")
    for r in runs:
        params = " ".join(f"{k}={v!r}" for k, v in r["parameters"].items())
        name = r["target"].rsplit("/", 1)[-1]
        print(f"{r['id']:22} {r['status']:10} {_when(r['created_at'])} {_duration(r['duration']):>7}  {name}  {params}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from . import show

    run = show(args.run_id, home=args.home)
    if args.json:
        print(json.dumps(run, indent=2, default=repr))
        return 0
    print(f"run {run['id']}: {run['status']}" + (f" ({run['status_detail']})" if run["status_detail"] else ""))
    rows = [
        ("notebook", run["target"]),
        ("notebook sha256", run["target_hash"]),
        ("executed notebook", run["notebook"]),
        ("kernel", run["kernel"]),
        ("started", _when(run["started_at"])),
        ("ended", _when(run["ended_at"])),
        ("duration", _duration(run["duration"])),
        ("host / user / pid", f"{run['host']} / {run['user']} / {run['pid']}"),
        ("git", f"{run['git_commit'] or '-'}" + (" (dirty)" if run["git_dirty"] else "")),
        ("executor", run["executor"] + (f" on {run['worker']}" if run.get("worker") else "")),
    ]
    env = run.get("environment")
    if env:
        rows.append(("python", f"{env['python']} on {env['platform']}, {len(env['packages'])} packages ({env['id']})"))
    if run["rerun_of"]:
        rows.append(("rerun of", run["rerun_of"]))
    if run.get("schedule"):
        rows.append(("schedule", f"{run['schedule']} (fire time {run.get('scheduled_for') or '-'})"))
    if run["error_name"] or run["error_cell"] is not None:
        where = f"cell {run['error_cell']}" + (f" (id {run['error_cell_id']})" if run["error_cell_id"] else "")
        rows.append(("error", f"{where}: {run['error_name'] or ''}: {run['error_message'] or ''}"))
    for key, value in rows:
        print(f"  {key + ':':20} {value}")
    for title, items in (("parameters", run["parameters"]), ("metrics", run["metrics"])):
        if items:
            print(f"  {title}:")
            for name, value in items.items():
                print(f"    {name} = {value!r}")
    if run["artifacts"]:
        print("  artifacts:")
        for a in run["artifacts"]:
            print(f"    {a['path']}  {a['size']} bytes  sha256:{a['sha256'][:16]}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from . import compare

    table = compare(args.run_ids, home=args.home)
    if args.json:
        print(json.dumps(table, indent=2, default=repr))
        return 0
    ids = [r["id"] for r in table["runs"]]
    width = max(22, *(len(n) + 2 for section in ("parameters", "metrics") for n in table[section]))
    print(" " * (width + 2) + "".join(f"{i:>24}" for i in ids))
    print(" " * (width + 2) + "".join(f"{r['status']:>24}" for r in table["runs"]))
    for section in ("parameters", "metrics"):
        if not table[section]:
            continue
        print(section)
        for name, values in table[section].items():
            mark = "*" if len({json.dumps(v, sort_keys=True, default=repr) for v in values}) > 1 else " "
            cells = "".join(f"{('-' if v is None else repr(v)):>24}" for v in values)
            print(f"{mark} {name:{width}}{cells}")
    return 0


def _cmd_open(args: argparse.Namespace) -> int:
    from . import show

    run = show(args.run_id, home=args.home)
    print(json.dumps({"id": run["id"], "notebook": run["notebook"]}) if args.json else run["notebook"])
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    from . import cancel

    run = cancel(args.run_id, home=args.home, grace=args.grace)
    if args.json:
        print(json.dumps(run, indent=2, default=repr))
    else:
        detail = f" ({run['status_detail']})" if run["status_detail"] else ""
        print(f"run {run['id']}: {run['status']}{detail}")
    return 0


def _cmd_rm(args: argparse.Namespace) -> int:
    from . import remove

    run = remove(args.run_id, home=args.home, files=args.files)
    if args.json:
        print(json.dumps(run, indent=2, default=repr))
    else:
        print(f"run {run['id']} removed from the history (an audit record keeps it)")
    return 0
