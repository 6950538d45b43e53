"""Test helpers: build small notebooks on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbformat import v4

Cell = tuple[str, Sequence[str] | str]


def make_notebook(tmp_path: Path, cells: Sequence[Cell], name: str = "nb.ipynb") -> Path:
    """Write an nbformat 4.5 notebook with cell ids ``c0``, ``c1``...; return its path.

    ``cells`` holds ``(source, tags)`` tuples for code cells (``tags`` a list of strings) and
    ``(source, "markdown")`` for markdown cells.
    """
    nb = v4.new_notebook()
    nb.nbformat, nb.nbformat_minor = 4, 5
    for i, (source, tags) in enumerate(cells):
        if tags == "markdown":
            cell = v4.new_markdown_cell(source)
        else:
            assert not isinstance(tags, str), f"tags must be a list, not {tags!r}"
            cell = v4.new_code_cell(source)
            if tags:
                cell.metadata["tags"] = list(tags)
        cell.id = f"c{i}"
        nb.cells.append(cell)
    path = Path(tmp_path) / name
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path
