"""The ``nb2pipe`` command line: help, idempotent convert, check, diff, tag, and never touching what is not ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nb2pipe.cli import main
from nb2pipe.converter import analyze
from tests.helpers import make_notebook

CELLS = [
    ("import math", []),
    ("x = 1  # the start", ["stage:a"]),
    ("y = x + 1", ["stage:b"]),
    ("z = math.sqrt(y)", ["stage:c"]),
]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        p.relative_to(directory).as_posix(): (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes())
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("convert", ["--output", "--name", "--keep-magics", "--state", "--json", "--quiet"]),
        ("check", ["--output", "--name", "--keep-magics", "--state"]),
        ("diff", ["--output", "--name", "--keep-magics", "--state", "--json"]),
        ("analyze", ["--output", "--name", "--keep-magics", "--state", "--json"]),
        ("tag", ["--by", "--output", "--in-place"]),
    ],
)
def test_subcommand_help_lists_its_options(capsys, command, options):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: nb2pipe {command}")
    for option in options:
        assert option in out, option


def test_top_level_help_lists_commands_in_a_subprocess():
    script = Path(sys.executable).with_name("nb2pipe")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "nb2pipe.cli"]
    proc = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("convert", "check", "diff", "analyze", "tag"):
        assert command in proc.stdout
    assert proc.stderr == ""


def test_convert_twice_writes_nothing_the_second_time(tmp_path, capsys):
    nb = make_notebook(tmp_path, CELLS)
    out = tmp_path / "out"
    code, stdout, _ = cli(capsys, "convert", str(nb), "-o", str(out))
    assert code == 0
    package = out / "nb"
    assert (package / "nb2pipe.lock").is_file()
    assert {"stages/a.py", "stages/b.py", "stages/c.py", "pipeline.py", "pipeline.json"} <= set(snapshot(package))
    assert "wrote" in stdout
    before = snapshot(package)

    code, stdout, _ = cli(capsys, "convert", str(nb), "-o", str(out))
    assert code == 0
    assert "up to date" in stdout
    assert snapshot(package) == before
    assert sorted(p.name for p in out.iterdir()) == ["nb"]  # no temporary directories left behind


def test_convert_json_summary(tmp_path, capsys):
    nb = make_notebook(tmp_path, CELLS)
    code, stdout, _ = cli(capsys, "convert", str(nb), "-o", str(tmp_path / "out"), "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["pipeline"] == "nb"
    assert set(summary["stages"]) >= {"a", "b", "c"}
    code, stdout, _ = cli(capsys, "convert", str(nb), "-o", str(tmp_path / "out"), "--json")
    assert json.loads(stdout)["written"] == []


def test_check_is_0_when_fresh_and_1_after_a_code_change(tmp_path, capsys):
    nb = make_notebook(tmp_path, CELLS)
    out = str(tmp_path / "out")
    assert cli(capsys, "convert", str(nb), "-o", out)[0] == 0
    code, stdout, stderr = cli(capsys, "check", str(nb), "-o", out)
    assert (code, stdout, stderr) == (0, "", "")

    cells = list(CELLS)
    cells[2] = ("y = x + 2", ["stage:b"])
    make_notebook(tmp_path, cells)
    code, _, stderr = cli(capsys, "check", str(nb), "-o", out)
    assert code == 1
    assert "stale" in stderr and "stages/b.py" in stderr

    assert cli(capsys, "convert", str(nb), "-o", out)[0] == 0
    assert cli(capsys, "check", str(nb), "-o", out)[0] == 0


def test_check_is_1_when_nothing_was_exported(tmp_path, capsys):
    nb = make_notebook(tmp_path, CELLS)
    assert cli(capsys, "check", str(nb), "-o", str(tmp_path / "out"))[0] == 1
    assert not (tmp_path / "out").exists()


def diff_json(capsys, nb: Path, out: Path) -> dict[str, tuple[str, str | None, str | None]]:
    code, stdout, _ = cli(capsys, "diff", str(nb), "-o", str(out), "--json")
    assert code == 0
    return {c["stage"]: (c["status"], c["old"], c["new"]) for c in json.loads(stdout)}


def test_comment_edit_changes_no_version_and_code_edit_changes_exactly_its_stage(tmp_path, capsys):
    nb = make_notebook(tmp_path, CELLS)
    out = tmp_path / "out"
    assert cli(capsys, "convert", str(nb), "-o", str(out))[0] == 0
    first = diff_json(capsys, nb, out)
    assert {s: st for s, (st, _, _) in first.items()} == {"a": "unchanged", "b": "unchanged", "c": "unchanged"}

    cells = list(CELLS)
    cells[1] = ("# a new comment\nx = 1  # another comment\n\n", ["stage:a"])
    make_notebook(tmp_path, cells)
    after_comment = diff_json(capsys, nb, out)
    assert {s: st for s, (st, _, _) in after_comment.items()} == {"a": "unchanged", "b": "unchanged", "c": "unchanged"}
    assert after_comment == first

    cells[1] = ("x = 100", ["stage:a"])
    make_notebook(tmp_path, cells)
    after_code = diff_json(capsys, nb, out)
    assert after_code["a"][0] == "changed"
    assert after_code["a"][1] == first["a"][1] and after_code["a"][2] != first["a"][2]
    assert after_code["b"] == first["b"]
    assert after_code["c"] == first["c"]


def test_diff_reports_added_and_removed_stages(tmp_path, capsys):
    nb = make_notebook(tmp_path, CELLS)
    out = tmp_path / "out"
    assert cli(capsys, "convert", str(nb), "-o", str(out))[0] == 0
    make_notebook(tmp_path, [CELLS[0], CELLS[1], ("y = x + 1", ["stage:b2"]), CELLS[3]])
    status = {s: st for s, (st, _, _) in diff_json(capsys, nb, out).items()}
    assert status == {"a": "unchanged", "b2": "added", "c": "unchanged", "b": "removed"}


UNTAGGED = [
    ("# Sales analysis", "markdown"),
    ("import math", []),
    ("## Load the data", "markdown"),
    ("x = 1", []),
    ("more = x * 2", []),
    ("## Train *the* model!", "markdown"),
    ("y = math.sqrt(more)", []),
]


def stage_tags(path: Path) -> list[list[str]]:
    data = nbformat.read(path, as_version=4)
    nbformat.validate(data)
    return [list(c.metadata.get("tags", [])) for c in data.cells if c.cell_type == "code"]


def test_tag_by_headings_to_a_new_file(tmp_path, capsys):
    nb = make_notebook(tmp_path, UNTAGGED)
    before = nb.read_bytes()
    out = tmp_path / "out.ipynb"
    code, stdout, _ = cli(capsys, "tag", str(nb), "--by", "headings", "-o", str(out))
    assert code == 0
    assert nb.read_bytes() == before
    assert stage_tags(out) == [["stage:sales_analysis"], ["stage:load_the_data"], [], ["stage:train_the_model"]]
    assert "3 stages" in stdout
    analysis = analyze(out)
    assert [s.name for s in analysis.flow.stages] == ["sales_analysis", "load_the_data", "train_the_model"]
    assert {s.name: s.inputs for s in analysis.flow.stages}["train_the_model"] == {"more": "load_the_data"}


@pytest.mark.parametrize(
    "title",
    [
        "# Do-sampler Introduction\n## Pearlian Interventions\nAll the headings sit in the title cell.",  # dowhy
        "Not a heading at all",
    ],
)
def test_tag_splits_at_prose_when_headings_give_one_stage(tmp_path, capsys, title):
    cells = [
        (title, "markdown"),
        ("import math\nx = 1", []),
        ("So the naive effect is around 60% high. Now build a model.", "markdown"),
        ("y = math.sqrt(x)", []),
        ("", "markdown"),  # an empty cell does not start a stage
        ("**Now** we can *sample*:", "markdown"),
        ("z = y + 1", []),
        ("w = z", []),
    ]
    nb = make_notebook(tmp_path, cells)
    out = tmp_path / "out.ipynb"
    code, _, _ = cli(capsys, "tag", str(nb), "--by", "headings", "-o", str(out))
    assert code == 0
    first = "pearlian_interventions" if title.startswith("#") else "not_a_heading_at_all"
    assert stage_tags(out) == [[f"stage:{first}"], ["stage:so_the_naive_effect_is"], ["stage:now_we_can_sample"], []]


def test_tag_in_place(tmp_path, capsys):
    nb = make_notebook(tmp_path, UNTAGGED)
    code, _, _ = cli(capsys, "tag", str(nb), "--by", "headings", "--in-place")
    assert code == 0
    assert stage_tags(nb) == [["stage:sales_analysis"], ["stage:load_the_data"], [], ["stage:train_the_model"]]


def test_tag_requires_an_output_choice(tmp_path, capsys):
    nb = make_notebook(tmp_path, UNTAGGED)
    before = nb.read_bytes()
    with pytest.raises(SystemExit) as info:
        main(["tag", str(nb), "--by", "headings"])
    assert info.value.code == 2
    assert nb.read_bytes() == before


def test_convert_leaves_the_notebook_bytes_unchanged(tmp_path, capsys):
    nb = make_notebook(tmp_path, CELLS)
    before = nb.read_bytes()
    stat = nb.stat()
    assert cli(capsys, "convert", str(nb), "-o", str(tmp_path / "out"))[0] == 0
    assert nb.read_bytes() == before
    assert nb.stat().st_mtime_ns == stat.st_mtime_ns


def test_convert_refuses_a_non_empty_directory_it_did_not_write(tmp_path, capsys):
    nb = make_notebook(tmp_path, CELLS)
    foreign = tmp_path / "out" / "nb"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    code, stdout, stderr = cli(capsys, "convert", str(nb), "-o", str(tmp_path / "out"))
    assert code == 2
    assert stderr.startswith("nb2pipe: error: ") and len(stderr.splitlines()) == 1
    assert "nb2pipe.lock" in stderr
    assert stdout == ""
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert (foreign / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["nb"]


def test_convert_into_an_empty_directory_is_fine(tmp_path, capsys):
    nb = make_notebook(tmp_path, CELLS)
    (tmp_path / "out" / "nb").mkdir(parents=True)
    assert cli(capsys, "convert", str(nb), "-o", str(tmp_path / "out"))[0] == 0
    assert (tmp_path / "out" / "nb" / "nb2pipe.lock").is_file()


def test_convert_removes_files_of_stages_that_are_gone(tmp_path, capsys):
    nb = make_notebook(tmp_path, CELLS)
    out = tmp_path / "out"
    assert cli(capsys, "convert", str(nb), "-o", str(out))[0] == 0
    make_notebook(tmp_path, [CELLS[0], CELLS[1], ("y = x + 1\nz = math.sqrt(y)", ["stage:b"])])
    code, stdout, _ = cli(capsys, "convert", str(nb), "-o", str(out))
    assert code == 0
    assert "removed 1" in stdout
    assert not (out / "nb" / "stages" / "c.py").exists()
    assert cli(capsys, "check", str(nb), "-o", str(out))[0] == 0


def test_analyze_json_prints_the_pipeline_definition(tmp_path, capsys):
    nb = make_notebook(tmp_path, CELLS)
    code, stdout, _ = cli(capsys, "analyze", str(nb), "--json")
    assert code == 0
    spec = json.loads(stdout)
    assert spec["order"] == ["a", "b", "c"]
    inputs = {s["name"]: s["inputs"] for s in spec["stages"]}
    assert inputs["c"] == [{"name": "y", "from": "b"}]
    assert not (tmp_path / "out").exists()
