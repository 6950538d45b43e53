"""IPython syntax in cells: translate it to Python and apply nb2pipe's policy to every magic.

IPython's own input transformers turn ``%magic``/``!shell`` syntax into ``get_ipython()`` calls; we then decide
per call, on the CST:

* display-only magics (``%matplotlib``, ``%config``, ``%load_ext autoreload`` ...) are dropped, leaving a comment;
* magics that only wrap code (``%time``, ``%%time``, ``%%capture``, ``%prun``) keep the code they wrap;
* ``%timeit``/``%%timeit`` are dropped: IPython runs them in a throwaway namespace, so they bind nothing;
* ``!pip install x`` / ``%pip install x`` become requirements of the pipeline;
* every other magic or shell command is a :class:`~nb2pipe.errors.MagicError`, unless the user opts in to keep
  them, in which case they run through :func:`nb2pipe.runtime.get_ipython` outside a kernel.

IPython is imported only for cells that need it: plain Python cells never pay for it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst

from .errors import CellSyntaxError, MagicError
from .fastvisit import parse_module
from .notebook import Cell

#: A statement as libcst types module and block bodies.
Stmt = cst.SimpleStatementLine | cst.BaseCompoundStatement

DISPLAY_MAGICS = frozenset(
    """matplotlib config load_ext reload_ext unload_ext autoreload aimport precision pprint xmode colors pinfo
    pinfo2 pdoc pdef psource pfile who whos who_ls lsmagic magic autosave doctest_mode history page
    connect_info qtconsole notebook alias_magic automagic autocall quickref killbgscripts""".split()
)
WRAPPING_LINE_MAGICS = frozenset({"time", "prun"})
WRAPPING_CELL_MAGICS = frozenset({"time", "capture", "prun"})
TIMING_MAGICS = frozenset({"timeit"})
PACKAGE_MAGICS = frozenset({"pip", "conda", "mamba", "micromamba", "uv"})


@dataclass
class ParsedCell:
    """A cell as Python: its CST plus what the magic policy decided."""

    cell: Cell
    module: cst.Module
    #: Packages asked for by ``pip install`` lines, in order.
    requirements: list[str] = field(default_factory=list)
    #: The cell keeps IPython calls that need :func:`nb2pipe.runtime.get_ipython`.
    uses_ipython: bool = False


def _syntax_error(cell: Cell, path: str, source: str, exc: cst.ParserSyntaxError) -> CellSyntaxError:
    # CPython's own parser words syntax errors best ("'(' was never closed"); ast.parse only parses, never runs.
    import ast
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the user's invalid escapes are not our warnings
            ast.parse(source)
    except SyntaxError as err:
        return CellSyntaxError(f"invalid Python at line {err.lineno}: {err.msg}", **cell.where(path))
    except (ValueError, MemoryError, RecursionError) as err:
        return CellSyntaxError(f"invalid Python: {err}", **cell.where(path))
    first = str(exc.message).strip().splitlines()[0] if str(exc.message).strip() else "invalid syntax"
    return CellSyntaxError(f"invalid Python at line {exc.raw_line}: {first}", **cell.where(path))


def to_python(source: str, cell: Cell, path: str) -> tuple[cst.Module, bool]:
    """Parse a cell, translating IPython syntax first when plain Python does not parse.

    Returns the module and whether IPython's translation was used.
    """
    try:
        return _parse(source, cell, path, check_nesting=not _maybe_ipython(source)), False
    except cst.ParserSyntaxError as first:
        if not _maybe_ipython(source):
            raise _syntax_error(cell, path, source, first) from None
        error = first
    from IPython.core.inputtransformer2 import TransformerManager

    translated: str = TransformerManager().transform_cell(source)  # type: ignore[no-untyped-call]
    try:
        return _parse(translated, cell, path, check_nesting=True), True
    except cst.ParserSyntaxError:
        # Report the position in the user's text, not in IPython's translation.
        raise _syntax_error(cell, path, translated, error) from None


def _parse(source: str, cell: Cell, path: str, *, check_nesting: bool) -> cst.Module:
    if check_nesting and source.count("(") + source.count("[") + source.count("{") > _MAX_NESTING:
        # libcst's native parser crashes the process on very deep nesting; CPython's parser refuses it cleanly
        # ("too many nested parentheses", at 200 levels), so let CPython look first when nesting is possible.
        python_error = _python_syntax_error(source, cell, path)
        if python_error is not None:
            raise python_error
    try:
        return parse_module(source)
    except RecursionError:
        raise CellSyntaxError("the code is nested too deeply to analyse", **cell.where(path)) from None


_MAX_NESTING = 190


def _python_syntax_error(source: str, cell: Cell, path: str) -> CellSyntaxError | None:
    import ast
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(source, "<cell>", "exec", ast.PyCF_ONLY_AST)
    except SyntaxError as err:
        return CellSyntaxError(f"invalid Python at line {err.lineno}: {err.msg}", **cell.where(path))
    except (ValueError, MemoryError, RecursionError) as err:
        return CellSyntaxError(f"invalid Python: {err}", **cell.where(path))
    return None


def _maybe_ipython(source: str) -> bool:
    for line in source.splitlines():
        s = line.strip()
        if s[:1] in ("%", "!") or s.endswith("?") or "= !" in s or "=!" in s or s.startswith("?"):
            return True
    return False


def _str_arg(call: cst.Call, index: int) -> str | None:
    if len(call.args) <= index:
        return None
    value = call.args[index].value
    if isinstance(value, cst.SimpleString | cst.ConcatenatedString):
        evaluated = value.evaluated_value
        return evaluated if isinstance(evaluated, str) else None
    return None


def _ipython_method(node: cst.BaseExpression) -> tuple[str, cst.Call] | None:
    """``(method, call)`` for ``get_ipython().method(...)`` (isinstance checks: libcst.matchers is slow to import)."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        receiver = node.func.value
        if (
            isinstance(receiver, cst.Call)
            and isinstance(receiver.func, cst.Name)
            and receiver.func.value == "get_ipython"
            and isinstance(node.func.attr, cst.Name)
        ):
            return node.func.attr.value, node
    return None


