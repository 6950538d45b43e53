"""Reading notebooks: strict, fast, and with errors that name the file and the cell.

We read the JSON ourselves instead of going through ``nbformat.read`` + ``validate``: the converter needs only a
handful of fields, the CLI must start fast, and we want our own one-line errors (``nbformat`` reports schema
problems as multi-page jsonschema dumps).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import NotebookFormatError, Where


@dataclass(frozen=True)
class Cell:
    """One cell, as the converter needs it."""

    #: 0-based position in the notebook.
    index: int
    #: nbformat cell id (``None`` for nbformat < 4.5).
    id: str | None
    #: ``code``, ``markdown`` or ``raw``.
    cell_type: str
    #: The cell's source as one string.
    source: str
    #: ``metadata.tags`` in their original order.
    tags: tuple[str, ...] = ()

    @property
    def number(self) -> int:
        """1-based number, as users count cells."""
        return self.index + 1

    def where(self, path: str) -> Where:
        """Keyword arguments locating this cell for an :class:`~nb2pipe.errors.Nb2PipeError`."""
        return {"path": path, "cell": self.number, "cell_id": self.id}


@dataclass(frozen=True)
class Notebook:
    """A notebook read from disk."""

    #: Path as given by the user (used in messages).
    path: str
    cells: tuple[Cell, ...]
    #: Top-level notebook metadata.
    metadata: dict[str, object] = field(default_factory=dict, hash=False, compare=False)
    #: The raw bytes, for content hashes.
    raw: bytes = field(default=b"", repr=False)

    @property
    def name(self) -> str:
        """File name without suffix."""
        return Path(self.path).stem


_CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def _source(value: object, path: str, index: int, cid: str | None) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(line, str) for line in value):
        text = "".join(value)
    else:
        raise NotebookFormatError(
            "'source' must be a string or a list of strings", path=path, cell=index + 1, cell_id=cid
        )
    if "\x00" in text:
        raise NotebookFormatError(
            "the source contains a NUL character; remove it", path=path, cell=index + 1, cell_id=cid
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON escapes can smuggle in unpaired surrogates ("\udcff")
        raise NotebookFormatError(
            f"the source contains an invalid character ({text[exc.start]!r} at offset {exc.start}); remove it",
            path=path,
            cell=index + 1,
            cell_id=cid,
        ) from None
    return text


def _tags(metadata: object, path: str, index: int, cid: str | None) -> tuple[str, ...]:
    if not isinstance(metadata, dict):
        raise NotebookFormatError("cell 'metadata' must be an object", path=path, cell=index + 1, cell_id=cid)
    tags = metadata.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise NotebookFormatError("'metadata.tags' must be a list of strings", path=path, cell=index + 1, cell_id=cid)
    return tuple(t.strip() for t in tags if t.strip())


def parse_notebook(raw: bytes, path: str) -> Notebook:
    """Parse notebook bytes; raise :class:`NotebookFormatError` with a one-line cause on any defect."""
    try:
        text = raw.decode("utf-8-sig")  # a BOM is harmless: accept it
    except UnicodeDecodeError as exc:
        raise NotebookFormatError(f"not UTF-8 text (byte {exc.start}); notebooks are UTF-8 JSON", path=path) from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise NotebookFormatError("not a notebook (JSON nested too deeply)", path=path) from None
    except json.JSONDecodeError as exc:
        raise NotebookFormatError(
            f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "the file may be truncated or have a merge conflict",
            path=path,
        ) from None
    if not isinstance(data, dict):
        raise NotebookFormatError("not a notebook (the JSON top level is not an object)", path=path)
    major = data.get("nbformat")
    if major is None and "worksheets" not in data:
        raise NotebookFormatError("not a notebook (no 'nbformat' field)", path=path)
    if not isinstance(major, int) or major < 4:
        raise NotebookFormatError(
            f"nbformat {major} notebooks are not supported; upgrade it with "
            f"`jupyter nbconvert --to notebook --nbformat 4 --inplace {path}`",
            path=path,
        )
    if major > 4:
        raise NotebookFormatError(f"nbformat {major} is newer than this nb2pipe knows", path=path)
    cells = data.get("cells")
    if not isinstance(cells, list):
        raise NotebookFormatError("'cells' is missing or not a list", path=path)
    out = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise NotebookFormatError("cell is not an object", path=path, cell=index + 1)
        cid = cell.get("id")
        if cid is not None and (not isinstance(cid, str) or not _CELL_ID.fullmatch(cid)):
            raise NotebookFormatError(
                f"cell id {cid!r} is invalid: nbformat allows 1-64 letters, digits, '-' and '_' "
                "(`python -m nbformat.validator` reports it; delete the id to get a new one)",
                path=path,
                cell=index + 1,
            )
        ctype = cell.get("cell_type")
        if ctype not in ("code", "markdown", "raw"):
            raise NotebookFormatError(f"unknown cell_type {ctype!r}", path=path, cell=index + 1, cell_id=cid)
        if "source" not in cell:
            raise NotebookFormatError("cell has no 'source'", path=path, cell=index + 1, cell_id=cid)
        out.append(
            Cell(
                index=index,
                id=cid,
                cell_type=ctype,
                source=_source(cell["source"], path, index, cid),
                tags=_tags(cell.get("metadata", {}), path, index, cid),
            )
        )
    metadata = data.get("metadata", {})
    return Notebook(
        path=path,
        cells=tuple(out),
        metadata=metadata if isinstance(metadata, dict) else {},
        raw=raw,
    )


def read_notebook(path: str | Path) -> Notebook:
    """Read and check a notebook file."""
    shown = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotebookFormatError("no such file", path=shown) from None
    except IsADirectoryError:
        raise NotebookFormatError("is a directory, not a notebook", path=shown) from None
    except OSError as exc:
        raise NotebookFormatError(f"cannot read: {exc.strerror}", path=shown) from None
    return parse_notebook(raw, shown)
