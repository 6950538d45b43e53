"""What generated pipelines may import at run time. Kept tiny: a pipeline must not drag in the converter."""

from __future__ import annotations

from typing import Any


def get_ipython() -> Any:
    """The running IPython shell, or a fresh in-process one when the stage runs in plain Python.

    Stages converted with ``--keep-magics`` call this for the magics and shell commands they kept.
    """
    from IPython import get_ipython as current
    from IPython.core.interactiveshell import InteractiveShell

    return current() or InteractiveShell.instance()
