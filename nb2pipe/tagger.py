"""``nb2pipe tag --by headings``: propose stages for an untagged notebook from its markdown headings.

Every markdown heading (any level) that is followed by code starts a stage named after the heading's text. A
notebook whose headings give fewer than two stages (all of them in the title cell, or prose between the code and
no headings at all) is split at its markdown cells instead, each stage named after the cell's first words: one
stage would be a pipeline in name only. Cells that already carry nb2pipe or Kale tags keep them: proposing never
overrides a user's decision. The result is a starting point meant to be reviewed in the sidebar or in git.
"""

from __future__ import annotations

import json
import keyword
import re
from pathlib import Path

from .notebook import read_notebook
from .output import write_atomic

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
_OURS = ("stage:", "step:", "block:")


def _slug(text: str) -> str:
    text = re.sub(r"[`*_\[\]()<>]", " ", text)  # markdown emphasis, links, code
    name = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    name = re.sub(r"^[0-9_]+", "", name)
    name = "_".join(name.split("_")[:5]) or "stage"
    if keyword.iskeyword(name) or name in ("shared", "pipeline", "stages", "main", "nb2pipe", "runtime", "prelude"):
        name += "_stage"
    return name


def propose_stages(raw: dict[str, object]) -> dict[str, object]:
    """Return a copy of notebook JSON with ``stage:`` tags added after each markdown heading."""
    cells = raw.get("cells")
    if not isinstance(cells, list):
        return raw
    if any(
        isinstance(c, dict) and any(str(t).startswith(_OURS) for t in c.get("metadata", {}).get("tags", []))
        for c in cells
    ):
        return raw  # already tagged: keep the user's stages
    plan = _plan(cells, prose=False)
    if len(plan) < 2:
        plan = _plan(cells, prose=True)
    for index, name in plan:
        cells[index].setdefault("metadata", {}).setdefault("tags", []).append(f"stage:{name}")
    return raw


def _text(cell: dict[str, object]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _plan(cells: list[object], prose: bool) -> list[tuple[int, str]]:
    """(code cell index, stage name) for each code cell that starts a stage; ``prose``: any markdown cell does."""
    plan: list[tuple[int, str]] = []
    used: set[str] = set()
    pending: str | None = None
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            continue
        text = _text(cell)
        if cell.get("cell_type") == "markdown":
            headings = _HEADING.findall(text)
            if headings:
                pending = _slug(headings[-1][1])
            elif prose and text.strip():
                pending = _slug(text.strip().splitlines()[0])
            continue
        if cell.get("cell_type") != "code" or pending is None or not text.strip():
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags or "skip" in tags or "shared" in tags:
            continue
        name, n = pending, 2
        while name in used:
            name, n = f"{pending}_{n}", n + 1
        used.add(name)
        plan.append((index, name))
        pending = None
    return plan


def tag_by_headings(notebook: str | Path, output: str | Path | None = None) -> dict[str, object]:
    """Tag ``notebook`` by its headings and write the result to ``output`` (the same file when None)."""
    nb = read_notebook(notebook)  # validates, with our errors
    data = json.loads(nb.raw)
    tagged = propose_stages(data)
    text = json.dumps(tagged, indent=1, ensure_ascii=False) + "\n"
    write_atomic(Path(output or notebook), text.encode())
    return tagged
