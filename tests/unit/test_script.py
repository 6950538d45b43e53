"""The one-file export: typed command line, names that cannot clash, the CLI command, bytes that do not change.

Every generated script here is run with plain ``python`` in a subprocess: a script that reads well but does not
run, or runs with the wrong values, fails these tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nb2pipe.cli import main
from nb2pipe.converter import analyze
from nb2pipe.script import export_script, plan_script, render_script
from tests.helpers import make_notebook

ROOT = Path(__file__).resolve().parents[2]

TYPED = [
    (
        'flag = True\nname = "a b"\nratio = 0.5\ncols = ["x"]\nshape = (2, 3)\nmaybe = None\ncount: int = 2\n'
        'pct = "50%"\nweights: dict = {"a": 1}',
        ["parameters"],
    ),
    (
        "print(repr(flag), repr(name), repr(ratio), repr(cols), repr(shape), repr(maybe), repr(count), repr(pct))\n"
        "print(sorted(weights.items()))",
        ["stage:show"],
    ),
]


def run_script(path: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "JPY_", "IPY"))}
    return subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd or path.parent,
        env=env,
    )


@pytest.fixture
def typed_script(tmp_path: Path) -> Path:
    nb = make_notebook(tmp_path, TYPED)
    out = tmp_path / "typed.py"
    export_script(nb, out)
    return out


def test_defaults_are_the_notebooks(typed_script: Path) -> None:
    proc = run_script(typed_script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "True 'a b' 0.5 ['x'] (2, 3) None 2 '50%'\n[('a', 1)]\n"


def test_every_parameter_is_an_option_typed_like_its_default(typed_script: Path) -> None:
    proc = run_script(
        typed_script,
        *("--flag", "no", "--name", "z", "--ratio", "2", "--cols", "['p', 'q']", "--shape", "(1,)"),
        *("--maybe", "7", "--count", "5", "--pct", "10%", "--weights", "{'b': 2}"),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "False 'z' 2.0 ['p', 'q'] (1,) 7 5 '10%'\n[('b', 2)]\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "1.5"], "argument --count: invalid int value: '1.5'"),
        (["--ratio", "half"], "argument --ratio: invalid float value: 'half'"),
        (["--flag", "maybe"], "argument --flag: expected true or false, got 'maybe'"),
        (["--cols", "x"], "argument --cols: 'x' is not a Python literal"),
        (["--cols", "3"], "argument --cols: '3' is not a list"),
        (["--nope", "1"], "unrecognized arguments: --nope 1"),
    ],
)
def test_a_bad_value_is_refused_before_any_stage_runs(typed_script: Path, args: list[str], message: str) -> None:
    proc = run_script(typed_script, *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert message in proc.stderr


def test_help_lists_every_parameter_with_its_default(typed_script: Path) -> None:
    proc = run_script(typed_script, "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    for option, shown in [
        ("--flag BOOL", "bool (default: True)"),
        ("--name STR", 'str (default: "a b")'),
        ("--ratio FLOAT", "float (default: 0.5)"),
        ("--cols LIST", 'list (default: ["x"])'),
        ("--shape TUPLE", "tuple (default: (2, 3))"),
        ("--maybe LITERAL", "NoneType (default: None)"),
        ("--count INT", "int (default: 2)"),
        ("--pct STR", 'str (default: "50%")'),
        ("--weights DICT", 'dict (default: {"a": 1})'),
    ]:
        assert f"{option} {shown}" in text, option


def test_generated_names_never_shadow_the_notebooks(tmp_path: Path) -> None:
    """Stage names that are builtins or locals of main(), a shared `main`, one name imported two ways."""
    nb = make_notebook(
        tmp_path,
        [
            ("import os.path as p\n\n\ndef main():\n    return 'shared main'", ["shared"]),
            ("help = 1", ["parameters"]),
            ("from math import pi as value\nprint(main(), help, round(value, 2))", ["stage:print"]),
            ("import json as value\nresults = value.dumps([1])\nprint(results, p.basename('/a/b'))", ["stage:results"]),
            ("print(len(results))", ["stage:parse_args"]),
        ],
    )
    out = tmp_path / "names.py"
    code = export_script(nb, out)
    plan = plan_script(analyze(nb).flow)
    assert plan.functions == {"print": "print_stage", "results": "results_stage", "parse_args": "parse_args"}
    assert "def parse_arguments(argv=None):" in code  # parse_args went to the stage of that name
    assert "def run_main(argv=None):" in code and 'if __name__ == "__main__":\n    run_main()' in code
    assert "\nfrom math import pi as value\n" in code  # the first binding is module-level...
    assert "    import json as value\n" in code  # ...a second, different one is local to its stage
    assert "--help-" not in code and '"--help_"' in code
    proc = run_script(out, "--help_", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "shared main 3 3.14\n[1] b\n3\n"


def test_same_notebook_same_bytes_whatever_the_hash_seed(tmp_path: Path) -> None:
    notebook = ROOT / "example_notebooks" / "classification.ipynb"
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        code = "import sys; from nb2pipe.script import export_script; sys.stdout.write(export_script(sys.argv[1]))"
        proc = subprocess.run(
            [sys.executable, "-c", code, str(notebook)], capture_output=True, text=True, env=env, check=True
        )
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0] == render_script(analyze(notebook))


def test_keep_magics_cannot_be_a_plain_script(tmp_path: Path) -> None:
    from nb2pipe.errors import UnsupportedCodeError

    nb = make_notebook(tmp_path, [("!echo hi\nx = 1", ["stage:a"])])
    with pytest.raises(UnsupportedCodeError, match="keeps IPython magics"):
        render_script(analyze(nb, keep_magics=True))


# -- the command -------------------------------------------------------------------------------------------------


def test_cli_writes_the_script_and_prints_it_with_dash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nb = make_notebook(tmp_path, TYPED)
    out = tmp_path / "sub" / "typed.py"
    assert main(["export", "script", str(nb), "-o", str(out)]) == 0
    assert f"{out}: script written" in capsys.readouterr().out
    assert main(["export", "script", str(nb), "-o", "-"]) == 0
    assert capsys.readouterr().out == out.read_text()


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ([("x = (1,", ["stage:a"])], "cell 1 (id c0): invalid Python at line 1"),
        ([("print(y)", ["stage:a"])], "cell 1 (id c0): `y` is used but no earlier cell defines it"),
        ([("%load_data x", ["stage:a"])], "cell 1 (id c0): magic `%load_data x` has no meaning outside IPython"),
    ],
)
def test_cli_bad_notebook_one_line_exit_2_nothing_written(
    tmp_path: Path, cells: list[tuple[str, list[str]]], expected: str
) -> None:
    nb = make_notebook(tmp_path, cells)
    out = tmp_path / "out.py"
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("nb2pipe")), "export", "script", str(nb), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"nb2pipe: error: {nb}: ") and expected in proc.stderr
    assert not out.exists()


def test_cli_invalid_json_and_directory_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text('{"cells": [')
    assert main(["export", "script", str(bad), "-o", str(tmp_path / "x.py")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    nb = make_notebook(tmp_path, TYPED)
    assert main(["export", "script", str(nb), "-o", str(tmp_path)]) == 2
    assert "is a directory; give the script's file name" in capsys.readouterr().err


def test_export_help_lists_script(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["export", "script", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: nb2pipe export script")
    for option in ("--output", "--name", "--state", "--quiet"):
        assert option in out


def test_a_stage_import_never_replaces_shared_code(tmp_path: Path) -> None:
    """Shared code runs at module level after the imports: a stage's import of the same name must stay local."""
    nb = make_notebook(
        tmp_path,
        [
            ('label = "shared"', ["shared"]),
            ("from string import ascii_lowercase as label\nprint(label[:3])", ["stage:a"]),
            ("print(len(label))", ["stage:b"]),
        ],
    )
    out = tmp_path / "shared.py"
    code = export_script(nb, out)
    assert code.count("    from string import ascii_lowercase as label\n") == 2
    proc = run_script(out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "abc\n26\n"


def test_the_script_is_readable_by_others_and_keeps_its_mode(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path, TYPED)
    out = tmp_path / "typed.py"
    export_script(nb, out)
    assert out.stat().st_mode & 0o777 == 0o644
    out.chmod(0o755)
    export_script(nb, out)
    assert out.stat().st_mode & 0o777 == 0o755
