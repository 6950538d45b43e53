"""The ``nb2pipe`` command line. Heavy imports happen inside the commands so ``--help`` answers instantly.

Exit codes: 0 success, 1 ``check`` found a stale export (``job run``: the run failed), 2 bad input (the one-line
error names file, cell and cause), 124 a job timed out, 130 interrupted or cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

Handler = Callable[[argparse.Namespace], int]

# Feature modules that add their own subcommands. Each defines ``register(sub, export_sub)``, which adds parsers
# to the top-level subparsers (and to ``nb2pipe export FORMAT``) and binds them with ``set_defaults(handler=...)``.
# They must import lazily, like this module: ``nb2pipe --help`` has to answer instantly.
COMMAND_MODULES: tuple[str, ...] = (
    "nb2pipe.script_command",
    "nb2pipe.jobs.cli",
    "nb2pipe.scheduler.cli",
    "nb2pipe.runner.cli",
)

EXAMPLES = """\
examples:
  nb2pipe tag analysis.ipynb --by headings -o tagged.ipynb   propose stages from markdown headings
  nb2pipe analyze tagged.ipynb                               show stages and what flows between them
  nb2pipe convert tagged.ipynb -o pipelines                  write pipelines/tagged/ (stage modules + pipeline.json)
  nb2pipe check tagged.ipynb -o pipelines                    exit 1 when the export is stale (CI, pre-commit)
  nb2pipe diff tagged.ipynb -o pipelines                     which stages changed since the last export
  python -m tagged -p n_estimators 200                       run the exported pipeline (from inside pipelines/)

