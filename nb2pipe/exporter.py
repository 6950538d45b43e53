"""nbconvert exporters: ``--to nb2pipe`` (the pipeline package) and ``--to nb2pipe_script`` (one script).

They are registered under the ``nbconvert.exporters`` entry point, which is how ``jupyter nbconvert``, the Jupyter
server's ``/nbconvert`` handlers and JupyterLab's *File → Save and Export Notebook As* menu find exporters. Both
call the converter (:func:`nb2pipe.converter.analyze`) and the script generator; nothing is converted here.

**A package is a directory, nbconvert writes one file.** nbconvert's writer puts one output per notebook at
``<--output-dir>/<--output><extension>``, and a download is one file. So the package exporter's output is the
package as a zip archive (what JupyterLab downloads, what the Python API returns), except when ``jupyter
nbconvert`` runs it with its default files writer: then it writes the package exactly as ``nb2pipe convert``
does — with :func:`nb2pipe.output.write_package` (atomic, only changed files touched, stale files removed, a
directory nb2pipe did not write never overwritten) into ``--output-dir`` (default: the notebook's directory),
named by ``--output`` (default: from the notebook's file name) — and hands the writer the lock file, the
package's last file, as its one output so nothing lands outside the package.

**Errors.** Bad input is an :class:`~nb2pipe.errors.Nb2PipeError`. Under ``jupyter nbconvert`` it becomes one
log line and exit code 2 (nbconvert would print a traceback); elsewhere it is raised, which the server turns
into an HTTP 500 whose reason is the same one-line message.
"""

from __future__ import annotations

import io
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import nbformat
from nbconvert.exporters import Exporter
from nbformat import NotebookNode
from traitlets import Bool, Dict, Unicode

from .errors import Nb2PipeError, NotebookFormatError, OutputError

T = TypeVar("T")

#: Every zip entry gets this timestamp, so the same notebook gives the same archive bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _notebook_path(resources: dict[str, Any] | None) -> str:
    """The notebook's path as nbconvert gave it (for messages and the generated docstrings)."""
    metadata = (resources or {}).get("metadata") or {}
    name = f"{metadata.get('name') or 'Notebook'}.ipynb"
    folder = metadata.get("path") or ""
    return str(Path(folder) / name) if folder else name


def _nbconvert_app() -> Any | None:
    """The running ``jupyter nbconvert`` application, if this process is one (never inside a server)."""
    module = sys.modules.get("nbconvert.nbconvertapp")
    if module is None or not module.NbConvertApp.initialized():
        return None
    return module.NbConvertApp.instance()


