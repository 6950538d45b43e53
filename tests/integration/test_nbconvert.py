"""The nbconvert exporters, through the real ``jupyter nbconvert`` command and nbconvert's own lookup.

``--to nb2pipe`` must leave on disk exactly what ``nb2pipe convert`` leaves, ``--to nb2pipe_script`` exactly what
``nb2pipe export script`` writes; bad input must be one line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import nb2pipe
from nb2pipe.exporter import PackageExporter, ScriptExporter
from nb2pipe.script import export_script
from tests.helpers import make_notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "example_notebooks" / "sweep_parameters.ipynb"
JUPYTER = str(Path(sys.executable).with_name("jupyter"))


def nbconvert(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JUPYTER, "nbconvert", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    return tmp_path


def test_entry_points_are_what_nbconvert_finds() -> None:
    from nbconvert.exporters.base import get_export_names, get_exporter

    assert {"nb2pipe", "nb2pipe_script"} <= set(get_export_names())
    assert get_exporter("nb2pipe") is PackageExporter
    assert get_exporter("nb2pipe_script") is ScriptExporter
    # What JupyterLab's Save and Export menu reads (/api/nbconvert) and what a download is named and typed as.
    assert (PackageExporter.output_mimetype, PackageExporter().file_extension) == ("application/zip", ".zip")
    assert (ScriptExporter.output_mimetype, ScriptExporter().file_extension) == ("text/x-python", ".py")
    assert PackageExporter.export_from_notebook and ScriptExporter.export_from_notebook


def test_to_nb2pipe_writes_what_convert_writes(workdir: Path) -> None:
    proc = nbconvert("--to", "nb2pipe", NOTEBOOK.name, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    nb2pipe.convert(NOTEBOOK, workdir / "by_convert")
    assert files(workdir / "sweep_parameters") == files(workdir / "by_convert" / "sweep_parameters")
    assert sorted(p.name for p in workdir.iterdir()) == ["by_convert", "sweep_parameters", "sweep_parameters.ipynb"]
    assert "sweep_parameters: 5 stages; wrote 12 files, removed 0" in proc.stderr

    # Again: nothing changes; a stale file left by an older export is removed, as `nb2pipe convert` does.
    (workdir / "sweep_parameters" / "stages" / "old_stage.py").write_text("x = 1\n")
    before = files(workdir / "sweep_parameters")
    proc = nbconvert("--to", "nb2pipe", NOTEBOOK.name, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 0 files, removed 1" in proc.stderr
    del before["stages/old_stage.py"]
    assert files(workdir / "sweep_parameters") == before


def test_output_dir_and_output_name_the_package(workdir: Path) -> None:
    proc = nbconvert("--to", "nb2pipe", NOTEBOOK.name, "--output-dir", "pipes", "--output", "wine", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    nb2pipe.convert(NOTEBOOK, workdir / "by_convert", name="wine")
    assert files(workdir / "pipes" / "wine") == files(workdir / "by_convert" / "wine")
    assert sorted(p.name for p in (workdir / "pipes").iterdir()) == ["wine"]


def test_a_directory_nb2pipe_did_not_write_is_left_alone(workdir: Path) -> None:
    (workdir / "sweep_parameters").mkdir()
    (workdir / "sweep_parameters" / "notes.txt").write_text("mine")
    proc = nbconvert("--to", "nb2pipe", NOTEBOOK.name, cwd=workdir)
    assert proc.returncode == 2
    assert "was not written by nb2pipe" in proc.stderr and "Traceback" not in proc.stderr
    assert files(workdir / "sweep_parameters") == {"notes.txt": b"mine"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output", "my-pipe"], "--output 'my-pipe': the package name must be a Python identifier, e.g. 'my_pipe'"),
        (["--stdout"], "--to nb2pipe writes a package directory, which --stdout cannot carry"),
    ],
)
def test_package_options_that_cannot_work_are_refused(workdir: Path, args: list[str], message: str) -> None:
    proc = nbconvert("--to", "nb2pipe", NOTEBOOK.name, *args, cwd=workdir)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in workdir.iterdir()) == [NOTEBOOK.name]


def test_to_nb2pipe_script_writes_what_export_script_writes(workdir: Path) -> None:
    proc = nbconvert("--to", "nb2pipe_script", NOTEBOOK.name, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert (workdir / "sweep_parameters.py").read_text() == export_script(NOTEBOOK)
    proc = nbconvert("--to", "nb2pipe_script", NOTEBOOK.name, "--stdout", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == export_script(NOTEBOOK)


@pytest.mark.parametrize("to", ["nb2pipe", "nb2pipe_script"])
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"cells": [', "bad.ipynb: not valid JSON (Expecting value at line 1, column 12)"),
        ('{"nbformat": 3, "worksheets": []}', "bad.ipynb: nbformat 3 notebooks are not supported"),
        (None, "bad.ipynb: cell 2 (id c1): invalid Python at line 1"),
        ([("y = undefined_name + 1", ["stage:a"])], "bad.ipynb: cell 1 (id c0): `undefined_name` is used"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, to: str, content: object, expected: str) -> None:
    if isinstance(content, str):
        (tmp_path / "bad.ipynb").write_text(content)
    else:
        cells = content if isinstance(content, list) else [("x = 1", ["stage:a"]), ("def f(:\n    pass", [])]
        make_notebook(tmp_path, cells, name="bad.ipynb")
    proc = nbconvert("--to", to, "bad.ipynb", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and errors[0].startswith("[NbConvertApp] ERROR | nb2pipe: ")
    assert expected in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ipynb"]


def test_outside_jupyter_nbconvert_the_package_is_a_zip(tmp_path: Path) -> None:
    """What a JupyterLab download and the Python API get: the same files, under the package's directory."""
    output, resources = PackageExporter().from_filename(str(NOTEBOOK))
    assert isinstance(output, bytes) and resources["output_extension"] == ".zip"
    assert "outputs" not in resources or not resources["outputs"]  # a server would flatten them into its own zip
    with zipfile.ZipFile(io.BytesIO(output)) as archive:
        unpacked = {name: archive.read(name) for name in archive.namelist()}
    expected = nb2pipe.analyze(NOTEBOOK).rendered.files
    assert unpacked == {f"sweep_parameters/{rel}": text.encode() for rel, text in expected.items()}
    again, _ = PackageExporter().from_filename(str(NOTEBOOK))
    assert again == output  # same notebook, same archive bytes


