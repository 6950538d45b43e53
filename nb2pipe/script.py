"""The one-file export: a plain Python script with a function per stage, the parameters as a typed command line
and a ``main()`` that runs the stages in order.

nbconvert's own script exporter copies the cells verbatim: its output needs IPython for the magics and drops the
parameters. This script is built from the same analysis as the pipeline package and from the same pieces of
:mod:`nb2pipe.emit` (stage functions are the package's stage functions, the shared code is ``shared.py``'s body),
so it computes what the package computes and runs with nothing but Python and the notebook's own imports.

All of a package's modules become one namespace here, so every name we add (stage functions, ``main``,
``parse_args``, ``argparse`` and the small argument parsers) avoids the names the notebook's code sees at module
level, and an import that binds a name differently in two stages is imported inside the stage that needs it.
Like the package, the script is a pure function of the notebook: same notebook in, same bytes out.
"""

from __future__ import annotations

import ast
import builtins
import keyword
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from .converter import Analysis, analyze
from .dataflow import Flow, Parameter, StageFlow
from .emit import docstring, import_lines, import_sort_key, shared_body, stage_doc, stage_function
from .errors import OutputError, UnsupportedCodeError
from .magics import Stmt

_EQUAL = cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))
#: Names ``main`` and ``parse_args`` use as locals: a module-level function with one of them would be shadowed.
_LOCALS = frozenset({"args", "argv", "parser", "results"})
#: Calls longer than this are written one argument per line, as a formatter would.
_WIDTH = 100

_BOOLEAN = '''
def _boolean(text):
    """Type of bool parameters on the command line: true/false, yes/no, on/off, 1/0."""
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
'''

_LITERAL = '''
def _literal(kind):
    """Type of list, tuple, dict and None-default parameters: a Python literal (of ``kind`` when given)."""

    def parse(text):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a Python literal") from None
        if kind is not None and not isinstance(value, kind):
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}")
        return value

    return parse
'''


@dataclass
class _Names:
    """The script's module-level namespace: the notebook's names first, ours fitted around them."""

    #: Names the notebook's code may read at module level: builtins, imports, shared definitions.
    taken: set[str]
    #: Bound name -> the import statement that binds it at module level.
    imports: dict[str, str] = field(default_factory=dict)

    def fresh(self, *candidates: str) -> str:
        """The first free candidate (or the last one numbered), now taken."""
        free = [c for c in candidates if c not in self.taken and not keyword.iskeyword(c)]
        n = 2
        while not free:
            numbered = f"{candidates[-1]}_{n}"
            free = [numbered] if numbered not in self.taken else []
            n += 1
        self.taken.add(free[0])
        return free[0]

    def module(self, code: str) -> str:
        """The name under which the standard-library import ``code`` is available at module level."""
        bound = _bound_name(code)
        if self.imports.get(bound) == code:
            return bound
        if bound not in self.taken:
            self.taken.add(bound)
            self.imports[bound] = code
            return bound
        alias = self.fresh(f"{bound}_")
        self.imports[alias] = f"{code} as {alias}"
        return alias


@dataclass(frozen=True)
class ScriptPlan:
    """Which function runs which stage, and which imports stay local to one stage function."""

    #: Stage name -> function name in the script.
    functions: dict[str, str]
    #: Stage name -> imports placed inside that stage's function (they bind a name differently elsewhere).
    local_imports: dict[str, list[str]]
    names: _Names


def _bound_name(code: str) -> str:
    node = ast.parse(code).body[0]
    assert isinstance(node, ast.Import | ast.ImportFrom)
    alias = node.names[0]
    return alias.asname or alias.name.split(".")[0]


def plan_script(flow: Flow) -> ScriptPlan:
    """Decide the script's module-level names; stable for a given flow."""
    names = _Names(set(dir(builtins)) | {"__name__", "__file__", "__doc__"} | _LOCALS)
    shared = {n for u in flow.shared if u.kind not in ("import", "star", "future") for n in u.binds}
    names.taken |= shared
    for code in flow.shared_imports:
        names.imports.setdefault(_bound_name(code), code)
    local_imports: dict[str, list[str]] = {}
    for stage in flow.stages:
        for code in stage.imports:
            bound = _bound_name(code)
            if bound in shared or names.imports.setdefault(bound, code) != code:
                local_imports.setdefault(stage.name, []).append(code)
    names.taken.update(names.imports)
    functions = {s.name: names.fresh(s.name, f"{s.name}_stage") for s in flow.stages}
    return ScriptPlan(functions, local_imports, names)


