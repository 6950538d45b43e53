"""The converter's front door: notebook in, pipeline package out (the Python API the CLI mirrors)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .dataflow import Flow, build_flow
from .effects import StateEffect
from .emit import Rendered, render
from .errors import Nb2PipeError, NotebookFormatError, UnsupportedCodeError
from .gcpause import collector_paused
from .magics import parse_cell
from .notebook import Notebook, read_notebook
from .output import LOCK, WriteReport, stale_files, write_package
from .scope_analysis import analyze_cells
from .tags import TagPlan, plan_tags


@dataclass(frozen=True)
class Analysis:
    """A notebook analysed: its tags, its data flow and the package it converts to."""

    notebook: Notebook
    plan: TagPlan
    flow: Flow
    rendered: Rendered

    @property
    def name(self) -> str:
        return self.rendered.name

    @property
    def spec(self) -> dict[str, object]:
        """The pipeline definition (what ``pipeline.json`` holds)."""
        return self.rendered.spec


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert` did."""

    analysis: Analysis
    #: The package directory, ``output_dir/<name>``.
    directory: Path
    report: WriteReport


def pipeline_name(notebook: str | Path) -> str:
    """A Python package name from a notebook file name: ``01 - Data Prep.ipynb`` -> ``data_prep``."""
    stem = Path(notebook).stem.lower()
    name = re.sub(r"[^a-z0-9_]+", "_", stem).strip("_")
    name = re.sub(r"^[0-9_]+", "", name) or "pipeline"
    return name if name.isidentifier() else "pipeline"


def _language(nb: Notebook) -> str | None:
    """The notebook's kernel language from its metadata, lower-cased (None when it does not say)."""
    for key in ("language_info", "kernelspec"):
        info = nb.metadata.get(key)
        if isinstance(info, dict) and isinstance(info.get("name" if key == "language_info" else "language"), str):
            return str(info["name" if key == "language_info" else "language"]).lower()
    return None


def _state_table(extra_state: Mapping[str, str] | None) -> dict[str, StateEffect]:
    return {q: StateEffect(k, "set") for q, k in (extra_state or {}).items()}


def analyze(
    notebook: str | Path | Notebook,
    *,
    name: str | None = None,
    keep_magics: bool = False,
    extra_state: Mapping[str, str] | None = None,
) -> Analysis:
    """Analyse a tagged notebook without writing anything.

    Raises :class:`~nb2pipe.errors.Nb2PipeError` (with the file, cell and cause) for anything that cannot become
    a pipeline that computes what the notebook computes.
    """
    with collector_paused():
        return _analyze(notebook, name=name, keep_magics=keep_magics, extra_state=extra_state)


def _analyze(
    notebook: str | Path | Notebook,
    *,
    name: str | None,
    keep_magics: bool,
    extra_state: Mapping[str, str] | None,
) -> Analysis:
    nb = notebook if isinstance(notebook, Notebook) else read_notebook(notebook)
    language = _language(nb)
    if language and language != "python":
        raise NotebookFormatError(f"this is a {language} notebook; nb2pipe converts Python notebooks", path=nb.path)
    plan = plan_tags(nb)
    included = [r for r in plan.roles if r.role != "skip"]
    parsed = [parse_cell(r.cell, nb.path, keep_magics=keep_magics) for r in included]
    skipped_names: set[str] = set()
    for r in plan.roles:
        if r.role == "skip":
            try:
                units = analyze_cells([parse_cell(r.cell, nb.path, keep_magics=True)], nb.path)
            except Nb2PipeError:  # a skipped cell may hold anything; it only feeds a hint
                continue
            skipped_names.update(n for u in units for n in u.binds)
    pkg = name or pipeline_name(nb.path)
    try:
        units = analyze_cells(parsed, nb.path, _state_table(extra_state))
        flow = build_flow(plan, units, nb.path, skipped_names, parsed)
        rendered = render(flow, pkg, Path(nb.path).name, nb.path)
    except UnsupportedCodeError as exc:
        if exc.path is None:  # raised while rendering, which does not know the file
            raise UnsupportedCodeError(exc.cause, path=nb.path, cell=exc.cell, cell_id=exc.cell_id) from None
        raise
    except RecursionError:  # a huge chained expression (x = 1 + 1 + ... thousands of times) that CPython accepts
        raise UnsupportedCodeError(
            "an expression is nested too deeply to analyse; split it over several statements", path=nb.path
        ) from None
    return Analysis(nb, plan, flow, rendered)


def convert(
    notebook: str | Path,
    output_dir: str | Path,
    *,
    name: str | None = None,
    keep_magics: bool = False,
    extra_state: Mapping[str, str] | None = None,
) -> ConvertResult:
    """Convert a tagged notebook into the package ``output_dir/<name>``; the notebook itself is never modified."""
    analysis = analyze(notebook, name=name, keep_magics=keep_magics, extra_state=extra_state)
    directory = Path(output_dir) / analysis.name
    report = write_package(directory, analysis.rendered.files)
    return ConvertResult(analysis, directory, report)


def check(
    notebook: str | Path,
    output_dir: str | Path,
    *,
    name: str | None = None,
    keep_magics: bool = False,
    extra_state: Mapping[str, str] | None = None,
) -> list[str]:
    """Files of the export in ``output_dir`` that are stale (empty when the export is up to date)."""
    analysis = analyze(notebook, name=name, keep_magics=keep_magics, extra_state=extra_state)
    return stale_files(Path(output_dir) / analysis.name, analysis.rendered.files)


@dataclass(frozen=True)
class StageChange:
    """One line of ``nb2pipe diff``."""

    stage: str
    #: ``added``, ``removed``, ``changed`` or ``unchanged``.
    status: str
    old: str | None
    new: str | None


def diff(
    notebook: str | Path,
    output_dir: str | Path,
    *,
    name: str | None = None,
    keep_magics: bool = False,
    extra_state: Mapping[str, str] | None = None,
) -> list[StageChange]:
    """Compare the notebook's stage versions with the lock file of an existing export."""
    analysis = analyze(notebook, name=name, keep_magics=keep_magics, extra_state=extra_state)
    lock_path = Path(output_dir) / analysis.name / LOCK
    try:
        old: dict[str, str] = json.loads(lock_path.read_text())["stages"]
    except (OSError, ValueError, KeyError, TypeError):
        old = {}
    new = {s: v for s, v in analysis.rendered.versions.items() if s != "shared"}
    changes = []
    for stage in list(new) + [s for s in old if s not in new]:
        a, b = old.get(stage), new.get(stage)
        status = "added" if a is None else "removed" if b is None else "unchanged" if a == b else "changed"
        changes.append(StageChange(stage, status, a, b))
    return changes