def test_errors_outside_jupyter_nbconvert_are_raised() -> None:
    from nb2pipe.errors import NotebookFormatError

    with pytest.raises(NotebookFormatError, match="not valid JSON"):
        ScriptExporter().from_file(io.StringIO('{"cells": ['), resources={"metadata": {"name": "x", "path": ""}})


def test_converter_options_are_traitlets(tmp_path: Path) -> None:
    """`--keep-magics` and `--state` of `nb2pipe convert`, as nbconvert configuration."""
    from traitlets.config import Config

    make_notebook(tmp_path, [("!echo hi\nx = 1\nprint(x)", ["stage:a"])], name="magic.ipynb")
    refused = nbconvert("--to", "nb2pipe", "magic.ipynb", cwd=tmp_path)
    assert refused.returncode == 2 and "shell command `!echo hi` has no meaning outside IPython" in refused.stderr
    kept = nbconvert("--to", "nb2pipe", "magic.ipynb", "--PackageExporter.keep_magics=True", cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    stage = (tmp_path / "magic" / "stages" / "a.py").read_text()
    assert "from nb2pipe.runtime import get_ipython" in stage

    config = Config({"ScriptExporter": {"extra_state": {"mylib.set_seed": "rng"}}})
    assert ScriptExporter(config=config)._options() == {"extra_state": {"mylib.set_seed": "rng"}}
    assert PackageExporter()._options() == {"extra_state": {}, "keep_magics": False}
