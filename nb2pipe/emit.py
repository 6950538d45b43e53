"""Code generation: stage modules, the shared module, the pipeline driver, the pipeline definition and lock.

Stage functions are built as libcst nodes around the user's own statements, so comments and formatting survive.
Everything here is a pure function of the :class:`~nb2pipe.dataflow.Flow`: same notebook in, same bytes out.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from dataclasses import dataclass

import libcst as cst

from .dataflow import Flow, StageFlow
from .errors import UnsupportedCodeError
from .fastvisit import module_code
from .magics import Stmt
from .scope_analysis import Unit

FORMAT_VERSION = 1
_EQUAL = cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))


@dataclass(frozen=True)
class Rendered:
    """The generated package, as file contents relative to the package directory."""

    name: str
    files: dict[str, str]
    versions: dict[str, str]
    spec: dict[str, object]


def _cell_label(unit_or_cell: Unit) -> str:
    c = unit_or_cell.cell.cell
    return f"cell {c.id}" if c.id else f"cell #{c.number}"


def _version(code: str, *extra: str) -> str:
    """Hash of normalized code: comments, blank lines and formatting do not count."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes in the user's strings are not our warnings
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            # Code that compiles in a notebook but not inside a function (e.g. `nonlocal` at top level).
            raise UnsupportedCodeError(
                f"this code cannot run inside a stage function: {exc.msg} (generated line {exc.lineno})"
            ) from None
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the module docstring names cells, which is provenance, not code
    digest = hashlib.sha256(ast.dump(ast.Module(body=body, type_ignores=[])).encode())
    for item in extra:
        digest.update(b"\0" + item.encode())
    return digest.hexdigest()[:16]


class _GlobalToNonlocal(cst.CSTTransformer):
    """Inside a stage function, a definition's ``global x`` must name the stage's local ``x``."""

    def __init__(self, local: set[str], unit: Unit, path: str) -> None:
        super().__init__()
        self.local, self.unit, self.path = local, unit, path

    def leave_Global(self, original: cst.Global, updated: cst.Global) -> cst.Nonlocal:
        names = [n.name.value for n in updated.names]
        missing = [n for n in names if n not in self.local]
        if missing:
            raise UnsupportedCodeError(
                f"`global {', '.join(missing)}` in a function creates a variable no stage binds; "
                "assign it at the top level of a cell first",
                **self.unit.cell.cell.where(self.path),
            )
        return cst.Nonlocal(names=updated.names)


def _globals_to_nonlocals(stmt: Stmt, local: set[str], unit: Unit, path: str) -> Stmt:
    if "global" not in unit.cell.cell.source:  # no `global` statement to rewrite: skip rebuilding the tree
        return stmt
    new = stmt.visit(_GlobalToNonlocal(local, unit, path))
    assert isinstance(new, Stmt)
    return new


def _is_global_stmt(stmt: Stmt) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and all(isinstance(s, cst.Global) for s in stmt.body)


def _comment(text: str) -> cst.EmptyLine:
    return cst.EmptyLine(comment=cst.Comment("# " + text))


def _body_statements(stage: StageFlow, local: set[str], path: str, defined_in: dict[int, str]) -> list[Stmt]:
    out: list[Stmt] = []
    for name in stage.declared:
        note = _comment(f"`{name}` is bound here only by a function's `global {name}`: declared for its `nonlocal`")
        out.append(cst.SimpleStatementLine([cst.AnnAssign(cst.Name(name), cst.Annotation(cst.Name("object")))], [note]))
    for unit in stage.copies:
        stmt = _globals_to_nonlocals(unit.stmt, local, unit, path)
        label = f"definition from stage {defined_in.get(unit.pos, '?')!r} ({_cell_label(unit)}), used here"
        out.append(stmt.with_changes(leading_lines=[_comment(label)]))
    current = None
    pending: list[cst.EmptyLine] = []
    for unit in stage.body:
        if _is_global_stmt(unit.stmt):
            continue
        stmt = unit.stmt
        if unit.kind == "def":
            stmt = _globals_to_nonlocals(stmt, local, unit, path)
        lead = list(stmt.leading_lines)
        if unit.cell is not current:
            if current is not None:
                pending += [ln for ln in current.module.footer if ln.comment]
            current = unit.cell
            header = [ln for ln in unit.cell.module.header if ln.comment]
            lead = [*pending, _comment(f"--- {_cell_label(unit)} ---"), *header, *lead]
            pending = []
        out.append(stmt.with_changes(leading_lines=lead))
    if current is not None:
        pending += [ln for ln in current.module.footer if ln.comment]
    out.append(_return_dict(stage.outputs, pending))
    return out


