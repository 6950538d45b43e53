"""Golden files: the generated package for each reference notebook, byte for byte.

Regenerate after an intended change with ``pytest tests/integration/test_goldens.py --update-goldens`` and review
the diff like any code change.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import nb2pipe

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "example_notebooks").glob("*.ipynb")) + sorted(
    (ROOT / "tests" / "data" / "notebooks").glob("*.ipynb")
)
GOLDEN = ROOT / "tests" / "data" / "golden"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_generated_package_matches_golden(notebook: Path, update_goldens: bool) -> None:
    analysis = nb2pipe.analyze(notebook)
    golden = GOLDEN / analysis.name
    if update_goldens:
        shutil.rmtree(golden, ignore_errors=True)
        for rel, text in analysis.rendered.files.items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_text(text)
        pytest.skip("goldens updated")
    expected = {p.relative_to(golden).as_posix(): p.read_text() for p in golden.rglob("*") if p.is_file()}
    assert sorted(analysis.rendered.files) == sorted(expected)
    for rel, text in analysis.rendered.files.items():
        assert text == expected[rel], f"{rel} differs from its golden; rerun with --update-goldens if intended"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_same_notebook_same_bytes(notebook: Path, tmp_path: Path) -> None:
    first = nb2pipe.analyze(notebook).rendered.files
    second = nb2pipe.analyze(str(notebook)).rendered.files
    assert first == second
    nb2pipe.convert(notebook, tmp_path)
    before = notebook.read_bytes()
    result = nb2pipe.convert(notebook, tmp_path)
    assert result.report.written == [] and result.report.removed == []
    assert notebook.read_bytes() == before


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_generated_code_is_valid_and_lint_clean(notebook: Path) -> None:
    import ast

    for rel, text in nb2pipe.analyze(notebook).rendered.files.items():
        if rel.endswith(".py"):
            ast.parse(text, filename=rel)  # raises on invalid code
