"""The analyze endpoint's JSON: what the Pipeline sidebar and the DAG view draw, built from a converter Analysis.

Errors are results here, not failures of the request: a notebook that cannot be converted yet is the normal state
while someone is tagging it, so the answer is ``ok: false`` with the error's cell (number and id) for the UI to
jump to, plus whatever the tags alone still tell (the cells' roles) when they can be read.
"""

from __future__ import annotations

import json
from typing import Any

from ..converter import Analysis, analyze
from ..errors import Nb2PipeError
from ..notebook import Notebook
from ..tags import TagPlan, plan_tags

_STAGE_LIKE = ("stage:", "step:", "block:", "after:", "prev:")
_ROLE_TAGS = frozenset({"parameters", "pipeline-parameters", "shared", "imports", "functions", "skip", "metrics"})


def _plain(value: Any) -> Any:
    """A JSON-ready value (parameters may hold tuples or other literals JSON lacks)."""
    return json.loads(json.dumps(value, default=repr))


def error_json(exc: Nb2PipeError) -> dict[str, Any]:
    """One error, with its location fields, as the UI lists it."""
    return {
        "kind": type(exc).__name__,
        "message": str(exc),
        "cause": exc.cause,
        "cell": exc.cell,
        "cell_id": exc.cell_id,
    }


def _cells(plan: TagPlan) -> list[dict[str, Any]]:
    return [
        {
            "id": r.cell.id,
            "number": r.cell.number,
            "role": r.role,
            "stage": r.stage,
            "metrics": r.metrics,
            "tags": list(r.cell.tags),
        }
        for r in plan.roles
    ]


def tag_warnings(nb: Notebook) -> list[dict[str, Any]]:
    """Tags the converter ignores: pipeline tags on markdown or raw cells."""
    warnings = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            continue
        ignored = [t for t in cell.tags if t.startswith(_STAGE_LIKE) or t in _ROLE_TAGS]
        if ignored:
            warnings.append(
                {
                    "kind": "IgnoredTag",
                    "message": f"cell {cell.number}: tags {', '.join(ignored)} on a {cell.cell_type} cell are "
                    "ignored; put them on a code cell",
                    "cell": cell.number,
                    "cell_id": cell.id,
                }
            )
    return warnings


def analysis_json(analysis: Analysis) -> dict[str, Any]:
    """The answer for a notebook that converts."""
    spec = analysis.spec
    flow = analysis.flow
    params_cell = next((r.cell for r in analysis.plan.roles if r.role == "parameters"), None)
    return {
        "ok": True,
        "name": analysis.name,
        "order": list(flow.order),
        "stages": [
            {
                "name": s.name,
                "cells": [{"id": c.cell.id, "number": c.cell.number} for c in s.cells],
                "inputs": [{"name": n, "from": p} for n, p in s.inputs.items()],
                "outputs": list(s.outputs),
                "parameters": list(s.params),
                "after": list(s.after),
                "metrics": list(s.metrics),
            }
            for s in flow.stages
        ],
        "edges": _plain(spec["edges"]),
        "parameters": _plain(spec["parameters"]),
        "parameters_cell": {"id": params_cell.id, "number": params_cell.number} if params_cell else None,
        "cells": _cells(analysis.plan),
        "warnings": tag_warnings(analysis.notebook),
        "errors": [],
    }


def analyze_json(nb: Notebook) -> dict[str, Any]:
    """Analyse a notebook for the UI: the full answer, or ``ok: false`` with the error and the cells' roles."""
    try:
        return analysis_json(analyze(nb))
    except Nb2PipeError as exc:
        try:
            cells = _cells(plan_tags(nb))
        except Nb2PipeError:
            cells = []
        return {
            "ok": False,
            "name": None,
            "order": [],
            "stages": [],
            "edges": [],
            "parameters": [],
            "parameters_cell": None,
            "cells": cells,
            "warnings": tag_warnings(nb),
            "errors": [error_json(exc)],
        }
