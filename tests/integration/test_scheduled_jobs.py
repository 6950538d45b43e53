"""A schedule runs a real tracked job: the scheduler's run id, schedule name and fire time land on the job's run.

No fake launcher here: ``nb2pipe schedule run-now`` starts ``nb2pipe job run`` in a subprocess, which executes the
notebook in a real kernel with papermill and records the run in the same SQLite store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nb2pipe.runstore import RunStore
from tests.helpers import make_notebook

pytestmark = pytest.mark.kernel


def nb2pipe(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nb2pipe", *argv], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_run_now_records_a_real_job_linked_to_its_schedule(tmp_path: Path) -> None:
    nb = make_notebook(
        tmp_path,
        [
            ("n = 3", ["parameters"]),
            ("import nb2pipe\nnb2pipe.record('double', n * 2)\nprint('n is', n)", []),
            # A command started inside the notebook must not take the scheduled run's id: no schedule name in here.
            (
                "import os\nprint('inside', os.environ.get('NB2PIPE_SCHEDULE'), 'NB2PIPE_SCHEDULED_FOR' in os.environ)",
                [],
            ),
        ],
        name="nightly.ipynb",
    )
    home = str(tmp_path / "store")
    added = nb2pipe("schedule", "add", "nightly", str(nb), "--cron", "0 3 * * *", "-p", "n", "21", "--home", home,
                    cwd=tmp_path)  # fmt: skip
    assert added.returncode == 0, added.stderr
    ran = nb2pipe("schedule", "run-now", "nightly", "--home", home, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    history = json.loads(nb2pipe("schedule", "history", "nightly", "--json", "--home", home, cwd=tmp_path).stdout)
    assert history[0]["status"] == "succeeded"
    run_id = history[0]["runs"][0]["run_id"]
    with RunStore(home) as store:
        run = store.get_run(run_id)
    assert run["kind"] == "job" and run["status"] == "succeeded"
    assert run["schedule"] == "nightly" and run["scheduled_for"].endswith("Z")
    assert run["parameters"] == {"n": 21}
    assert run["metrics"] == {"double": 42}
    executed = json.loads(Path(run["run_dir"], "nightly.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "n is 21" in printed
    assert "inside None True" in printed
    shown = nb2pipe("job", "show", run_id, "--home", home, cwd=tmp_path).stdout
    assert "schedule:            nightly (fire time 20" in shown
