"""``nb2pipe.record(name, value)``: record a metric from inside a notebook.

A recorded value travels in the executed notebook itself, as a display output with our own MIME type (the way
scrapbook's ``glue`` stores scraps). The job process reads those outputs when the run ends and writes them to the run
store, so the notebook and the store always agree, the kernel never touches the database, and a kernel on another
machine (a Dask worker, a pooled kernel) needs nothing but this module. scrapbook's own JSON scraps
(``sb.glue("acc", 0.9)``) are read the same way, so notebooks that already glue their numbers need no change.

Outside a tracked job, ``record`` is a no-op that shows the value, so a notebook behaves the same when run by hand.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Final

#: MIME type of a recorded metric in a notebook output: ``{"name": ..., "value": ...}``.
METRIC_MIME: Final = "application/vnd.nb2pipe.metric+json"
#: scrapbook's JSON scrap MIME type: ``{"name": ..., "data": ..., "encoder": "json"}``.
SCRAPBOOK_MIME: Final = "application/scrapbook.scrap.json+json"
#: Set in the kernel of a tracked job (by the job's setup code): the run id.
RUN_ENV: Final = "NB2PIPE_RUN_ID"
#: Set in the kernel of a tracked job: the folder whose files are stored as the run's artifacts.
OUTPUT_ENV: Final = "NB2PIPE_OUTPUT_DIR"


def _plain(value: Any) -> Any:
    """A JSON-ready copy of ``value``: NumPy scalars and arrays become Python numbers and lists."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()
    elif hasattr(value, "tolist") and callable(value.tolist):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return value  # JSON has no NaN/inf; json.dumps writes NaN, which json.loads reads back
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(
        f"nb2pipe.record: cannot record a {type(value).__name__}; record numbers, strings, booleans, lists or dicts "
        "(write larger results to nb2pipe.output_dir() instead: files there are stored as artifacts)"
    )


def record(name: str, value: Any, *, display: bool = True) -> None:
    """Record metric ``name`` (the last value recorded under a name wins, as with scrapbook's ``glue``).

    ``display=False`` keeps the value out of the visible cell output (it is still recorded).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("nb2pipe.record: the name must be a non-empty string")
    plain = _plain(value)
    json.dumps(plain)  # fail here, in the user's cell, not when the run ends
    shown = f"{name} = {plain!r}"
    if os.environ.get(RUN_ENV) is None:
        if display:
            print(shown)
        return
    try:
        from IPython.display import publish_display_data
    except ImportError:  # pragma: no cover - a kernel always has IPython
        print(shown)
        return
    data: dict[str, Any] = {METRIC_MIME: {"name": name, "value": plain}}
    if display:
        data["text/plain"] = shown
    publish_display_data(data, metadata={"nb2pipe": {"name": name}})  # type: ignore[no-untyped-call]


def glue(name: str, data: Any, encoder: str | None = None, display: bool = False) -> None:
    """scrapbook's ``glue`` signature (``encoder`` is accepted and ignored: values are stored as JSON)."""
    record(name, data, display=display)


def output_dir() -> str:
    """The run's declared output folder (files written there are stored with their hashes); ``outputs`` outside."""
    path = os.environ.get(OUTPUT_ENV, "outputs")
    os.makedirs(path, exist_ok=True)
    return path


def metrics_from_notebook(nb: Any) -> dict[str, Any]:
    """Every value recorded in an executed notebook's outputs, in execution order (the last one per name wins)."""
    found: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = output.get("data") or {}
            if METRIC_MIME in data:
                item = data[METRIC_MIME]
                found[str(item["name"])] = item.get("value")
            elif SCRAPBOOK_MIME in data:
                item = data[SCRAPBOOK_MIME]
                found[str(item["name"])] = item.get("data")
    return found