def _string(text: str) -> cst.SimpleString:
    """A string literal for ``text``, in double quotes unless the text holds one."""
    code = repr(text)
    if code.startswith("'") and '"' not in text:
        code = '"' + code[1:-1] + '"'
    return cst.SimpleString(code)


def _newline(indent: str) -> cst.ParenthesizedWhitespace:
    return cst.ParenthesizedWhitespace(
        first_line=cst.TrailingWhitespace(), indent=True, last_line=cst.SimpleWhitespace(indent)
    )


def _call(func: cst.BaseExpression, args: list[tuple[str | None, cst.BaseExpression]], before: int) -> cst.Call:
    """A call, one argument per line (with a trailing comma) when its line, ``before`` characters up to the call,
    would be longer than a formatter allows."""
    flat = [
        cst.Arg(value, keyword=cst.Name(k) if k else None, equal=_EQUAL if k else cst.MaybeSentinel.DEFAULT)
        for k, value in args
    ]
    call = cst.Call(func, args=flat)
    if before + len(cst.Module([]).code_for_node(call)) <= _WIDTH or not flat:
        return call
    split = [a.with_changes(comma=cst.Comma(whitespace_after=_newline("    "))) for a in flat]
    split[-1] = split[-1].with_changes(comma=cst.Comma(whitespace_after=_newline("")))
    return cst.Call(func, args=split, whitespace_before_args=_newline("    "))


def _line(expr: cst.BaseExpression, target: cst.BaseAssignTargetExpression | None = None) -> cst.SimpleStatementLine:
    if target is None:
        return cst.SimpleStatementLine([cst.Expr(expr)])
    return cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(target)], expr)])


def _attr(*parts: str) -> cst.BaseExpression:
    expr: cst.BaseExpression = cst.Name(parts[0])
    for part in parts[1:]:
        expr = cst.Attribute(expr, cst.Name(part))
    return expr


def _subscript(value: cst.BaseExpression, *keys: str) -> cst.Subscript:
    """``value["a"]["b"]`` for keys ``a``, ``b`` (at least one)."""
    out = cst.Subscript(value, [cst.SubscriptElement(cst.Index(_string(keys[0])))])
    for key in keys[1:]:
        out = cst.Subscript(out, [cst.SubscriptElement(cst.Index(_string(key)))])
    return out


def _kind(param: Parameter) -> str:
    """How the command line types a parameter: like its default, or its annotation when that is a plain type."""
    if isinstance(param.default, str):
        return "str"  # argparse passes string defaults through ``type``: only ``str`` keeps them as they are
    kind = param.type.replace(" ", "")
    return kind if kind in ("int", "float", "bool", "list", "tuple", "dict") else "literal"


def _option(param: Parameter, used: set[str]) -> str:
    """``--n-estimators`` for ``n_estimators``; the name as written when the dashed form is taken."""
    for option in (f"--{param.name.replace('_', '-')}" if not param.name.startswith("_") else "", f"--{param.name}"):
        if option and option not in used:
            used.add(option)
            return option
    option = f"--{param.name}_"
    used.add(option)
    return option


def _help(param: Parameter) -> str:
    shown = param.default_code if "\n" not in param.default_code else repr(param.default)
    return f"{param.type} (default: {shown})".replace("%", "%%")  # argparse formats help with %


