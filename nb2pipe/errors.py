"""The exceptions nb2pipe raises.

Every error a user can cause by what they feed us derives from :class:`Nb2PipeError`. Its message is one line
that names the notebook, the cell (number and id) and the cause, and suggests a fix where we know one; the CLI
prints exactly that line and exits with code 2. Subclasses carry the same facts as fields so that programs (the
Jupyter server extension, the tests) can read them without parsing text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, Unpack


class Where(TypedDict, total=False):
    """Location keywords accepted by every :class:`Nb2PipeError`."""

    path: str | None
    cell: int | None
    cell_id: str | None


class Nb2PipeError(Exception):
    """Root of every error caused by bad input to nb2pipe."""

    #: Exit code the CLI uses for this kind of error.
    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        cell: int | None = None,
        cell_id: str | None = None,
    ) -> None:
        #: The cause alone, without the location prefix.
        self.cause = message
        #: The notebook the error is about.
        self.path = path
        #: 1-based cell number, as shown in Jupyter's UI (``None`` when not about one cell).
        self.cell = cell
        #: The cell's nbformat id, when the notebook has ids.
        self.cell_id = cell_id
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.path:
            where.append(self.path)
        if self.cell is not None:
            where.append(f"cell {self.cell}" + (f" (id {self.cell_id})" if self.cell_id else ""))
        return (": ".join(where) + ": " if where else "") + self.cause

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the structured fields when the error crosses a process boundary.
        return (
            _rebuild,
            (type(self), self.cause, self.path, self.cell, self.cell_id, self.__dict__),
        )


def _rebuild(
    cls: type[Nb2PipeError],
    cause: str,
    path: str | None,
    cell: int | None,
    cell_id: str | None,
    state: dict[str, object],
) -> Nb2PipeError:
    err = Nb2PipeError.__new__(cls)
    Nb2PipeError.__init__(err, cause, path=path, cell=cell, cell_id=cell_id)
    err.__dict__.update(state)
    return err


class NotebookFormatError(Nb2PipeError):
    """The file is not a readable nbformat 4 notebook (corrupt JSON, old format, invalid schema)."""


class TagError(Nb2PipeError):
    """A cell's tags are malformed or contradict each other (bad stage name, unknown ``after:`` target)."""


class CellSyntaxError(Nb2PipeError):
    """A cell's code is not valid Python, even after IPython syntax has been translated."""


class MagicError(Nb2PipeError):
    """A magic or shell command that has no meaning outside IPython and that the user did not opt in to keep."""


class UnknownNameError(Nb2PipeError):
    """A cell reads a name that nothing before it binds."""

    def __init__(self, message: str, *, name: str, **where: Unpack[Where]) -> None:
        #: The name nobody binds.
        self.name = name
        super().__init__(message, **where)


class ParameterError(Nb2PipeError):
    """The parameters cell holds something other than literal assignments, or a parameter is defined twice."""


class CycleError(Nb2PipeError):
    """The stage graph has a cycle (usually from ``after:`` tags)."""

    def __init__(self, message: str, *, cycle: Sequence[str], **where: Unpack[Where]) -> None:
        #: The stages of the cycle, the first repeated at the end.
        self.cycle = list(cycle)
        super().__init__(message, **where)


class UnsupportedCodeError(Nb2PipeError):
    """Code that is valid in a notebook but would silently behave differently as a pipeline."""


class OutputError(Nb2PipeError):
    """The output directory cannot be written (not a directory, not ours, no space)."""