def _return_dict(names: list[str], leading_lines: list[cst.EmptyLine]) -> cst.SimpleStatementLine:
    """``return {"a": a, "b": b}``, built as nodes (the tree parsing that line gives, without a parse per stage)."""
    elements = [cst.DictElement(cst.SimpleString(f'"{n}"'), cst.Name(n)) for n in names]
    return cst.SimpleStatementLine([cst.Return(cst.Dict(elements))], leading_lines=leading_lines)


def _shared_import(names: list[str]) -> cst.SimpleStatementLine:
    """``from ..shared import a, b``, built as nodes: every stage imports a different set, so caching cannot help."""
    aliases = [cst.ImportAlias(cst.Name(n)) for n in names]
    return cst.SimpleStatementLine([cst.ImportFrom(cst.Name("shared"), aliases, relative=[cst.Dot(), cst.Dot()])])


def function_name(stage: StageFlow) -> str:
    used = set(stage.inputs) | set(stage.params) | set(stage.shared_names) | stage.local_names
    used |= {code.rsplit(" ", 1)[-1] for code in stage.imports}
    return stage.name if stage.name not in used else f"{stage.name}_stage"


def docstring(lines: list[str], indent: str = "") -> cst.SimpleStatementLine:
    """A triple-quoted docstring; ``indent`` is the indentation of the block it opens (for a function's)."""
    text = "\n".join(indent + line if i and line else line for i, line in enumerate(lines))
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    end = "" if len(lines) == 1 else "\n" + indent  # a one-line docstring closes on its line
    return cst.SimpleStatementLine([cst.Expr(cst.SimpleString(f'"""{text}{end}"""'))])


@functools.lru_cache(maxsize=4096)
def _statement(code: str) -> Stmt:
    """One parsed line of generated code; nodes are immutable, so stages importing the same thing share it."""
    return cst.parse_statement(code + "\n")


def import_lines(codes: list[str]) -> list[Stmt]:
    """One statement per import line, in the order given."""
    return [_statement(code) for code in codes]


def stage_doc(stage: StageFlow) -> list[str]:
    """The provenance of a stage: its cells, where its inputs come from, the process-wide state it touches."""
    cells = ", ".join(c.cell.id or f"#{c.cell.number}" for c in stage.cells)
    doc = [f"Cells: {cells}."]
    if stage.inputs:
        doc.append("Inputs: " + ", ".join(f"{n} (from {p})" for n, p in stage.inputs.items()) + ".")
    if stage.state_in or stage.state_out:
        doc.append("Process-wide state: " + ", ".join(sorted(set(stage.state_in) | set(stage.state_out))) + ".")
    return doc


def stage_function(
    stage: StageFlow, flow: Flow, path: str, *, name: str | None = None, prologue: list[Stmt] | None = None
) -> cst.FunctionDef:
    """The function that runs one stage: inputs and parameters in, ``{output: value}`` out.

    The body is the user's own statements (comments and formatting kept), after ``prologue`` (a docstring or
    imports, for callers that put the function in a module of their own making, like the script exporter).
    """
    params = {p.name: p for p in flow.parameters}
    local = set(stage.local_names) | set(stage.inputs) | set(stage.params)
    arg_list = [cst.Param(cst.Name(n)) for n in stage.inputs]
    for n in stage.params:
        # Only immutable defaults: a list default would be shared, and modified, across calls.
        immutable = n in params and isinstance(params[n].default, int | float | str | bool | bytes | type(None))
        arg_list.append(
            cst.Param(cst.Name(n), default=cst.parse_expression(params[n].default_code), equal=_EQUAL)
            if immutable
            else cst.Param(cst.Name(n))
        )
    if any(p.default is None for p in arg_list) and any(p.default is not None for p in arg_list):
        # A parameter without a default cannot follow one with a default.
        arg_list.sort(key=lambda p: p.default is not None)
    body = [*(prologue or []), *_body_statements(stage, local, path, flow.defined_in)]
    return cst.FunctionDef(
        name=cst.Name(name or function_name(stage)),
        params=cst.Parameters(params=arg_list),
        body=cst.IndentedBlock(body=body),
        leading_lines=[cst.EmptyLine(), cst.EmptyLine()],
    )


