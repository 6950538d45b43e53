"""The example notebooks run end to end with the local runner, and a second run is served from the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.runner.conftest import EXAMPLES, cli, run

NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_example_runs_then_reruns_from_cache(tmp_path: Path, name: str) -> None:
    home = tmp_path / "store"
    nb = tmp_path / name
    shutil.copy(EXAMPLES / name, nb)
    first = run(nb, home, workers=2)
    assert first.status == "succeeded", [o.failure for o in first.stages if o.failure]
    assert {o.status for o in first.stages} == {"ran"}
    proc = cli(["run", str(nb)], home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(" cached ") == len(first.stages) and " ran " not in proc.stderr
    assert sorted(tmp_path.iterdir()) == sorted([home, nb])  # nothing written next to the notebook
