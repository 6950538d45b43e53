"""What ``nb2pipe run TARGET`` points at: a notebook (converted on the fly) or a converted pipeline directory.

A notebook is converted in memory and its package written under the store (``<home>/packages/<hash>/``), never
next to the notebook; the directory is named by the hash of the notebook's bytes and nb2pipe's version, so
running an unchanged notebook again skips the conversion entirely (that is what keeps a no-op re-run well under
half a second). A comment-only edit changes the bytes, so the notebook is converted again, but the stage versions
do not change and no stage runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Nb2PipeError


class TargetError(Nb2PipeError):
    """The target is neither a notebook nor a converted pipeline directory."""


@dataclass(frozen=True)
class Pipeline:
    """A converted pipeline ready to run."""

    #: The pipeline definition (``pipeline.json``).
    spec: dict[str, Any]
    #: The package directory (holds ``pipeline.json``).
    directory: Path
    #: The notebook, when the target was one.
    notebook: Path | None
    #: Where stages run: the notebook's folder, or the current directory for a pipeline directory.
    workdir: Path
    #: sha256 of the notebook bytes or of ``pipeline.json``.
    target_hash: str

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def package_root(self) -> Path:
        return self.directory.parent

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.spec["stages"]}

    def cell_numbers(self) -> dict[str, int]:
        """Cell id -> 1-based cell number, read from the notebook when there is one."""
        if self.notebook is None:
            return {}
        try:
            cells = json.loads(self.notebook.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            return {}
        return {str(c.get("id")): i + 1 for i, c in enumerate(cells) if isinstance(c, dict) and c.get("id")}


def _read_spec(directory: Path) -> dict[str, Any]:
    try:
        spec: dict[str, Any] = json.loads((directory / "pipeline.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TargetError(f"{directory}/pipeline.json: cannot read the pipeline definition: {exc}") from None
    if not isinstance(spec, dict) or "stages" not in spec or "name" not in spec:
        raise TargetError(f"{directory}/pipeline.json: not an nb2pipe pipeline definition")
    return spec


def load_target(target: str | os.PathLike[str], home: Path) -> Pipeline:
    """Resolve ``target`` to a runnable :class:`Pipeline`; converts a notebook if its package is not stored yet."""
    path = Path(target)
    if path.suffix == ".ipynb" or path.is_file():
        return _from_notebook(path, home)
    if (path / "pipeline.json").is_file():
        directory = path.resolve()
    elif path.is_dir():
        found = sorted(p.parent for p in path.glob("*/pipeline.json"))
        if len(found) != 1:
            what = "no pipeline" if not found else f"{len(found)} pipelines ({', '.join(p.name for p in found)})"
            raise TargetError(f"{path}: {what} here; give a notebook or a package directory holding pipeline.json")
        directory = found[0].resolve()
    else:
        raise TargetError(f"{path}: no such notebook or pipeline directory")
    spec_bytes = (directory / "pipeline.json").read_bytes()
    return Pipeline(
        spec=_read_spec(directory),
        directory=directory,
        notebook=None,
        workdir=Path.cwd(),
        target_hash=hashlib.sha256(spec_bytes).hexdigest(),
    )


def converter_fingerprint() -> str:
    """sha256 of the converter's own source (the modules at the package's top level) and nb2pipe's version.

    A notebook converted on the fly is kept under its bytes *and* this, so a converter that changed -- an upgrade,
    or an editable install on a developer's checkout -- converts it again instead of running a stale package.
    Reading ~250 KB of source costs well under a millisecond.
    """
    from .. import __version__

    digest = hashlib.sha256(__version__.encode())
    for source in sorted(Path(__file__).resolve().parents[1].glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def _from_notebook(path: Path, home: Path) -> Pipeline:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TargetError(f"{path}: cannot read the notebook: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data + b"\0" + converter_fingerprint().encode()).hexdigest()
    store = home / "packages" / f"{path.stem[:40]}-{digest[:20]}"
    found = sorted(store.glob("*/pipeline.json")) if store.is_dir() else []
    if not found:
        _convert_into(path, store, home)
        found = sorted(store.glob("*/pipeline.json"))
    directory = found[0].parent
    return Pipeline(
        spec=_read_spec(directory),
        directory=directory,
        notebook=path.resolve(),
        workdir=path.resolve().parent,
        target_hash=hashlib.sha256(data).hexdigest(),
    )


def _convert_into(path: Path, store: Path, home: Path) -> None:
    from ..converter import analyze

    analysis = analyze(path)
    tmp = home / "packages" / f".tmp-{secrets.token_hex(6)}"
    package = tmp / analysis.name
    try:
        for rel, text in analysis.rendered.files.items():
            target = package / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        try:
            os.rename(tmp, store)
        except OSError:
            if not store.is_dir():  # not a concurrent run that converted the same notebook first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
