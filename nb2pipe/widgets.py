"""ipywidgets views of nb2pipe, for front ends without the JupyterLab extension (Notebook 7, VS Code, Colab).

They show what the converter and the run store know, in the notebook itself, and need nothing but ipywidgets in
the kernel. Each view is one small class built on standard widgets (no custom JavaScript, so every front end that
renders ipywidgets renders these), with its parts as attributes so a program, or a test, can drive it like a user.

An analysis that fails is shown, not raised: a view stays on screen while the notebook is edited, and the one-line
error (file, cell, cause) is what the user needs to see until they fix the notebook and press Refresh.
"""

from __future__ import annotations

import ast
import html
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

if TYPE_CHECKING:
    from .converter import Analysis
    from .dataflow import StageFlow

__all__ = ["RunForm", "RunsView", "StagesView", "run_form", "runs", "stages"]


# -- helpers every view uses --------------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text))


def _table(rows: list[list[str]], header: list[str] | None = None) -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = ""
    if header:
        head = "<thead><tr>" + "".join(f"<th style='text-align:left;padding-right:1em'>{_e(h)}</th>" for h in header)
        head += "</tr></thead>"
    body = "".join(
        "<tr>" + "".join(f"<td style='padding-right:1em'>{cell}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _error(message: str) -> str:
    return f"<div style='color:#b00020'><b>nb2pipe:</b> {_e(message)}</div>"


# -- stages ---------------------------------------------------------------------------------------------------------


class StagesView(widgets.VBox):  # type: ignore[misc]
    """The stages of a notebook in run order, what flows between them, and one stage's details on selection.

    Attributes: ``summary`` (pipeline name, counts, parameters), ``select`` (the stage list; its value is a stage
    name), ``detail`` (the selected stage), ``flow`` (every edge: producer -> consumer, names), ``refresh`` (reads
    the notebook again) and ``error`` (the last analysis error, or ``None``).
    """

    def __init__(self, notebook: str | Path, **options: Any) -> None:
        #: The notebook, read again on every refresh.
        self.notebook = Path(notebook)
        #: Keyword arguments for :func:`nb2pipe.analyze` (``keep_magics``, ``extra_state``, ``name``).
        self.options: Mapping[str, Any] = options
        self.analysis: Analysis | None = None
        self.error: str | None = None
        self.summary = widgets.HTML()
        self.select = widgets.Select(options=[], rows=8, description="stages", layout=widgets.Layout(width="auto"))
        self.detail = widgets.HTML()
        self.flow = widgets.HTML()
        self.refresh = widgets.Button(description="Refresh", icon="refresh", tooltip="read the notebook again")
        self.select.observe(self._on_select, names="value")
        self.refresh.on_click(lambda _button: self.update())
        super().__init__(
            [
                widgets.HBox([self.summary, self.refresh]),
                widgets.HBox([self.select, self.detail]),
                widgets.HTML("<b>data flow</b>"),
                self.flow,
            ]
        )
        self.update()

    def update(self) -> None:
        """Analyse the notebook again and redraw, keeping the selected stage when it still exists."""
        from .converter import analyze
        from .errors import Nb2PipeError

        try:
            self.analysis, self.error = analyze(self.notebook, **self.options), None
        except Nb2PipeError as exc:
            self.analysis, self.error = None, str(exc)
        if self.analysis is None:
            self.summary.value = _error(self.error or "")
            self.select.options, self.detail.value, self.flow.value = [], "", ""
            return
        flow = self.analysis.flow
        previous = self.select.value
        self.summary.value = self._summary(self.analysis)
        by_name = {s.name: s for s in flow.stages}
        self.select.options = [(self._label(i, by_name[n]), n) for i, n in enumerate(flow.order, 1)]
        self.select.value = previous if previous in by_name else (flow.order[0] if flow.order else None)
        self._on_select({"new": self.select.value})
        self.flow.value = self._edges(self.analysis)

    @staticmethod
    def _label(number: int, stage: StageFlow) -> str:
        return f"{number}. {stage.name} ({len(stage.inputs)} in, {len(stage.outputs)} out)"

    @staticmethod
    def _summary(analysis: Analysis) -> str:
        flow = analysis.flow
        text = (
            f"<b>pipeline {_e(analysis.name)}</b> from {_e(Path(analysis.notebook.path).name)}: "
            f"{len(flow.stages)} stages, {len(flow.parameters)} parameters"
        )
        if flow.parameters:
            rows = [
                [f"<code>{_e(p.name)}</code>", _e(p.type), f"<code>{_e(p.default_code)}</code>"]
                for p in flow.parameters
            ]
            text += _table(rows, ["parameter", "type", "default"])
        return text

    def _on_select(self, change: Mapping[str, Any]) -> None:
        name = change.get("new")
        if self.analysis is None or name is None:
            self.detail.value = ""
            return
        stage = next(s for s in self.analysis.flow.stages if s.name == name)
        readers: dict[str, list[str]] = {}
        for (producer, consumer), names in sorted(self.analysis.flow.edges.items()):
            if producer == name:
                for n in names:
                    readers.setdefault(n, []).append(consumer)
        cells = ", ".join(f"{c.cell.number}" + (f" ({_e(c.cell.id)})" if c.cell.id else "") for c in stage.cells)
        rows = [["cells", cells]]
        if stage.inputs:
            rows.append(["inputs", ", ".join(f"<code>{_e(n)}</code> ← {_e(p)}" for n, p in stage.inputs.items())])
        if stage.params:
            rows.append(["parameters", ", ".join(f"<code>{_e(p)}</code>" for p in stage.params)])
        if stage.outputs:
            outputs = [
                f"<code>{_e(n)}</code>" + (f" → {_e(', '.join(readers[n]))}" if n in readers else "")
                for n in stage.outputs
            ]
            rows.append(["outputs", ", ".join(outputs)])
        if stage.metrics:
            rows.append(["metrics", ", ".join(f"<code>{_e(m)}</code>" for m in stage.metrics)])
        if stage.state_in or stage.state_out:
            state = [f"{_e(k)} ← {_e(v or 'start')}" for k, v in sorted(stage.state_in.items())]
            state += [f"{_e(k)} (changed)" for k in stage.state_out if k not in stage.state_in]
            rows.append(["state", ", ".join(state)])
        if stage.after:
            rows.append(["after", ", ".join(_e(a) for a in stage.after)])
        self.detail.value = f"<b>stage {_e(stage.name)}</b>" + _table(rows)

    @staticmethod
    def _edges(analysis: Analysis) -> str:
        flow = analysis.flow
        rows = [
            [_e(a), _e(b), ", ".join(f"<code>{_e(n)}</code>" for n in names) or "<i>order only</i>"]
            for (a, b), names in sorted(flow.edges.items(), key=lambda e: (flow.order.index(e[0][1]), e[0][0]))
        ]
        order = " → ".join(_e(n) for n in flow.order)
        return f"run order: {order}" + (_table(rows, ["from", "to", "names"]) if rows else "<br><i>no data flows</i>")


def stages(notebook: str | Path, **options: Any) -> StagesView:
    """The stage list and data flow of ``notebook``, as a widget; ``options`` go to :func:`nb2pipe.analyze`.

    Display it as the last expression of a cell. Press Refresh (or call ``update()``) after editing the notebook.
    """
    return StagesView(notebook, **options)


# -- run form -------------------------------------------------------------------------------------------------------


def _choices(type_name: str) -> list[Any] | None:
    """``Literal['a', 'b']`` (or ``typing.Literal[...]``) -> ``['a', 'b']``: a parameter with a fixed set of values."""
    text = type_name.strip()
    for prefix in ("Literal[", "typing.Literal[", "typing_extensions.Literal["):
        if text.startswith(prefix) and text.endswith("]"):
            try:
                values = ast.literal_eval("[" + text[len(prefix) : -1] + "]")
            except (ValueError, SyntaxError):
                return None
            return list(values)
    return None


def _field(param: Any) -> Any:
    """The widget for one declared parameter: the right input for its type, holding the notebook's default."""
    style = {"description_width": "initial"}
    label = f"{param.name} ({param.type})"
    choices = _choices(param.type)
    kind = param.type.split("[", 1)[0].split("|", 1)[0].strip().lower()
    default = param.default
    if choices:
        value = default if default in choices else choices[0]
        return widgets.Dropdown(options=choices, value=value, description=label, style=style)
    if kind == "bool" and isinstance(default, bool):
        return widgets.Checkbox(value=default, description=label, style=style, indent=False)
    if kind == "int" and isinstance(default, int):
        return widgets.IntText(value=default, description=label, style=style)
    if kind == "float" and isinstance(default, int | float):
        return widgets.FloatText(value=float(default), description=label, style=style)
    if kind == "str" and isinstance(default, str):
        return widgets.Text(value=default, description=label, style=style)
    # Lists, dicts, None defaults, annotations we do not model: a Python literal, checked like `-p`.
    return widgets.Text(value=param.default_code, description=label, style=style)


class RunForm(widgets.VBox):  # type: ignore[misc]
    """A form generated from a notebook's parameters cell that starts a tracked job and follows it to the end.

    Attributes: ``fields`` (parameter name -> input widget), ``run_button``, ``status`` (HTML: queued, running,
    the ending), ``result`` (HTML: link to the executed notebook and the metrics), ``last`` (the finished
    :class:`~nb2pipe.jobs.execute.JobResult`, or ``None``). The job runs in a background thread, so the notebook
    stays usable; :meth:`wait` blocks until it ends (for scripts and tests).
    """

    def __init__(self, notebook: str | Path, **options: Any) -> None:
        from .parameters import notebook_parameters

        self.notebook = Path(notebook)
        self.options = options
        self.last: Any = None
        self._thread: threading.Thread | None = None
        declared = notebook_parameters(self.notebook) or []
        self.declared = {p.name: p for p in declared}
        self.fields = {p.name: _field(p) for p in declared}
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.status = widgets.HTML()
        self.result = widgets.HTML()
        self.run_button.on_click(lambda _button: self.start())
        title = widgets.HTML(f"<b>{_e(self.notebook.name)}</b> as a tracked job")
        if not declared:
            self.status.value = "<i>no cell tagged 'parameters': the notebook runs with its own values</i>"
        super().__init__([title, *self.fields.values(), self.run_button, self.status, self.result])

    def values(self) -> dict[str, Any]:
        """The form's values, typed like the notebook's defaults (raises ParameterError for a bad literal)."""
        from .parameters import resolve

        pairs, values = [], {}
        for name, field in self.fields.items():
            if isinstance(field, widgets.Text) and not isinstance(self.declared[name].default, str):
                pairs.append((name, field.value))  # a literal typed as text: parsed and checked like `-p`
            else:
                values[name] = field.value
        return resolve(list(self.declared.values()), pairs, values=values, target=str(self.notebook))

    def start(self) -> None:
        """What the Run button does: check the values, then run the job in a background thread."""
        from .errors import Nb2PipeError

        if self._thread is not None and self._thread.is_alive():
            return
        try:
            params = self.values()
        except Nb2PipeError as exc:
            self.status.value = _error(str(exc))
            return
        self.run_button.disabled = True
        self.result.value = ""
        self.status.value = f"running {_e(self.notebook.name)}…"
        self._thread = threading.Thread(target=self._run, args=(params,), name="nb2pipe-run-form", daemon=True)
        self._thread.start()

    def _run(self, params: dict[str, Any]) -> None:
        from . import jobs
        from .errors import Nb2PipeError

        start = time.perf_counter()
        try:
            result = jobs.run(self.notebook, params, handle_signals=False, **self.options)
        except Nb2PipeError as exc:
            self.status.value = _error(str(exc))
        except Exception as exc:  # shown, not lost in a thread nobody watches
            self.status.value = _error(f"internal error: {type(exc).__name__}: {exc}")
        else:
            self.last = result
            seconds = time.perf_counter() - start
            colour = "#1b5e20" if result.status == "succeeded" else "#b00020"
            detail = f": {_e(result.detail)}" if result.detail else ""
            self.status.value = (
                f"run <code>{_e(result.id)}</code> <b style='color:{colour}'>{_e(result.status)}</b>"
                f"{detail} in {seconds:.1f} s"
            )
            rows = [[_e(k), f"<code>{_e(v)}</code>"] for k, v in sorted(result.metrics.items())]
            link = f"<a href='{_e(result.notebook.as_uri())}' target='_blank'>{_e(result.notebook)}</a>"
            metrics = _table(rows, ["metric", "value"]) if rows else "<i>no metrics recorded</i>"
            self.result.value = f"executed notebook: {link}<br>{metrics}"
        finally:
            self.run_button.disabled = False

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the current run ends; return its result (``None`` if it could not start)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.last


def run_form(notebook: str | Path, **options: Any) -> RunForm:
    """A form for ``notebook``'s parameters with a Run button that starts a tracked job (:func:`nb2pipe.jobs.run`).

    ``options`` go to :func:`nb2pipe.jobs.run` (``home``, ``kernel``, ``timeout``, ...). Display it as the last
    expression of a cell.
    """
    return RunForm(notebook, **options)


# -- runs -----------------------------------------------------------------------------------------------------------


class RunsView(widgets.VBox):  # type: ignore[misc]
    """Recent tracked runs (status, parameters, metrics, duration), newest first; Refresh reads the store again.

    Attributes: ``table`` (HTML), ``refresh`` (button), ``rows`` (the runs last shown, as dicts).
    """

    def __init__(self, limit: int = 20, **filters: Any) -> None:
        self.limit, self.filters = limit, filters
        self.rows: list[dict[str, Any]] = []
        self.table = widgets.HTML()
        self.refresh = widgets.Button(description="Refresh", icon="refresh")
        self.refresh.on_click(lambda _button: self.update())
        super().__init__([self.refresh, self.table])
        self.update()

    def update(self) -> None:
        from . import jobs
        from .errors import Nb2PipeError

        try:
            self.rows = jobs.list(limit=self.limit, **self.filters)
        except Nb2PipeError as exc:
            self.table.value = _error(str(exc))
            return
        body = []
        for run in self.rows:
            started, ended = run.get("started_at"), run.get("ended_at")
            duration = f"{ended - started:.1f} s" if started and ended else ""
            params = ", ".join(f"{_e(k)}={_e(v)}" for k, v in sorted((run.get("parameters") or {}).items()))
            metrics = ", ".join(f"{_e(k)}={_e(v)}" for k, v in sorted((run.get("metrics") or {}).items()))
            body.append(
                [
                    f"<code>{_e(run['id'])}</code>",
                    _e(Path(str(run.get("target", ""))).name),
                    _e(run.get("status", "")),
                    params,
                    metrics,
                    duration,
                ]
            )
        header = ["run", "notebook", "status", "parameters", "metrics", "duration"]
        self.table.value = _table(body, header) if body else "<i>no runs yet</i>"


def runs(limit: int = 20, **filters: Any) -> RunsView:
    """A refreshable table of recent tracked runs; ``filters`` as for :func:`nb2pipe.jobs.list`."""
    return RunsView(limit, **filters)
