"""ipywidgets views of nb2pipe, for front ends without the JupyterLab extension (Notebook 7, VS Code, Colab).

They show what the converter and the run store know, in the notebook itself, and need nothing but ipywidgets in
the kernel. Each view is one small class built on standard widgets (no custom JavaScript, so every front end that
renders ipywidgets renders these), with its parts as attributes so a program, or a test, can drive it like a user.

An analysis that fails is shown, not raised: a view stays on screen while the notebook is edited, and the one-line
error (file, cell, cause) is what the user needs to see until they fix the notebook and press Refresh.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

if TYPE_CHECKING:
    from .converter import Analysis
    from .dataflow import StageFlow

__all__ = ["StagesView", "stages"]


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
