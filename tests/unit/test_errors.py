"""Bad input: the right Nb2PipeError subclass, a one-line message naming the file and the cell, exit code 2."""

from __future__ import annotations

import itertools
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from nb2pipe.converter import analyze, convert
from nb2pipe.errors import (
    CellSyntaxError,
    CycleError,
    MagicError,
    Nb2PipeError,
    NotebookFormatError,
    ParameterError,
    TagError,
    UnknownNameError,
)
from tests.helpers import make_notebook


def raises(exc_type: type[Nb2PipeError], path: Path, **kwargs: object) -> Nb2PipeError:
    with pytest.raises(exc_type) as info:
        analyze(path, **kwargs)
    err = info.value
    assert type(err) is exc_type, f"{type(err).__name__}: {err}"
    text = str(err)
    assert "\n" not in text, text
    assert str(path) in text, text
    assert err.path == str(path)
    return err


def assert_cell(err: Nb2PipeError, number: int, cell_id: str) -> None:
    assert err.cell == number
    assert err.cell_id == cell_id
    assert f"cell {number} (id {cell_id})" in str(err), str(err)


def good_notebook(tmp_path: Path) -> Path:
    return make_notebook(tmp_path, [("x = 1", ["stage:a"]), ("y = x + 1", ["stage:b"])], name="good.ipynb")


