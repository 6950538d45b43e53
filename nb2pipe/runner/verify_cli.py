"""``nb2pipe verify`` and ``nb2pipe export kfp``: registered by :mod:`nb2pipe.runner.cli`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

VERIFY_EPILOG = """\
exit codes:
  0  every value crossing a stage boundary matches the notebook's (nondeterministic values are reported, not failed)
  1  a divergence (the first is named by stage, variable and cell), or the pipeline failed where the notebook did not
  2  bad input, or the notebook itself fails
"""


def register(sub: Any, export_sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="execute the notebook (papermill) and the pipeline; compare every value crossing a stage boundary",
        epilog=VERIFY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("notebook", metavar="NOTEBOOK", help="the tagged notebook")
    from .cli import _add_params

    _add_params(p)
    p.add_argument("--kernel", metavar="NAME", help="kernel for the notebook (default: its kernelspec, else python3)")
    p.add_argument("--json", action="store_true", help="print every comparison as JSON")
    p.set_defaults(handler=cmd_verify)

    k = export_sub.add_parser(
        "kfp",
        help="compile a Kubeflow Pipelines v2 pipeline (kfp SDK): one component per stage, values as artifacts",
    )
    k.add_argument("target", metavar="TARGET", help="a tagged notebook or a converted pipeline directory")
    k.add_argument("-o", "--output", required=True, metavar="pipeline.yaml", help="where to write the compiled YAML")
    k.add_argument("--image", default="python:3.11-slim", help="base image of every component")
    k.add_argument("--home", metavar="DIR", help="store location (default: $NB2PIPE_HOME or .nb2pipe)")
    k.set_defaults(handler=cmd_export_kfp)


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify

    report = verify(
        args.notebook,
        pairs=[tuple(p) for p in args.parameter],
        files=args.parameters_file,
        home=args.home,
        kernel=args.kernel,
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for c in report.checks:
            if c.status != "equal":
                where = f" (cell {c.cell}, id {c.cell_id})" if c.cell else ""
                print(f"{c.status:16} {c.stage}.{c.name}{where}: {c.detail}")
        equal = sum(c.status == "equal" for c in report.checks)
        print(f"{args.notebook}: {equal} of {len(report.checks)} values equal; run {report.run_id}")
    if report.pipeline_error:
        print(f"nb2pipe: the pipeline failed where the notebook did not: {report.pipeline_error}", file=sys.stderr)
        return 1
    if report.divergences:
        first = report.divergences[0]
        where = f"cell {first.cell} (id {first.cell_id})" if first.cell else "its stage"
        print(
            f"nb2pipe: first divergence: stage {first.stage!r}, variable `{first.name}` (set in {where}): "
            f"{first.detail}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_export_kfp(args: argparse.Namespace) -> int:
    from ..runstore import store_home

    try:
        from .kfp_export import export_kfp
    except ImportError:
        from ..errors import Nb2PipeError

        raise Nb2PipeError("export kfp needs the kfp SDK: pip install 'nb2pipe[kfp]'") from None
    out, _ = export_kfp(args.target, args.output, home=store_home(args.home), image=args.image)
    print(f"{out}: Kubeflow Pipelines v2 pipeline written")
    return 0
