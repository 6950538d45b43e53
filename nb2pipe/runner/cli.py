"""The runner's commands: ``nb2pipe run``, ``nb2pipe cache ls/clear/gc``, ``nb2pipe verify``, ``export kfp``.

Registered through ``nb2pipe.cli.COMMAND_MODULES``; every import of real work happens inside the handlers so that
``nb2pipe --help`` stays instant and a re-run with nothing to do stays well under half a second.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

RUN_EPILOG = """\
exit codes:
  0    every stage ran or was cached
  1    a stage failed (its report names the stage, the notebook cell and the line); dependants were skipped
  2    bad input: unknown parameter or stage, unreadable notebook or pipeline (one line, nothing ran)
  130  interrupted (Ctrl-C or SIGTERM): the run is recorded as cancelled; finished stages stay cached

examples:
  nb2pipe run analysis.ipynb -p n_estimators 200      convert on the fly (nothing written next to it) and run
  nb2pipe run pipelines/analysis -f params.yaml --json
  nb2pipe run analysis.ipynb --from train             re-run train and everything after it
  nb2pipe run analysis.ipynb --executor dask --scheduler tcp://10.0.0.5:8786
"""


def _add_params(p: argparse.ArgumentParser) -> None:
    from ..parameters import add_parameter_options

    add_parameter_options(p)
    p.add_argument(
        "--home", metavar="DIR", help="where results and the run store live (default: $NB2PIPE_HOME or .nb2pipe)"
    )


def register(sub: Any, export_sub: Any) -> None:
    """Add ``run``, ``cache``, ``verify`` and ``export kfp`` to the ``nb2pipe`` parser."""
    p = sub.add_parser(
        "run",
        help="run a notebook or converted pipeline, stages in parallel, results cached",
        description="Run a tagged notebook (converted on the fly) or a converted pipeline directory. A stage whose "
        "code, inputs, parameters, process state and data files did not change is not run again.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="TARGET", help="a tagged notebook (.ipynb) or a pipeline directory")
    _add_params(p)
    p.add_argument("--workers", type=int, metavar="N", help="run at most N independent stages at once")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.add_argument("--force", action="store_true", help="run every stage, ignoring cached results")
    p.add_argument("--only", action="append", default=[], metavar="STAGE", help="run only STAGE (inputs from cache)")
    p.add_argument(
        "--from",
        dest="from_stages",
        action="append",
        default=[],
        metavar="STAGE",
        help="re-run STAGE and all after it",
    )
    p.add_argument("--executor", default="local", metavar="NAME", help="where stages run: local (default), dask")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address (default: a LocalCluster)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not echo what stages print")
    p.set_defaults(handler=cmd_run)

    c = sub.add_parser("cache", help="list, clear or garbage-collect cached stage results")
    c.add_argument("--home", metavar="DIR", help="store location (default: $NB2PIPE_HOME or .nb2pipe)")
    csub = c.add_subparsers(dest="cache_command", metavar="ACTION")
    csub.required = True
    ls = csub.add_parser("ls", help="list cached results (stage, pipeline, size, age)")
    ls.add_argument("--json", action="store_true", help="machine-readable list")
    ls.set_defaults(handler=cmd_cache_ls)
    clear = csub.add_parser("clear", help="remove cached results (all, or one pipeline's / one stage's)")
    clear.add_argument("--pipeline", metavar="NAME", help="only this pipeline's results")
    clear.add_argument("--stage", metavar="NAME", help="only this stage's results")
    clear.set_defaults(handler=cmd_cache_clear)
    gc = csub.add_parser("gc", help="remove results no recent run used, and half-written leftovers of killed runs")
    gc.add_argument("--keep-days", type=float, default=30.0, metavar="DAYS", help="keep results used within DAYS")
    gc.set_defaults(handler=cmd_cache_gc)
    for parser in (ls, clear, gc):
        parser.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    from . import verify_cli

    verify_cli.register(sub, export_sub)


def _out(args: argparse.Namespace) -> Any:
    return sys.stderr if args.json else sys.stdout


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_run(args: argparse.Namespace) -> int:
    from .run import describe_failure, run_pipeline

    signal.signal(signal.SIGTERM, _on_sigterm)
    out = _out(args)
    progress = sys.stderr
    done = [0]
    total = [0]

    streamed: set[str] = set()

    def on_event(kind: str, o: Any) -> None:
        if kind == "started":
            return
        if kind == "output":  # lines a running stage printed, as it prints them (the local executor)
            streamed.add(o.name)
            if not args.quiet:
                (out if o.stdout else sys.stderr).write(o.stdout or o.stderr)
                (out if o.stdout else sys.stderr).flush()
            return
        if kind == "warning":
            print(f"nb2pipe: warning: {o.reason}", file=sys.stderr, flush=True)
            return
        done[0] += 1
        line = f"[{done[0]}/{total[0] or '?'}] {kind:7} {o.name:24}"
        if kind in ("ran", "failed"):
            line += f"  {o.seconds:.2f}s"
        if kind == "skipped" and o.reason:
            line += f"  ({o.reason})"
        print(line, file=progress, flush=True)
        if kind in ("ran", "failed") and not args.quiet and o.name not in streamed:
            if o.stdout:
                out.write(o.stdout if o.stdout.endswith("\n") else o.stdout + "\n")
                out.flush()
            if o.stderr and kind == "ran":
                sys.stderr.write(o.stderr if o.stderr.endswith("\n") else o.stderr + "\n")
        if kind == "failed":
            if o.failure is not None and o.failure.traceback and o.name not in streamed:
                sys.stderr.write(o.failure.traceback)
            print(f"nb2pipe: {describe_failure(o, cells)}", file=sys.stderr, flush=True)

    cells: dict[str, int] = {}
    from ..runstore import store_home
    from .target import load_target

    pipeline = load_target(args.target, store_home(args.home))
    total[0] = len(pipeline.spec["order"])
    cells.update(pipeline.cell_numbers())
    report = run_pipeline(
        args.target,
        pairs=[tuple(p) for p in args.parameter],
        files=args.parameters_file,
        workers=args.workers,
        force=args.force,
        only=args.only,
        from_stages=args.from_stages,
        executor=args.executor,
        executor_options={"scheduler": args.scheduler} if args.scheduler else {},
        home=args.home,
        on_event=on_event,
    )
    counts: dict[str, int] = {}
    for o in report.stages:
        counts[o.status] = counts.get(o.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"run {report.run_id}: {report.status} ({summary}); logs in {report.run_dir}", file=progress)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=repr))
    return {"succeeded": 0, "failed": 1, "cancelled": 130}[report.status]


def _home(args: argparse.Namespace) -> Any:
    from ..runstore import store_home

    return store_home(getattr(args, "home", None))


def cmd_cache_ls(args: argparse.Namespace) -> int:
    from . import maintenance

    rows = maintenance.list_entries(_home(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        formats = ", ".join(f"{n}: {f}" for n, f in sorted(r["formats"].items()))
        line = f"{r['key'][:12]}  {r['pipeline'] or '?':20} {r['stage']:24} {r['size']:>10} B  {r['age']}"
        print(f"{line}  {formats}" if formats else line)
    print(f"{len(rows)} cached results, {sum(r['size'] for r in rows)} bytes")
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from . import maintenance

    n = maintenance.clear(_home(args), pipeline=args.pipeline, stage=args.stage)
    print(f"removed {n} cached results")
    return 0


def cmd_cache_gc(args: argparse.Namespace) -> int:
    from . import maintenance

    removed, tmp, packages = maintenance.gc(_home(args), keep_days=args.keep_days)
    print(f"removed {removed} unused results, {tmp} half-written entries, {packages} stale converted packages")
    return 0
