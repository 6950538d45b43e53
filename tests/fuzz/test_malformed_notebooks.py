"""Mutated notebook files: every one converts or gives one clean line naming the file and the problem, exit 2.

Mutations start from a real tagged example notebook: truncated JSON, flipped bytes, wrong types and missing keys
anywhere in the structure, malformed tags of every shape, NUL characters, non-UTF-8 bytes and huge cells. Never a
traceback, never an exception outside ``Nb2PipeError``.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nb2pipe
from nb2pipe.errors import Nb2PipeError
from tests.fuzz import STATS

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "example_notebooks" / "regression_features.ipynb"
RAW = SOURCE.read_bytes()
DATA = json.loads(RAW)

WRONG_VALUES = [None, 0, 1.5, True, "text", [], {}, ["a", 1], {"x": None}, "\x00", "é" * 3]
BAD_TAGS = [
    "stage:",
    "stage:1abc",
    "stage:a b",
    "stage:class",
    "stage:a:b",
    "after:",
    "after:nowhere",
    "after:1",
    " stage:x",
    "stage:x ",
    "STAGE:x",
    "reads:",
    "parameters",
    "skip",
    "shared",
    "stage:\x00",
    "",
    "step:",
    "prev:nothing",
]


def _check(raw: bytes, kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutant.ipynb"
        path.write_bytes(raw)
        try:
            nb2pipe.analyze(path)
        except Nb2PipeError as exc:
            message = str(exc)
            assert "\n" not in message, message
            assert "mutant.ipynb" in message, message
            STATS[f"mutants refused ({kind})"] += 1
            return
        STATS[f"mutants converted ({kind})"] += 1


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


PATHS = [p for p in _paths(DATA) if p and "outputs" not in p]


def _set(data: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(RAW) - 1))
def test_truncated_json(cut: int) -> None:
    _check(RAW[:cut], "truncated")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(RAW) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_flipped_bytes(flips: list[tuple[int, int]]) -> None:
    raw = bytearray(RAW)
    for pos, byte in flips:
        raw[pos] = byte
    _check(bytes(raw), "flipped bytes")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), st.sampled_from(WRONG_VALUES), st.booleans())
def test_wrong_types_and_missing_keys(path: tuple[Any, ...], value: Any, delete: bool) -> None:
    _check(json.dumps(_set(DATA, path, value, delete)).encode(), "wrong type / missing key")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(DATA["cells"]) - 1), st.lists(st.sampled_from(BAD_TAGS), min_size=1, max_size=3))
def test_malformed_tags(index: int, tags: list[str]) -> None:
    data = copy.deepcopy(DATA)
    data["cells"][index].setdefault("metadata", {})["tags"] = tags
    _check(json.dumps(data).encode(), "malformed tags")


def _code_cell_index() -> int:
    return next(i for i, c in enumerate(DATA["cells"]) if c["cell_type"] == "code" and c["source"])


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("nul in source", lambda s: s + "\x00x = 1"),
        ("nul in string", lambda s: s + "\nname = 'a\x00b'"),
        ("lone surrogate", lambda s: s + "\nx = '\udcff'"),
        ("huge cell", lambda s: s + "\n" + "big = 1\n" * 200_000),
        ("huge line", lambda s: s + "\nz = '" + "a" * 2_000_000 + "'"),
        ("deep nesting", lambda s: s + "\ny = " + "(" * 5000 + "1" + ")" * 5000),
        ("bad indentation", lambda s: s + "\n   x = 1"),
        ("tabs and spaces", lambda s: "if True:\n\tx = 1\n        y = 2"),
    ],
)
def test_hostile_cell_sources(name: str, mutate: Any) -> None:
    index = _code_cell_index()
    data = copy.deepcopy(DATA)
    source = data["cells"][index]["source"]
    data["cells"][index]["source"] = mutate("".join(source) if isinstance(source, list) else source)
    raw = json.dumps(data).encode("utf-8", "surrogatepass")
    _check(raw, name)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("latin-1 bytes", RAW.replace(b"import", "impört".encode("latin-1"), 1)),
        ("utf-16", RAW.decode().encode("utf-16")),
        ("empty file", b""),
        ("json array", b"[]"),
        ("nbformat 3", json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}).encode()),
        ("nbformat 5", json.dumps({**DATA, "nbformat": 5}).encode()),
        ("nan", RAW.replace(b'"nbformat": 4', b'"nbformat": NaN', 1)),
        ("deep json", b"[" * 100_000 + b"]" * 100_000),
    ],
)
def test_broken_files(name: str, raw: bytes) -> None:
    _check(raw, name)


@pytest.mark.parametrize(
    "raw",
    [RAW[: len(RAW) // 2], RAW.replace(b'"cells"', b'"cellz"', 1), b"\xff\xfe\x00garbage"],
    ids=["truncated", "missing cells", "binary"],
)
def test_cli_exit_code_2_and_one_line(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_bytes(raw)
    proc = subprocess.run(
        [sys.executable, "-m", "nb2pipe.cli", "convert", str(path), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nb2pipe: error: ") and "broken.ipynb" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written
