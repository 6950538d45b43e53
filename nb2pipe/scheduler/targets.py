"""What a schedule runs: a notebook (a tracked job) or a converted pipeline, with parameters checked at add time.

A schedule that would fail at 3 a.m. because of a misspelt parameter is refused when it is added instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import Nb2PipeError
from ..parameters import Declared, notebook_parameters, resolve


def resolve_target(target: str, pairs: Sequence[tuple[str, str]]) -> tuple[str, str, dict[str, Any]]:
    """``(kind, absolute target, typed parameters)`` for a notebook or a pipeline directory."""
    path = Path(target)
    if path.is_file() and path.suffix == ".ipynb":
        return "job", str(path.absolute()), resolve(notebook_parameters(path), pairs, target=target)
    spec = path / "pipeline.json"
    if path.is_dir() and spec.is_file():
        try:
            data = json.loads(spec.read_text(encoding="utf-8"))
            declared = [
                Declared(p["name"], p["type"], p["default"], repr(p["default"])) for p in data.get("parameters", [])
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise Nb2PipeError(f"{spec}: not a readable pipeline definition: {exc}") from None
        return "pipeline", str(path.absolute()), resolve(declared, pairs, target=target)
    if not path.exists():
        raise Nb2PipeError(f"{target}: no such notebook or pipeline directory")
    raise Nb2PipeError(
        f"{target}: not a notebook (.ipynb) or a converted pipeline directory (with pipeline.json); "
        "convert a tagged notebook first with: nb2pipe convert NOTEBOOK -o DIR"
    )


def default_timezone() -> str:
    """This machine's IANA zone: ``$TZ`` if it names one, else the ``/etc/localtime`` link, else ``UTC``."""
    from .cron import CronError, zone

    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        link = os.readlink("/etc/localtime")
        if "zoneinfo/" in link:
            candidates.append(link.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if name:
            try:
                zone(name)
            except CronError:
                continue
            return name
    return "UTC"