def _requirements(args: str) -> list[str]:
    try:
        words = shlex.split(args)
    except ValueError:
        words = args.split()
    if not words or words[0] != "install":
        return []
    reqs, skip_next = [], False
    for word in words[1:]:
        if skip_next:
            skip_next = False
        elif word in ("-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "-e"):
            skip_next = True
        elif not word.startswith("-"):
            reqs.append(word)
    return reqs


class MagicPolicy(cst.CSTTransformer):
    """Replace the ``get_ipython()`` calls of one cell according to the policy in the module docstring."""

    def __init__(self, cell: Cell, path: str, keep_magics: bool) -> None:
        super().__init__()
        self.cell, self.path, self.keep = cell, path, keep_magics
        self.requirements: list[str] = []
        self.uses_ipython = False

    # -- helpers -------------------------------------------------------------------------------------------------
    def _quote(self, kind: str, name: str, args: str) -> str:
        text = {"line": f"%{name} {args}", "cell": f"%%{name} {args}", "shell": f"!{args}"}[kind].strip()
        return text if len(text) <= 60 else text[:57] + "..."

    def _refuse(self, what: str) -> MagicError:
        return MagicError(
            f"{what} has no meaning outside IPython; remove it, tag the cell 'skip', "
            "or convert with --keep-magics to run it through IPython",
            **self.cell.where(self.path),
        )

    def _comment(self, text: str) -> cst.EmptyLine:
        return cst.EmptyLine(comment=cst.Comment(f"# nb2pipe: {text}"))

    def _parse_body(self, code: str) -> list[Stmt]:
        module, _ = to_python(code, self.cell, self.path)
        policy = MagicPolicy(self.cell, self.path, self.keep)
        module = module.visit(policy)
        self.requirements += policy.requirements
        self.uses_ipython |= policy.uses_ipython
        body: list[Stmt] = list(module.body)
        comments = [line for line in module.footer if line.comment]
        if body and comments:
            body.append(cst.SimpleStatementLine([cst.Pass()], leading_lines=comments))
        return body

    def _decide(self, stmt: Stmt) -> list[Stmt] | cst.EmptyLine | None:
        """Return replacement statements, a comment standing for a dropped statement, or None (keep)."""
        if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
            return None
        small = stmt.body[0]
        value = small.value if isinstance(small, cst.Expr | cst.Assign) else None
        found = _ipython_method(value) if value is not None else None
        if found is None:
            return None
        method, call = found
        if isinstance(small, cst.Assign):
            if method == "getoutput" and not self.keep:
                raise self._refuse(f"shell capture `!{_str_arg(call, 0)}`")
            self.uses_ipython = True
            return None
        name = _str_arg(call, 0) or ""
        if method == "system":
            cmd = name
            words = cmd.split()
            if (words and words[0] in PACKAGE_MAGICS | {"pip3"}) or words[:3] == ["python", "-m", "pip"]:
                args = cmd.split("pip", 1)[-1] if "pip" in words[0] or "pip" in words[:3] else cmd.split(None, 1)[-1]
                self.requirements += _requirements(args.strip())
                return self._comment(f"`{self._quote('shell', '', cmd)}` became a pipeline requirement")
            if self.keep:
                self.uses_ipython = True
                return None
            raise self._refuse(f"shell command `!{cmd}`")
        if method == "run_line_magic":
            args = _str_arg(call, 1) or ""
            shown = self._quote("line", name, args)
            if name in DISPLAY_MAGICS:
                return self._comment(f"dropped `{shown}` (display only)")
            if name in TIMING_MAGICS:
                return self._comment(f"dropped `{shown}` (IPython runs it in a throwaway namespace)")
            if name in PACKAGE_MAGICS:
                self.requirements += _requirements(args)
                return self._comment(f"`{shown}` became a pipeline requirement")
            if name in WRAPPING_LINE_MAGICS:
                return self._parse_body(args + "\n")
        elif method == "run_cell_magic":
            line, body = _str_arg(call, 1) or "", _str_arg(call, 2) or ""
            shown = self._quote("cell", name, line)
            if name in TIMING_MAGICS:
                return self._comment(f"dropped `{shown}` cell (IPython runs it in a throwaway namespace)")
            if name in WRAPPING_CELL_MAGICS:
                stmts = self._parse_body(body)
                return stmts or self._comment(f"`{shown}` cell was empty")
        else:
            shown = f"get_ipython().{method}(...)"
        if self.keep:
            self.uses_ipython = True
            return None
        raise self._refuse(f"magic `{shown}`")

    def _rewrite(self, body: Sequence[Stmt]) -> tuple[list[Stmt], list[cst.EmptyLine]]:
        out: list[Stmt] = []
        pending: list[cst.EmptyLine] = []
        for stmt in body:
            decided = self._decide(stmt)
            if decided is None:
                decided = [stmt]
            if isinstance(decided, cst.EmptyLine):
                pending += [*stmt.leading_lines, decided]
                continue
            for i, new in enumerate(decided):
                lead = list(stmt.leading_lines) if i == 0 and new is not stmt else []
                if pending or lead:
                    new = new.with_changes(leading_lines=[*pending, *lead, *new.leading_lines])
                    pending = []
                out.append(new)
        return out, pending

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        body, pending = self._rewrite(updated.body)
        return updated.with_changes(body=body, footer=[*pending, *updated.footer])

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        body, pending = self._rewrite([s for s in updated.body if isinstance(s, Stmt)])
        if not body:
            body = [cst.SimpleStatementLine([cst.Pass()], leading_lines=pending)]
            pending = []
        return updated.with_changes(body=body, footer=[*pending, *updated.footer])


def parse_cell(cell: Cell, path: str, *, keep_magics: bool = False) -> ParsedCell:
    """Parse one code cell into a CST with the magic policy applied."""
    module, translated = to_python(cell.source, cell, path)
    if not translated and "get_ipython" not in cell.source:
        return ParsedCell(cell, module)
    policy = MagicPolicy(cell, path, keep_magics)
    module = module.visit(policy)
    return ParsedCell(cell, module, policy.requirements, policy.uses_ipython)
