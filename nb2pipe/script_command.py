"""``nb2pipe export script NOTEBOOK -o FILE``: the one-file export on the command line.

Listed in :data:`nb2pipe.cli.COMMAND_MODULES`. Nothing heavy is imported until the command runs, so
``nb2pipe --help`` stays instant; errors are :class:`~nb2pipe.errors.Nb2PipeError`, which the CLI prints as one
line with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXAMPLES = """\
examples:
  nb2pipe export script analysis.ipynb -o analysis.py     write the script (atomically)
  nb2pipe export script analysis.ipynb -o -               print it instead
  python analysis.py --help                               the notebook's parameters, with their defaults
  python analysis.py --n-estimators 200                   run every stage with one parameter changed

The same script comes from: jupyter nbconvert --to nb2pipe_script analysis.ipynb
"""


def register(sub: Any, export_sub: Any) -> None:
    """Add ``script`` to ``nb2pipe export``."""
    p = export_sub.add_parser(
        "script",
        help="one plain-Python script: a function per stage, the parameters as command-line options",
        description="Write the notebook as one Python script that runs with plain `python`: a function per stage,\n"
        "the parameters cell as typed argparse options with the notebook's defaults, and a main() that runs the\n"
        "stages in order.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("notebook", help="the tagged notebook (.ipynb); it is never modified")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the script to write; '-' prints it")
    p.add_argument("--name", help="pipeline name shown in the script (default: from the notebook's file name)")
    from .cli import add_state_option

    add_state_option(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(handler=_cmd_script)


def _cmd_script(args: argparse.Namespace) -> int:
    from .cli import _state_pairs
    from .script import export_script

    to_stdout = args.output == "-"
    code = export_script(
        args.notebook, None if to_stdout else args.output, name=args.name, extra_state=_state_pairs(args.state)
    )
    if to_stdout:
        sys.stdout.write(code)
    elif not args.quiet:
        print(f"{args.output}: script written; run it with: python {args.output} --help")
    return 0
