"""Converter bugs the fuzzers in tests/fuzz found, each pinned by a small notebook."""

from __future__ import annotations

import pytest

from nb2pipe.errors import UnknownNameError
from tests.unit.test_dataflow import assert_compiles, run, stages


def test_del_of_a_name_from_an_earlier_stage_takes_it_as_input(tmp_path):
    a = run(tmp_path, [("e = 1", ["stage:a"]), ("del e\nz = 2", ["stage:b"])])
    assert stages(a)["b"].inputs == {"e": "a"}
    assert_compiles(a)


def test_except_as_name_is_gone_after_the_handler(tmp_path):
    cells = [
        ("try:\n    c = 1 // 0\nexcept ZeroDivisionError as err:\n    c = len(str(err))", ["stage:a"]),
        ("try:\n    d = 1 // 0\nexcept ZeroDivisionError as err:\n    d = len(str(err))\nprint(c, d)", ["stage:b"]),
    ]
    a = run(tmp_path, cells)
    assert stages(a)["a"].outputs == ["c"]  # not `err`: Python deletes it when the handler ends
    assert stages(a)["b"].inputs == {"c": "a"}
    with pytest.raises(UnknownNameError, match="`err` is used"):
        run(tmp_path, [*cells, ("print(err)", ["stage:c"])])


def test_loop_and_with_targets_read_in_their_body_are_local(tmp_path):
    cells = [
        ("for i in range(0):\n    pass\nt = 0", ["stage:a"]),
        ("for i in range(3):\n    t += i\nwith open(__file__) as fh:\n    n = len(fh.name)", ["stage:b"]),
    ]
    a = run(tmp_path, cells)
    assert stages(a)["b"].inputs == {"t": "a"}  # `i` comes from b's own loop, never from a
    assert stages(a)["a"].outputs == ["t"]


def test_dotted_imports_reach_the_stages_that_use_them(tmp_path):
    # Found by the real-notebook corpus (arch, dowhy): `import arch.data.sp500` above the first stage, then
    # `arch.data.sp500.load()` in a stage gave NameError: libcst records that read as the dotted chain.
    cells = [
        ("import logging.config\nimport os.path", []),
        ("x = os.path.join('a', 'b')", ["stage:a"]),
        ("logging.config.dictConfig({'version': 1})\ny = x", ["stage:b"]),
    ]
    a = run(tmp_path, cells)
    assert stages(a)["a"].imports == ["import os.path"]
    assert stages(a)["b"].imports == ["import logging.config"]
    assert_compiles(a)
