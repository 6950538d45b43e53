"""The pipeline runner: run converted pipelines with a content-addressed cache, locally or on Dask.

Imports are lazy: ``nb2pipe.runner.worker`` starts in every worker process and must stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RunReport", "StageOutcome", "run_pipeline"]

if TYPE_CHECKING:
    from .run import RunReport, StageOutcome, run_pipeline


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module 'nb2pipe.runner' has no attribute {name!r}")
