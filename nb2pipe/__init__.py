"""nb2pipe: turn tagged Jupyter notebooks into versioned, reviewable pipelines.

The public API is re-exported lazily so that ``import nb2pipe`` (and the CLI) start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "ConvertResult",
    "Nb2PipeError",
    "analyze",
    "check",
    "convert",
    "diff",
    "export_script",
    "glue",
    "output_dir",
    "record",
    "run_pipeline",
    "tag_by_headings",
    "verify",
]

if TYPE_CHECKING:
    from .converter import Analysis, ConvertResult, analyze, check, convert, diff
    from .errors import Nb2PipeError
    from .jobs.record import glue, output_dir, record
    from .runner.run import run_pipeline
    from .runner.verify import verify
    from .script import export_script
    from .tagger import tag_by_headings

_LAZY = {
    "Analysis": "converter",
    "ConvertResult": "converter",
    "analyze": "converter",
    "check": "converter",
    "convert": "converter",
    "diff": "converter",
    "Nb2PipeError": "errors",
    "export_script": "script",
    "tag_by_headings": "tagger",
    "record": "jobs.record",
    "glue": "jobs.record",
    "output_dir": "jobs.record",
    "run_pipeline": "runner.run",
    "verify": "runner.verify",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'nb2pipe' has no attribute {name!r}")