def _parse_args_function(flow: Flow, description: str, names: _Names, helpers: dict[str, str]) -> cst.FunctionDef:
    argparse_name = names.module("import argparse")
    parser = cst.Name("parser")
    body: list[Stmt] = [
        docstring(
            ["The notebook's parameters as command-line options, each defaulting to the notebook's value."], "    "
        ),
        _line(
            _call(
                _attr(argparse_name, "ArgumentParser"), [("description", _string(description))], len("    parser = ")
            ),
            parser,
        ),
    ]
    used = {"-h", "--help"}
    for param in flow.parameters:
        kind = _kind(param)
        args: list[tuple[str | None, cst.BaseExpression]] = [
            (None, _string(_option(param, used))),
            ("dest", _string(param.name)),
        ]
        if kind in ("int", "float"):
            args.append(("type", cst.Name(kind)))
        elif kind == "bool":
            args.append(("type", cst.Name(helpers["bool"])))
        elif kind != "str":
            literal_kind = cst.Name(kind) if kind != "literal" else cst.Name("None")
            args.append(("type", cst.Call(cst.Name(helpers["literal"]), [cst.Arg(literal_kind)])))
        args.append(("default", cst.parse_expression(param.default_code)))
        args.append(("metavar", _string(kind.upper() if kind != "literal" else "LITERAL")))
        args.append(("help", _string(_help(param))))
        body.append(_line(_call(_attr("parser", "add_argument"), args, len("    "))))
    body.append(
        cst.SimpleStatementLine([cst.Return(cst.Call(_attr("parser", "parse_args"), [cst.Arg(cst.Name("argv"))]))])
    )
    return cst.FunctionDef(
        name=cst.Name(helpers["parse_args"]),
        params=cst.Parameters([cst.Param(cst.Name("argv"), default=cst.Name("None"), equal=_EQUAL)]),
        body=cst.IndentedBlock(body),
        leading_lines=[cst.EmptyLine(), cst.EmptyLine()],
    )


def _main_function(flow: Flow, plan: ScriptPlan, helpers: dict[str, str]) -> cst.FunctionDef:
    by_name = {s.name: s for s in flow.stages}
    body: list[Stmt] = [
        docstring(
            [
                "Run the stages in order with the parameters from the command line.",
                "",
                "Returns ``{stage: {output: value}}``.",
            ],
            "    ",
        ),
        _line(cst.Call(cst.Name(helpers["parse_args"]), [cst.Arg(cst.Name("argv"))]), cst.Name("args")),
        _line(cst.Dict([]), cst.Name("results")),
    ]
    for name in flow.order:
        stage = by_name[name]
        args: list[tuple[str | None, cst.BaseExpression]] = [
            (n, _subscript(cst.Name("results"), producer, n)) for n, producer in stage.inputs.items()
        ]
        args += [(n, _attr("args", n)) for n in stage.params]
        call = _call(cst.Name(plan.functions[name]), args, len(f'    results["{name}"] = '))
        body.append(_line(call, _subscript(cst.Name("results"), name)))
    body.append(cst.SimpleStatementLine([cst.Return(cst.Name("results"))]))
    return cst.FunctionDef(
        name=cst.Name(helpers["main"]),
        params=cst.Parameters([cst.Param(cst.Name("argv"), default=cst.Name("None"), equal=_EQUAL)]),
        body=cst.IndentedBlock(body),
        leading_lines=[cst.EmptyLine(), cst.EmptyLine()],
    )


def _helper(code: str, name: str, renames: Mapping[str, str]) -> cst.FunctionDef:
    """One of the fixed helper functions, renamed to fit the script's namespace."""
    func = cst.parse_statement(code.lstrip())
    assert isinstance(func, cst.FunctionDef)

    class _Rename(cst.CSTTransformer):
        def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
            return updated.with_changes(value=renames.get(updated.value, updated.value))

    renamed = func.visit(_Rename())
    assert isinstance(renamed, cst.FunctionDef)
    return renamed.with_changes(name=cst.Name(name), leading_lines=[cst.EmptyLine(), cst.EmptyLine()])


def _module_doc(analysis: Analysis, notebook: str) -> list[str]:
    flow = analysis.flow
    doc = [
        f"Pipeline `{analysis.name}` as one script, generated by nb2pipe from {notebook}.",
        "",
        "It runs with plain Python, without Jupyter or nb2pipe: `--help` lists the notebook's parameters and their",
        "defaults, and main() runs the stages in order: " + (" -> ".join(flow.order) or "none") + ".",
    ]
    if flow.requirements:
        doc += ["", "Installed by the notebook (%pip / !pip): " + ", ".join(flow.requirements) + "."]
    doc += ["", "Generated code: edit the notebook and export it again (`nb2pipe export script NOTEBOOK -o FILE`)."]
    return doc