def render_stage(stage: StageFlow, flow: Flow, notebook: str, path: str) -> str:
    doc = [f"Stage `{stage.name}` of the pipeline generated by nb2pipe from {notebook}.", "", *stage_doc(stage)]
    doc += ["", "Generated code: edit the notebook and run `nb2pipe convert` again."]
    head: list[Stmt] = [docstring(doc)]
    head += import_lines(flow.futures)
    head += import_lines(sorted(stage.imports, key=import_sort_key))
    head += import_lines([f"from {m} import *" for m in stage.star_imports])
    if stage.uses_ipython:
        head += import_lines(["from nb2pipe.runtime import get_ipython"])
    if stage.shared_names:
        head.append(_shared_import(sorted(stage.shared_names)))
    return module_code(cst.Module(body=[*_spaced(head), stage_function(stage, flow, path)]))


def _spaced(stmts: list[Stmt]) -> list[Stmt]:
    # A blank line between the docstring and the imports.
    if len(stmts) > 1:
        stmts = [stmts[0], stmts[1].with_changes(leading_lines=[cst.EmptyLine()]), *stmts[2:]]
    return stmts


def import_sort_key(code: str) -> tuple[int, str]:
    """Plain imports first, then ``from`` imports, each alphabetically (what every stage module uses)."""
    return (0 if code.startswith("import ") else 1, code)


def shared_body(flow: Flow) -> list[Stmt]:
    """The shared cells' code and the pure definitions, each labelled with its cell; imports left out."""
    body: list[Stmt] = []
    for unit in flow.shared:
        if unit.kind in ("import", "star", "future"):
            continue
        stmt = unit.stmt
        lead = [ln for ln in stmt.leading_lines if ln.comment]
        lines = [cst.EmptyLine(), cst.EmptyLine()] if unit.kind == "def" else [cst.EmptyLine()]
        body.append(stmt.with_changes(leading_lines=[*lines, _comment(f"from {_cell_label(unit)}"), *lead]))
    return body


def render_shared(flow: Flow, notebook: str) -> str:
    doc = [
        f"Code shared by the stages of the pipeline generated by nb2pipe from {notebook}.",
        "",
        "Imports, shared cells and the definitions that depend only on code.",
    ]
    head: list[Stmt] = [docstring(doc)]
    head += import_lines(flow.futures)
    head += import_lines(sorted(flow.shared_imports, key=import_sort_key))
    head += import_lines([f"from {m} import *" for m in flow.shared_star])
    return module_code(cst.Module(body=[*_spaced(head), *shared_body(flow)]))


def render_pipeline(flow: Flow, name: str, notebook: str) -> str:
    lines = [
        f'"""Pipeline `{name}`, generated by nb2pipe from {notebook}.',
        "",
        "`run()` calls every stage in order, in this process, and returns each stage's outputs.",
        "Generated code: edit the notebook and run `nb2pipe convert` again.",
        '"""',
        "",
        "import copy",
        "",
    ]
    for stage in sorted(flow.stages, key=lambda s: s.name):
        lines.append(f"from .stages import {stage.name} as {stage.name}_stage")
    lines += ["", "#: Parameters with their notebook defaults.", "PARAMETERS = {"]
    for p in flow.parameters:
        lines.append(f"    {p.name!r}: {p.default_code},")
    lines += ["}", "", "#: Stages in execution order.", f"ORDER = {flow.order!r}", "", ""]
    lines.append("def run(**parameters):")
    lines.append('    """Run the whole pipeline; return ``{stage: {output: value}}``."""')
    lines.append("    unknown = sorted(set(parameters) - set(PARAMETERS))")
    lines.append("    if unknown:")
    lines.append('        raise TypeError(f"unknown parameters: {unknown}; known: {sorted(PARAMETERS)}")')
    lines.append("    # A fresh copy of every default: a stage may modify a list parameter in place.")
    lines.append("    params = {**copy.deepcopy(PARAMETERS), **parameters}")
    lines.append("    results = {}")
    by_name = {s.name: s for s in flow.stages}
    for sname in flow.order:
        stage = by_name[sname]
        call_args = [f'{n}=results["{p}"]["{n}"]' for n, p in stage.inputs.items()]
        call_args += [f'{n}=params["{n}"]' for n in stage.params]
        lines.append(f'    results["{sname}"] = {sname}_stage.{function_name(stage)}({", ".join(call_args)})')
    lines.append("    return results")
    return "\n".join(lines) + "\n"


