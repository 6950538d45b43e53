"""Parameters as papermill users give them (``-p NAME VALUE``, ``-f params.yaml``), checked before anything runs.

papermill injects whatever it is given: an unknown name is a warning, ``-p n notanint`` becomes a string and fails
later as a TypeError deep inside the kernel. We check names against the notebook's parameters cell (with a "did you
mean"), type every value like the parameter's default or annotation (an int stays an int, ``-p lr 1`` for a float
parameter gives ``1.0``), and refuse what does not fit, naming the parameter, the value and the expected type.

Two sources of declared parameters share these rules: the converter's strict :class:`~nb2pipe.dataflow.Parameter`
list (a pipeline), and :func:`notebook_parameters`, which reads a plain notebook's ``parameters`` cell with the
standard library's ``ast`` (a tracked job needs no stage tags). Nothing here executes user code.
"""

from __future__ import annotations

import ast
import difflib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ParameterError

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True)
class Declared:
    """A parameter as declared in a notebook: its name, type (annotation or type of the default) and default."""

    name: str
    type: str
    default: Any
    #: The default as written in the notebook (shown in ``--help`` and forms).
    default_code: str
    #: False when the default is an expression we do not evaluate: values are then taken as literals or strings.
    literal: bool = True


def notebook_parameters(path: str | os.PathLike[str]) -> list[Declared] | None:
    """The parameters of a notebook's cell tagged ``parameters``; ``None`` when it has no such cell.

    papermill allows any code in that cell; we read assignments whose value is a literal (typed) and keep other
    assignments as untyped parameters, so injecting a value for them still works.
    """
    from .notebook import read_notebook

    nb = read_notebook(os.fspath(path))
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.tags]
    if not cells:
        return None
    declared: dict[str, Declared] = {}
    for cell in cells:
        try:
            tree = ast.parse(_strip_magics(cell.source))
        except SyntaxError as exc:
            raise ParameterError(
                f"the parameters cell is not valid Python (line {exc.lineno}: {exc.msg})", **cell.where(nb.path)
            ) from None
        for stmt in tree.body:
            target, value, annotation = _assignment(stmt)
            if target is None or value is None:
                continue
            code = ast.get_source_segment(_strip_magics(cell.source), value) or ast.unparse(value)
            try:
                default = ast.literal_eval(value)
                literal = True
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                default, literal = None, False
            type_name = annotation or (type(default).__name__ if literal else "any")
            declared[target] = Declared(target, type_name, default, code, literal)
    return list(declared.values())


def _assignment(stmt: ast.stmt) -> tuple[str | None, ast.expr | None, str | None]:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id, stmt.value, None
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
        return stmt.target.id, stmt.value, ast.unparse(stmt.annotation)
    return None, None, None