def render_script(analysis: Analysis) -> str:
    """The script for an analysed notebook, as text."""
    flow = analysis.flow
    notebook = Path(analysis.notebook.path).name
    kept = [s.name for s in flow.stages if s.uses_ipython]
    if kept:
        raise UnsupportedCodeError(
            f"stage {kept[0]!r} keeps IPython magics (--keep-magics), which a plain Python script cannot run; "
            "export without --keep-magics",
            path=analysis.notebook.path,
        )
    plan = plan_script(flow)
    names = plan.names
    kinds = {_kind(p) for p in flow.parameters}
    helpers = {"parse_args": names.fresh("parse_args", "parse_arguments"), "main": names.fresh("main", "run_main")}
    renames: dict[str, str] = {}
    extra: list[cst.FunctionDef] = []
    if "bool" in kinds or kinds - {"int", "float", "str", "bool"}:
        renames["argparse"] = names.module("import argparse")
    if "bool" in kinds:
        helpers["bool"] = names.fresh("_boolean", "_nb2pipe_boolean")
        extra.append(_helper(_BOOLEAN, helpers["bool"], renames))
    if kinds - {"int", "float", "str", "bool"}:
        renames["ast"] = names.module("import ast")
        helpers["literal"] = names.fresh("_literal", "_nb2pipe_literal")
        extra.append(_helper(_LITERAL, helpers["literal"], renames))
    description = f"Pipeline `{analysis.name}` from {notebook}: runs its stages in order."
    parse_args = _parse_args_function(flow, description, names, helpers)

    head: list[Stmt] = [docstring(_module_doc(analysis, notebook))]
    head += import_lines(flow.futures)
    imports = sorted(set(names.imports.values()), key=import_sort_key)
    stars = list(dict.fromkeys([*flow.shared_star, *(m for s in flow.stages for m in s.star_imports)]))
    head += import_lines(imports)
    head += import_lines([f"from {m} import *" for m in stars])
    if len(head) > 1:
        head[1] = head[1].with_changes(leading_lines=[cst.EmptyLine()])

    body: list[Stmt] = [*head, *shared_body(flow)]
    by_name = {s.name: s for s in flow.stages}
    for name in flow.order:
        body.append(_stage(by_name[name], flow, plan, analysis.notebook.path))
    body += extra
    body.append(parse_args)
    body.append(_main_function(flow, plan, helpers))
    guard = cst.parse_statement(f'if __name__ == "__main__":\n    {helpers["main"]}()\n')
    body.append(guard.with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()]))
    code = cst.Module(body=body).code
    try:
        compile(code, notebook, "exec", dont_inherit=True)
    except SyntaxError as exc:  # the stage modules compiled, so this is ours to fix
        raise UnsupportedCodeError(
            f"the exported script does not compile ({exc.msg}, line {exc.lineno}); please report it",
            path=analysis.notebook.path,
        ) from None
    return code


def _stage(stage: StageFlow, flow: Flow, plan: ScriptPlan, path: str) -> cst.FunctionDef:
    doc = [f"Stage `{stage.name}`.", "", *stage_doc(stage)]
    if stage.outputs:
        doc.append("Returns: " + ", ".join(stage.outputs) + ".")
    prologue: list[Stmt] = [docstring(doc, "    ")]
    prologue += import_lines(sorted(plan.local_imports.get(stage.name, []), key=import_sort_key))
    return stage_function(stage, flow, path, name=plan.functions[stage.name], prologue=prologue)


def export_script(
    notebook: str | Path,
    output: str | Path | None = None,
    *,
    name: str | None = None,
    extra_state: Mapping[str, str] | None = None,
) -> str:
    """Export ``notebook`` as one script; write it atomically to ``output`` when given; return its text.

    The notebook is never modified. Raises :class:`~nb2pipe.errors.Nb2PipeError` for anything the converter
    refuses, before anything is written.
    """
    from .output import write_atomic

    code = render_script(analyze(notebook, name=name, extra_state=extra_state))
    if output is not None:
        target = Path(output)
        if target.is_dir():
            raise OutputError(f"{target} is a directory; give the script's file name, e.g. {target}/pipeline.py")
        try:
            write_atomic(target, code.encode())  # keeps a replaced file's mode (an executable stays executable)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    return code