tags (cell metadata): stage:<name>  after:<name>  parameters  shared  skip  metrics  reads:<path>
Kale's tags (step:, block:, prev:, imports, functions, pipeline-parameters, pipeline-metrics) work too.
See docs/tags.md.
"""


def _state_pairs(values: Sequence[str]) -> dict[str, str]:
    out = {}
    for value in values:
        qualname, sep, key = value.partition("=")
        if not sep or not qualname or not key:
            raise argparse.ArgumentTypeError(f"--state expects QUALNAME=KEY, got {value!r}")
        out[qualname.strip()] = key.strip()
    return out


def add_state_option(p: argparse.ArgumentParser) -> None:
    """``--state QUALNAME=KEY`` (read back with :func:`_state_pairs`), for every command that converts."""
    p.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="QUALNAME=KEY",
        help="declare that calling QUALNAME (e.g. mylib.set_seed) changes process-wide state KEY (repeatable)",
    )


def _convert_options(p: argparse.ArgumentParser, output_required: bool = True, many: bool = False) -> None:
    if many:
        p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="tagged notebooks (pre-commit passes many)")
    else:
        p.add_argument("notebook", help="the tagged notebook (.ipynb); it is never modified")
    p.add_argument(
        "-o", "--output", required=output_required, metavar="DIR", help="directory that holds the pipeline package"
    )
    p.add_argument("--name", help="package name (default: from the notebook's file name)")
    p.add_argument(
        "--keep-magics",
        action="store_true",
        help="keep shell commands and unknown magics, run through IPython at run time, instead of refusing",
    )
    add_state_option(p)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="nb2pipe",
        description="Turn tagged Jupyter notebooks into versioned, reviewable pipelines.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nb2pipe {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("convert", help="write the pipeline package for a tagged notebook")
    _convert_options(p)
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")

    p = sub.add_parser("check", help="exit 1 when the export in DIR is stale (for CI and pre-commit)")
    _convert_options(p, many=True)

    p = sub.add_parser("diff", help="show which stages changed since the export in DIR")
    _convert_options(p)
    p.add_argument("--json", action="store_true", help="print a machine-readable list")

    p = sub.add_parser("analyze", help="show stages, their inputs, outputs and parameters, without writing")
    _convert_options(p, output_required=False)
    p.add_argument("--json", action="store_true", help="print the pipeline definition as JSON")

    p = sub.add_parser("tag", help="propose stage tags for an untagged notebook")
    p.add_argument("notebook", help="the notebook to tag")
    p.add_argument("--by", choices=["headings"], required=True, help="how to find stages: markdown headings")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", metavar="OUT.ipynb", help="write the tagged notebook here")
    out.add_argument("--in-place", action="store_true", help="rewrite the notebook itself")

    for name, handler in CONVERTER_COMMANDS.items():
        sub.choices[name].set_defaults(handler=handler)

    export = sub.add_parser("export", help="export a notebook or pipeline to another format (see: export --help)")
    export_sub = export.add_subparsers(dest="export_format", metavar="FORMAT")
    export_sub.required = True
    for module_name in COMMAND_MODULES:
        import_module(module_name).register(sub, export_sub)
    return parser


def _kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"name": args.name, "keep_magics": args.keep_magics, "extra_state": _state_pairs(args.state)}


def _cmd_convert(args: argparse.Namespace) -> int:
    from .converter import convert

    result = convert(args.notebook, args.output, **_kwargs(args))
    report = result.report
    if args.json:
        summary = {
            "pipeline": result.analysis.name,
            "directory": str(result.directory),
            "written": report.written,
            "removed": report.removed,
            "stages": result.analysis.rendered.versions,
        }
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        stages = len(result.analysis.flow.stages)
        if report.written or report.removed:
            print(f"{result.directory}: {stages} stages; wrote {len(report.written)} files", end="")
            print(f", removed {len(report.removed)}" if report.removed else "")
        else:
            print(f"{result.directory}: {stages} stages; up to date, nothing written")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .converter import check, pipeline_name

    status = 0
    for notebook in args.notebooks:
        stale = check(notebook, args.output, **_kwargs(args))
        if stale:
            where = f"{args.output}/{args.name or pipeline_name(notebook)}"
            print(
                f"{notebook}: export in {where} is stale ({', '.join(stale)}); "
                f"run: nb2pipe convert {notebook} -o {args.output}",
                file=sys.stderr,
            )
            status = 1
    return status


def _cmd_diff(args: argparse.Namespace) -> int:
    from .converter import diff

    changes = diff(args.notebook, args.output, **_kwargs(args))
    if args.json:
        print(json.dumps([c.__dict__ for c in changes], indent=2))
        return 0
    marks = {"added": "+", "removed": "-", "changed": "~", "unchanged": " "}
    for c in changes:
        versions = f"{c.old or '':16} -> {c.new or ''}" if c.status != "unchanged" else c.new
        print(f"{marks[c.status]} {c.stage:24} {c.status:9} {versions}")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .converter import analyze

    analysis = analyze(args.notebook, **_kwargs(args))
    if args.json:
        print(json.dumps(analysis.spec, indent=2, default=repr))
        return 0
    flow = analysis.flow
    print(f"pipeline {analysis.name}: {len(flow.stages)} stages, {len(flow.parameters)} parameters")
    for p in flow.parameters:
        print(f"  parameter {p.name}: {p.type} = {p.default_code}")
    for stage in flow.stages:
        cells = ", ".join(str(c.cell.number) for c in stage.cells)
        print(f"  stage {stage.name} (cells {cells})")
        for name, producer in stage.inputs.items():
            print(f"    <- {name} from {producer}")
        if stage.params:
            print(f"    params {', '.join(stage.params)}")
        if stage.outputs:
            print(f"    -> {', '.join(stage.outputs)}")
        for key, state_from in stage.state_in.items():
            print(f"    state {key} from {state_from or 'the start'}")
    return 0


def _cmd_tag(args: argparse.Namespace) -> int:
    from .tagger import tag_by_headings

    out: str = args.notebook if args.in_place else args.output
    data = tag_by_headings(args.notebook, out)
    cells = data.get("cells")
    stages = [
        str(t)
        for c in (cells if isinstance(cells, list) else [])
        if isinstance(c, dict)
        for t in c.get("metadata", {}).get("tags", [])
        if str(t).startswith(("stage:", "step:", "block:"))
    ]
    print(f"{out}: {len(stages)} stages ({', '.join(s.split(':', 1)[1] for s in stages)})")
    return 0


CONVERTER_COMMANDS: dict[str, Handler] = {
    "convert": _cmd_convert,
    "check": _cmd_check,
    "diff": _cmd_diff,
    "analyze": _cmd_analyze,
    "tag": _cmd_tag,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nb2pipe`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        handler: Handler = args.handler
        return handler(args)
    except KeyboardInterrupt:
        print("nb2pipe: interrupted", file=sys.stderr)
        return 130
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    except Exception as exc:
        from .errors import Nb2PipeError

        if args.debug:
            raise
        if isinstance(exc, Nb2PipeError):
            print(f"nb2pipe: error: {exc}", file=sys.stderr)
            return exc.exit_code
        print(
            f"nb2pipe: internal error: {type(exc).__name__}: {exc} (please report it; rerun with --debug for details)",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