def _strip_magics(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def coerce(param: Declared, value: Any, *, source: str = "-p") -> Any:
    """Type ``value`` like ``param``: text from the command line is parsed, values from YAML are checked."""
    kind = _base_type(param.type)
    optional = _is_optional(param.type)
    if isinstance(value, str) and source == "-p":
        value = _parse_text(kind, value, optional)
    if value is None and optional:
        return None
    checked = _check(kind, value)
    if checked is _MISMATCH:
        shown = value if not isinstance(value, str) else repr(value)
        raise ParameterError(
            f"parameter {param.name!r} ({source}): {shown} is not a {param.type} (the default is {param.default_code})"
        )
    return checked


_MISMATCH: Any = object()


def _base_type(type_name: str) -> str:
    """``int | None`` -> ``int``; ``list[int]`` -> ``list``; ``Optional[float]`` -> ``float``."""
    text = type_name.replace(" ", "")
    if text.startswith("Optional[") and text.endswith("]"):
        text = text[len("Optional[") : -1]
    parts = [p for p in text.split("|") if p not in ("None", "NoneType")]
    text = parts[0] if len(parts) == 1 else "any"
    head = text.split("[", 1)[0].rsplit(".", 1)[-1].lower()
    return {"sequence": "list", "mapping": "dict"}.get(head, head)


def _is_optional(type_name: str) -> bool:
    text = type_name.replace(" ", "")
    return "None" in text.split("|") or text.startswith("Optional[") or text == "NoneType"


def _parse_text(kind: str, text: str, optional: bool) -> Any:
    if optional and text.lower() in ("none", "null"):
        return None
    if kind == "str":
        return text
    if kind == "bool":
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return text
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        lowered = text.strip().lower()
        if kind == "float" and lowered in ("nan", "inf", "-inf", "+inf"):
            return float(lowered)
        return text


def _check(kind: str, value: Any) -> Any:
    if kind in ("any", "nonetype", "object"):
        return value
    if kind == "bool":
        return value if isinstance(value, bool) else _MISMATCH
    if kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISMATCH
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _MISMATCH
        return float(value) if not (isinstance(value, float) and math.isnan(value)) else value
    if kind == "str":
        return value if isinstance(value, str) else _MISMATCH
    if kind in ("list", "tuple"):
        if isinstance(value, list | tuple):
            return list(value) if kind == "list" else tuple(value)
        return _MISMATCH
    if kind == "dict":
        return value if isinstance(value, dict) else _MISMATCH
    if kind == "literal":
        return value
    return value  # an annotation we do not model (a user class): trust the value


def load_parameter_files(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
    """Merge YAML (or JSON) parameter files, later files winning, like papermill's ``-f``."""
    import yaml

    merged: dict[str, Any] = {}
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
            data = yaml.safe_load(text)
        except OSError as exc:
            raise ParameterError(f"{path}: cannot read parameters file: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark is not None else ""
            raise ParameterError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
        if data is None:
            continue
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise ParameterError(f"{path}: a parameters file must be a mapping of names to values")
        merged.update(data)
    return merged


def resolve(
    declared: Sequence[Declared] | None,
    pairs: Sequence[tuple[str, str]] = (),
    files: Iterable[str | os.PathLike[str]] = (),
    *,
    target: str = "the notebook",
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The typed overrides for a run: files first, then ``values`` (Python API), then ``-p`` pairs.

    Returns only what the user gave (defaults stay in the notebook); raises :class:`ParameterError` for an unknown
    name (with a close match), a value of the wrong type, or any parameter given to a notebook that has none.
    """
    given: list[tuple[str, Any, str]] = [(k, v, "-f") for k, v in load_parameter_files(files).items()]
    given += [(k, v, "value") for k, v in (values or {}).items()]
    given += [(k, v, "-p") for k, v in pairs]
    if not given:
        return {}
    if declared is None:
        raise ParameterError(
            f"{target} has no cell tagged 'parameters', so {given[0][0]!r} cannot be set; tag the cell that "
            "assigns the defaults with 'parameters' (JupyterLab: property inspector -> Cell Tags)"
        )
    by_name = {p.name: p for p in declared}
    out: dict[str, Any] = {}
    for name, value, source in given:
        param = by_name.get(name)
        if param is None:
            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; parameters: {', '.join(by_name) or 'none'}"
            raise ParameterError(f"{target}: unknown parameter {name!r}{hint}")
        out[name] = coerce(param, value, source=source)
    return out


def add_parameter_options(
    parser: Any,
    *,
    files: bool = True,
    help: str = "set a parameter; the value is typed like its default in the parameters cell (repeatable)",
) -> None:
    """Add papermill's ``-p NAME VALUE`` (and ``-f FILE``) to an argparse parser, the same for every command.

    The values arrive as ``args.parameter`` (list of [name, text] pairs) and ``args.parameters_file``; hand them to
    :func:`resolve`.
    """
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help=help)
    if files:
        parser.add_argument(
            "-f",
            "--parameters-file",
            action="append",
            default=[],
            metavar="YAML",
            help="parameters from a YAML file (repeatable; later files and -p win)",
        )


def from_pipeline(parameters: Iterable[Any]) -> list[Declared]:
    """Adapt the converter's :class:`~nb2pipe.dataflow.Parameter` list (same fields) to :class:`Declared`."""
    return [Declared(p.name, p.type, p.default, p.default_code) for p in parameters]


def python_literal(value: Any) -> str:
    """Source code for a typed value that round-trips through ``ast.literal_eval`` (safe injection, never raw code)."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return f"float({str(value)!r})"
    text = repr(value)
    if not isinstance(value, float):
        try:  # never inject an arbitrary repr(): only what reads back as the same plain literal
            ast.literal_eval(text)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            raise ValueError(f"{type(value).__name__} value {text[:60]} cannot be injected as a literal") from None
    return text


def parameter_text(value: Any) -> str:
    """The ``-p`` text that :func:`coerce` reads back as the same typed value (what launchers put on a command line)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)  # 'nan', 'inf' and plain floats all parse back
    return python_literal(value)