def edited(tmp_path: Path, name: str, edit) -> Path:
    data = json.loads(good_notebook(tmp_path).read_text())
    edit(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


# --- unreadable notebooks -------------------------------------------------------------------------------------------


def test_corrupt_json(tmp_path):
    path = tmp_path / "corrupt.ipynb"
    path.write_text('{"cells": [,]}')
    err = raises(NotebookFormatError, path)
    assert "not valid JSON" in str(err)
    assert err.cell is None


def test_truncated_file(tmp_path):
    raw = good_notebook(tmp_path).read_bytes()
    path = tmp_path / "truncated.ipynb"
    path.write_bytes(raw[: len(raw) // 2])
    err = raises(NotebookFormatError, path)
    assert "truncated" in str(err)


def test_nbformat_3_notebook(tmp_path):
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": []}]}))
    err = raises(NotebookFormatError, path)
    assert "nbformat 3" in str(err)
    assert "nbconvert" in str(err)  # says how to upgrade


def test_missing_file(tmp_path):
    err = raises(NotebookFormatError, tmp_path / "nope.ipynb")
    assert "no such file" in str(err)


def test_tags_not_a_list(tmp_path):
    def edit(data):
        data["cells"][1]["metadata"]["tags"] = "stage:b"

    err = raises(NotebookFormatError, edited(tmp_path, "tags.ipynb", edit))
    assert_cell(err, 2, "c1")
    assert "tags" in err.cause


def test_nul_in_source(tmp_path):
    def edit(data):
        data["cells"][1]["source"] = "y = x\x00 + 1"

    err = raises(NotebookFormatError, edited(tmp_path, "nul.ipynb", edit))
    assert_cell(err, 2, "c1")
    assert "NUL" in err.cause


def test_non_utf8_bytes(tmp_path):
    raw = good_notebook(tmp_path).read_bytes()
    assert b"y = x + 1" in raw
    path = tmp_path / "latin1.ipynb"
    path.write_bytes(raw.replace(b"y = x + 1", b"y = '\xe9'"))
    err = raises(NotebookFormatError, path)
    assert "UTF-8" in str(err)


# --- bad cells and tags ---------------------------------------------------------------------------------------------


def test_invalid_python_names_the_line(tmp_path):
    nb = make_notebook(tmp_path, [("x = 1", ["stage:a"]), ("y = 2\nz = (1,\n", ["stage:b"])])
    err = raises(CellSyntaxError, nb)
    assert_cell(err, 2, "c1")
    assert "line 2" in err.cause


def test_unknown_after_target_suggests_a_stage(tmp_path):
    nb = make_notebook(tmp_path, [("x = 1", ["stage:load"]), ("y = 2", ["stage:train", "after:laod"])])
    err = raises(TagError, nb)
    assert_cell(err, 2, "c1")
    assert "laod" in err.cause
    assert "did you mean 'load'" in err.cause


@pytest.mark.parametrize(
    ("tag", "bad"), [("stage:my-stage", "my-stage"), ("stage:class", "class"), ("stage:1st", "1st")]
)
def test_bad_stage_name(tmp_path, tag, bad):
    nb = make_notebook(tmp_path, [("x = 1", ["stage:a"]), ("y = 2", [tag])])
    err = raises(TagError, nb)
    assert_cell(err, 2, "c1")
    assert repr(bad) in err.cause


def test_bad_stage_name_suggests_an_identifier(tmp_path):
    nb = make_notebook(tmp_path, [("x = 1", ["stage:my-stage"])])
    err = raises(TagError, nb)
    assert "try 'my_stage'" in err.cause


def test_reserved_stage_name(tmp_path):
    nb = make_notebook(tmp_path, [("x = 1", ["stage:pipeline"])])
    err = raises(TagError, nb)
    assert_cell(err, 1, "c0")
    assert "reserved" in err.cause


def test_stage_repeated_non_contiguously(tmp_path):
    nb = make_notebook(tmp_path, [("x = 1", ["stage:a"]), ("y = 1", ["stage:b"]), ("z = 1", ["stage:a"])])
    err = raises(TagError, nb)
    assert_cell(err, 3, "c2")
    assert "'a'" in err.cause


def test_stage_tag_repeated_on_consecutive_cells_is_fine(tmp_path):
    nb = make_notebook(tmp_path, [("x = 1", ["stage:a"]), ("y = x", ["stage:a"]), ("z = y", ["stage:b"])])
    assert [s.name for s in analyze(nb).flow.stages] == ["a", "b"]


def test_duplicate_parameter(tmp_path):
    nb = make_notebook(tmp_path, [("# params\nalpha = 1\nalpha = 2", ["parameters"]), ("y = alpha", ["stage:a"])])
    err = raises(ParameterError, nb)
    assert_cell(err, 1, "c0")
    assert "'alpha'" in err.cause


def test_non_literal_parameter(tmp_path):
    nb = make_notebook(tmp_path, [("n = 1\nm = n * 2", ["parameters"]), ("y = m", ["stage:a"])])
    err = raises(ParameterError, nb)
    assert_cell(err, 1, "c0")
    assert "'m'" in err.cause and "literal" in err.cause


def test_unknown_name_with_close_match(tmp_path):
    nb = make_notebook(tmp_path, [("df = 1", ["stage:a"]), ("# comment\ny = dff + 1", ["stage:b"])])
    err = raises(UnknownNameError, nb)
    assert isinstance(err, UnknownNameError)
    assert_cell(err, 2, "c1")
    assert err.name == "dff"
    assert "`dff`" in err.cause and "did you mean 'df'" in err.cause


def test_name_bound_only_in_a_skip_cell(tmp_path):
    nb = make_notebook(tmp_path, [("x = 1", ["stage:a"]), ("debug = True", ["skip"]), ("y = debug", ["stage:b"])])
    err = raises(UnknownNameError, nb)
    assert isinstance(err, UnknownNameError)
    assert_cell(err, 3, "c2")
    assert err.name == "debug"
    assert "skip" in err.cause


def test_name_bound_only_later(tmp_path):
    nb = make_notebook(tmp_path, [("y = later + 1", ["stage:a"]), ("later = 1", ["stage:b"])])
    err = raises(UnknownNameError, nb)
    assert_cell(err, 1, "c0")
    assert "cell 2" in err.cause


def test_cycle_via_after_tags(tmp_path):
    nb = make_notebook(
        tmp_path,
        [("x = 1", ["stage:a", "after:c"]), ("y = 1", ["stage:b", "after:a"]), ("z = 1", ["stage:c", "after:b"])],
    )
    err = raises(CycleError, nb)
    assert isinstance(err, CycleError)
    assert err.cell is not None and err.cell_id is not None
    assert f"cell {err.cell} (id {err.cell_id})" in str(err)
    cycle = err.cycle
    assert cycle[0] == cycle[-1]
    assert sorted(cycle[:-1]) == ["a", "b", "c"]
    after = {"a": "c", "b": "a", "c": "b"}
    for first, then in itertools.pairwise(cycle):
        assert after[then] == first  # each stage of the cycle must run after the one before it
    assert " -> ".join(cycle) in err.cause


def test_after_itself(tmp_path):
    nb = make_notebook(tmp_path, [("x = 1", ["stage:a", "after:a"])])
    err = raises(TagError, nb)
    assert_cell(err, 1, "c0")


def test_shell_command_is_a_magic_error(tmp_path):
    nb = make_notebook(tmp_path, [("x = 1", ["stage:a"]), ("!ls\ny = x", ["stage:b"])])
    err = raises(MagicError, nb)
    assert_cell(err, 2, "c1")
    assert "!ls" in err.cause and "--keep-magics" in err.cause


def test_keep_magics_accepts_a_shell_command(tmp_path):
    nb = make_notebook(tmp_path, [("x = 1", ["stage:a"]), ("!ls\ny = x", ["stage:b"])])
    analysis = analyze(nb, keep_magics=True)
    stage_b = {s.name: s for s in analysis.flow.stages}["b"]
    assert stage_b.uses_ipython
    assert stage_b.inputs == {"x": "a"}
    code = analysis.rendered.files["stages/b.py"]
    assert "from nb2pipe.runtime import get_ipython" in code
    assert "get_ipython().system('ls')" in code or 'get_ipython().system("ls")' in code
    compile(code, "b.py", "exec")


def test_errors_keep_their_fields_when_pickled(tmp_path):
    nb = make_notebook(tmp_path, [("df = 1", ["stage:a"]), ("y = dff", ["stage:b"])])
    with pytest.raises(UnknownNameError) as info:
        analyze(nb)
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is UnknownNameError
    assert (copy.name, copy.cell, copy.cell_id, copy.path, str(copy)) == (
        "dff",
        2,
        "c1",
        str(nb),
        str(info.value),
    )


def test_convert_api_writes_nothing_on_error(tmp_path):
    nb = make_notebook(tmp_path, [("df = 1", ["stage:a"]), ("y = dff", ["stage:b"])])
    out = tmp_path / "out"
    with pytest.raises(UnknownNameError):
        convert(nb, out)
    assert not out.exists()


# --- the CLI --------------------------------------------------------------------------------------------------------


def nb2pipe_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("nb2pipe")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "nb2pipe.cli"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.ipynb"
    path.write_text('{"cells": [')
    return path


def _unknown(tmp_path: Path) -> Path:
    return make_notebook(tmp_path, [("df = 1", ["stage:a"]), ("y = dff", ["stage:b"])], name="unknown.ipynb")


def _magic(tmp_path: Path) -> Path:
    return make_notebook(tmp_path, [("!ls", ["stage:a"])], name="magic.ipynb")


def _cycle(tmp_path: Path) -> Path:
    return make_notebook(
        tmp_path, [("x = 1", ["stage:a", "after:b"]), ("y = 1", ["stage:b", "after:a"])], name="cycle.ipynb"
    )


def _syntax(tmp_path: Path) -> Path:
    return make_notebook(tmp_path, [("x = (", ["stage:a"])], name="syntax.ipynb")


@pytest.mark.parametrize("make", [_corrupt, _unknown, _magic, _cycle, _syntax], ids=lambda f: f.__name__.strip("_"))
def test_cli_reports_one_line_and_exits_2(tmp_path, make):
    nb = make(tmp_path)
    proc = nb2pipe_cli("convert", nb.name, "-o", "out", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nb2pipe: error: "), proc.stderr
    assert nb.name in lines[0]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()


def test_cli_error_names_the_cell(tmp_path):
    nb = _unknown(tmp_path)
    proc = nb2pipe_cli("check", nb.name, "-o", "out", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "nb2pipe: error: unknown.ipynb: cell 2 (id c1): "
        "`dff` is used but no earlier cell defines it; did you mean 'df'?"
    )
    assert not (tmp_path / "out").exists()


def test_a_utf8_bom_is_accepted(tmp_path):
    from nb2pipe.notebook import read_notebook

    path = tmp_path / "bom.ipynb"
    source = Path(__file__).resolve().parents[2] / "example_notebooks" / "classification.ipynb"
    path.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    assert read_notebook(path).cells


def test_written_files_get_normal_permissions_and_keep_a_replaced_files_mode(tmp_path):
    import os

    from nb2pipe.output import write_atomic

    umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "new.py", b"x = 1\n")
        assert (tmp_path / "new.py").stat().st_mode & 0o777 == 0o644
        (tmp_path / "exec.sh").write_bytes(b"")
        (tmp_path / "exec.sh").chmod(0o750)
        write_atomic(tmp_path / "exec.sh", b"echo\n")
        assert (tmp_path / "exec.sh").stat().st_mode & 0o777 == 0o750
    finally:
        os.umask(umask)