_MAIN = '''"""Run the pipeline in this process: python -m {name} [-p NAME VALUE]..."""

import argparse
import ast

from .pipeline import PARAMETERS, run


def _typed(name, text):
    default = PARAMETERS[name]
    if isinstance(default, str):
        return text
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise SystemExit(f"parameter {{name}}: expected true or false, got {{text!r}}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise SystemExit(f"parameter {{name}}: {{text!r}} is not a {{type(default).__name__}}") from None
    if isinstance(default, float) and isinstance(value, int):
        value = float(value)
    if default is not None and not isinstance(value, type(default)):
        raise SystemExit(f"parameter {{name}}: {{text!r}} is not a {{type(default).__name__}}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m {name}", description=__doc__)
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)
    params = {{}}
    for key, text in args.parameter:
        if key not in PARAMETERS:
            parser.error(f"unknown parameter {{key!r}}; parameters: {{', '.join(PARAMETERS) or 'none'}}")
        params[key] = _typed(key, text)
    run(**params)


if __name__ == "__main__":
    main()
'''


def render(flow: Flow, name: str, notebook: str, path: str) -> Rendered:
    """Render every file of the package ``name`` (paths relative to the package directory)."""
    files: dict[str, str] = {}
    versions: dict[str, str] = {}
    shared_code = render_shared(flow, notebook)
    definer = {n: u for u in flow.shared for n in u.binds}  # the last binding wins, as it does at run time
    shared_defs: dict[str, str] = {}  # name -> code of its definition, generated only for names stages import
    if flow.shared:
        files["shared.py"] = shared_code
        versions["shared"] = _version(shared_code)
    for stage in flow.stages:
        code = render_stage(stage, flow, notebook, path)
        files[f"stages/{stage.name}.py"] = code
        deps = []
        for n in sorted(stage.shared_names):
            if n not in shared_defs:
                shared_defs[n] = module_code(cst.Module([definer[n].stmt])) if n in definer else ""
            deps.append(shared_defs[n])
        versions[stage.name] = _version(code, *deps)
    files["stages/__init__.py"] = f'"""Stage modules of pipeline `{name}`, one per stage."""\n'
    files["pipeline.py"] = render_pipeline(flow, name, notebook)
    files["__init__.py"] = (
        f'"""Pipeline `{name}`, generated by nb2pipe from {notebook}."""\n\nfrom .pipeline import PARAMETERS, run\n\n'
        '__all__ = ["PARAMETERS", "run"]\n'
    )
    files["__main__.py"] = _MAIN.format(name=name)
    spec = pipeline_spec(flow, name, notebook, versions)
    files["pipeline.json"] = json.dumps(spec, indent=2, default=repr) + "\n"
    lock = {
        "format": FORMAT_VERSION,
        "pipeline": name,
        "stages": {s.name: versions[s.name] for s in flow.stages},
        "shared": versions.get("shared"),
        "files": {rel: hashlib.sha256(text.encode()).hexdigest()[:16] for rel, text in sorted(files.items())},
    }
    files["nb2pipe.lock"] = json.dumps(lock, indent=2) + "\n"
    return Rendered(name, files, versions, spec)


def pipeline_spec(flow: Flow, name: str, notebook: str, versions: dict[str, str]) -> dict[str, object]:
    """The pipeline definition: what a runner, a scheduler or a reviewer needs, as plain JSON."""
    return {
        "format": FORMAT_VERSION,
        "name": name,
        "notebook": notebook,
        "parameters": [{"name": p.name, "type": p.type, "default": p.default} for p in flow.parameters],
        "requirements": flow.requirements,
        "order": flow.order,
        "stages": [
            {
                "name": s.name,
                "module": f"{name}.stages.{s.name}",
                "function": function_name(s),
                "version": versions[s.name],
                "cells": [c.cell.id or f"#{c.cell.number}" for c in s.cells],
                "inputs": [{"name": n, "from": p} for n, p in s.inputs.items()],
                "parameters": s.params,
                "outputs": s.outputs,
                "after": s.after,
                "state": {"inputs": dict(sorted(s.state_in.items())), "outputs": sorted(s.state_out)},
                "reads": s.files_read,
                "writes": s.files_written,
                "metrics": s.metrics,
                "shared": sorted(s.shared_names),
            }
            for s in flow.stages
        ],
        "edges": [
            {"from": a, "to": b, "names": names} for (a, b), names in sorted(flow.edges.items(), key=lambda e: e[0])
        ],
        "shared": {"module": f"{name}.shared", "version": versions.get("shared")} if flow.shared else None,
    }