class _Nb2PipeExporter(Exporter):
    """What both exporters share: reading the notebook with nb2pipe's checks and reporting errors in one line."""

    extra_state = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="Calls that change process-wide state, as {QUALNAME: KEY} (what `nb2pipe convert --state` declares), "
        "e.g. --PackageExporter.extra_state=mylib.set_seed=rng",
    ).tag(config=True)

    def _guard(self, step: Callable[[], T]) -> T:
        try:
            return step()
        except Nb2PipeError as exc:
            app = _nbconvert_app()
            if app is None:
                raise
            self.log.error("nb2pipe: %s", exc)
            app.exit(exc.exit_code)
            raise  # not reached: exit raises SystemExit

    def from_file(
        self, file_stream: Any, resources: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[Any, dict[str, Any]]:
        """Read with nb2pipe's reader first: a broken file is one line naming the cause, not nbformat's dump."""
        from .notebook import parse_notebook

        path = _notebook_path(resources)

        def read() -> NotebookNode:
            try:
                text = file_stream.read()
            except UnicodeDecodeError as exc:
                raise NotebookFormatError(f"not UTF-8 text (byte {exc.start})", path=path) from None
            raw = text.encode() if isinstance(text, str) else bytes(text)
            parse_notebook(raw, path)
            try:
                node: NotebookNode = nbformat.reads(raw.decode(), as_version=4)  # type: ignore[no-untyped-call]
                return node
            except Exception as exc:  # nbformat's reasons are long; the first line says enough
                raise NotebookFormatError(f"nbformat cannot read it: {str(exc).splitlines()[0]}", path=path) from None

        return self.from_notebook_node(self._guard(read), resources, **kw)

    def _options(self) -> dict[str, Any]:
        return {"extra_state": dict(self.extra_state)}

    def _analyze(self, nb: NotebookNode, resources: dict[str, Any], name: str | None = None) -> Any:
        """The converter's analysis of ``nb``, read by nb2pipe's own reader from the node's JSON."""
        import json

        from .converter import analyze
        from .notebook import parse_notebook

        path = _notebook_path(resources)
        notebook = self._guard(lambda: parse_notebook(json.dumps(nb).encode(), path))
        return self._guard(lambda: analyze(notebook, name=name, **self._options()))


class ScriptExporter(_Nb2PipeExporter):
    """``--to nb2pipe_script``: one plain-Python script with a function per stage and typed parameters."""

    export_from_notebook = "nb2pipe script"
    output_mimetype = "text/x-python"

    def _file_extension_default(self) -> str:
        return ".py"

    # An exporter's output is text (or bytes), not the notebook node the base class returns.
    def from_notebook_node(  # type: ignore[override]
        self, nb: NotebookNode, resources: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[str, dict[str, Any]]:
        """The script, as text."""
        from .script import render_script

        nb_copy, resources = super().from_notebook_node(nb, resources, **kw)
        analysis = self._analyze(nb_copy, resources)
        return self._guard(lambda: render_script(analysis)), resources


class PackageExporter(_Nb2PipeExporter):
    """``--to nb2pipe``: the pipeline package, as a directory under ``jupyter nbconvert``, else as a zip archive."""

    export_from_notebook = "nb2pipe pipeline package"
    output_mimetype = "application/zip"

    keep_magics = Bool(
        False,
        help="Keep shell commands and unknown magics, run through IPython at run time, instead of refusing them "
        "(what `nb2pipe convert --keep-magics` does)",
    ).tag(config=True)

    def _options(self) -> dict[str, Any]:
        return {**super()._options(), "keep_magics": self.keep_magics}

    def _file_extension_default(self) -> str:
        return ".zip"

    def from_notebook_node(  # type: ignore[override]
        self, nb: NotebookNode, resources: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[str | bytes, dict[str, Any]]:
        """The package as a zip archive, or written in place when ``jupyter nbconvert``'s files writer is next."""
        nb_copy, resources = super().from_notebook_node(nb, resources, **kw)
        app = _nbconvert_app()
        writer = type(getattr(app, "writer", None)).__name__
        if app is not None and writer == "StdoutWriter":
            self._guard(self._no_stdout)
        if app is not None and writer == "FilesWriter" and "unique_key" in resources:
            return self._guard(lambda: self._write_directory(app, nb_copy, resources))
        analysis = self._analyze(nb_copy, resources)
        return zip_package(analysis.name, analysis.rendered.files), resources

    @staticmethod
    def _no_stdout() -> None:
        raise OutputError(
            "--to nb2pipe writes a package directory, which --stdout cannot carry; "
            "drop --stdout (and use --output-dir), or use --to nb2pipe_script"
        )

    def _write_directory(self, app: Any, nb: NotebookNode, resources: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from .converter import pipeline_name
        from .output import LOCK, write_package

        key = Path(str(resources["unique_key"]))
        explicit = app.output_base != "{notebook_name}"
        if explicit and not (key.name.isidentifier() and key.name.isascii()):
            raise OutputError(
                f"--output {key.name!r}: the package name must be a Python identifier, "
                f"e.g. {pipeline_name(key.name + '.ipynb')!r}",
                path=_notebook_path(resources),
            )
        name = key.name if explicit else pipeline_name(_notebook_path(resources))
        analysis = self._analyze(nb, resources, name=name)
        build = Path(app.writer.build_directory or resources.get("metadata", {}).get("path") or ".")
        directory = build / key.parent / name
        report = write_package(directory, analysis.rendered.files)
        self.log.info(
            "nb2pipe: %s: %d stages; wrote %d files, removed %d",
            directory,
            len(analysis.flow.stages),
            len(report.written),
            len(report.removed),
        )
        # The writer's own write, <unique_key><output_extension>, is then the lock again, byte for byte.
        resources["unique_key"] = str(key.parent / name)
        resources["output_extension"] = "/" + LOCK
        return analysis.rendered.files[LOCK], resources


def zip_package(name: str, files: dict[str, str]) -> bytes:
    """The package as a zip archive of ``<name>/<file>`` entries; the same files give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rel in sorted(files):
            info = zipfile.ZipInfo(f"{name}/{rel}", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[rel].encode())
    return buffer.getvalue()
