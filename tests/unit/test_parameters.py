"""Parameters typed like their defaults, checked before anything runs."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from nb2pipe.errors import ParameterError
from nb2pipe.parameters import Declared, coerce, notebook_parameters, python_literal, resolve
from tests.helpers import make_notebook


def _declared(**defaults: object) -> list[Declared]:
    return [Declared(k, type(v).__name__, v, repr(v)) for k, v in defaults.items()]


def test_values_are_typed_like_the_defaults() -> None:
    declared = _declared(n=10, lr=0.1, name="a", flag=False, layers=[1, 2], opts={"a": 1})
    pairs = [("n", "20"), ("lr", "1"), ("name", "42"), ("flag", "yes"), ("layers", "[3, 4]"), ("opts", "{'b': 2}")]
    got = resolve(declared, pairs)
    assert got == {"n": 20, "lr": 1.0, "name": "42", "flag": True, "layers": [3, 4], "opts": {"b": 2}}
    assert isinstance(got["lr"], float)
    assert isinstance(got["n"], int)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("n", "notanint", r"'n' \(-p\): 'notanint' is not a int \(the default is 10\)"),
        ("n", "1.5", "1.5 is not a int"),
        ("n", "True", "is not a int"),
        ("flag", "maybe", "is not a bool"),
        ("layers", "3", "is not a list"),
    ],
)
def test_wrong_types_are_refused_up_front(name: str, text: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        resolve(_declared(n=10, flag=False, layers=[1]), [(name, text)])


def test_unknown_name_suggests_a_close_match() -> None:
    with pytest.raises(ParameterError, match=r"unknown parameter 'n_estimator'; did you mean 'n_estimators'\?"):
        resolve(_declared(n_estimators=100), [("n_estimator", "5")], target="nb.ipynb")


def test_a_notebook_without_parameters_cell_gets_a_clear_message() -> None:
    with pytest.raises(ParameterError, match="has no cell tagged 'parameters'"):
        resolve(None, [("x", "1")])
    assert resolve(None, []) == {}


def test_files_then_values_then_cli(tmp_path: Path) -> None:
    f1 = tmp_path / "a.yaml"
    f1.write_text("n: 1\nlr: 2\nname: from-file\n")
    f2 = tmp_path / "b.yaml"
    f2.write_text("n: 3\n")
    got = resolve(_declared(n=0, lr=0.5, name="x"), [("n", "9")], [f1, f2], values={"name": "api"})
    assert got == {"n": 9, "lr": 2.0, "name": "api"}


@pytest.mark.parametrize(
    ("content", "message"),
    [("n: [unclosed\n", "not valid YAML"), ("- 1\n- 2\n", "must be a mapping"), ("n: text\n", "'text' is not a int")],
)
def test_bad_parameter_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(content)
    with pytest.raises(ParameterError, match=message):
        resolve(_declared(n=1), files=[path])
    with pytest.raises(ParameterError, match="cannot read parameters file"):
        resolve(_declared(n=1), files=[tmp_path / "missing.yaml"])


def test_annotations_win_over_defaults() -> None:
    declared = [Declared("limit", "int | None", None, "None"), Declared("ratio", "float", 1, "1")]
    assert resolve(declared, [("limit", "None"), ("ratio", "2")]) == {"limit": None, "ratio": 2.0}
    assert resolve(declared, [("limit", "5")]) == {"limit": 5}
    with pytest.raises(ParameterError, match="is not a int"):
        resolve(declared, [("limit", "five")])


def test_notebook_parameters_reads_the_tagged_cell(tmp_path: Path) -> None:
    path = make_notebook(
        tmp_path,
        [
            ("import os", []),
            ("n = 3\nlr: float = 1\nname = 'x'  # comment\ndata_dir = os.getcwd()\n%matplotlib inline", ["parameters"]),
        ],
    )
    declared = {p.name: p for p in notebook_parameters(path) or []}
    assert declared["n"] == Declared("n", "int", 3, "3")
    assert declared["lr"].type == "float"
    assert declared["name"].default == "x"
    assert not declared["data_dir"].literal
    assert resolve(list(declared.values()), [("data_dir", "/tmp"), ("lr", "2")]) == {"data_dir": "/tmp", "lr": 2.0}


def test_notebook_without_parameters_cell(tmp_path: Path) -> None:
    assert notebook_parameters(make_notebook(tmp_path, [("x = 1", [])])) is None


def test_python_literal_round_trips() -> None:
    for value in [1, 0.1, "a'b\"c", True, None, [1, {"a": (1, 2)}], -5]:
        assert ast.literal_eval(python_literal(value)) == value
    assert python_literal(math.inf) == "float('inf')"
    with pytest.raises(ValueError):
        python_literal(object())
    assert coerce(Declared("x", "float", 0.0, "0.0"), "nan") != 0.0
