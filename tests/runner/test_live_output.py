"""What a stage prints is shown while it runs (line by line, prefixed when stages run side by side) and kept.

No timing: each stage prints a line and then waits for a file that the test creates only after it has read that
line from the running ``nb2pipe run``, so the run can only succeed if the line arrived while the stage ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import make_notebook

WAIT = (
    "import os, sys, time\n"
    "def wait_for(name):\n"
    "    for _ in range(600):\n"
    "        if os.path.exists(name):\n"
    "            return\n"
    "        time.sleep(0.05)\n"
    "    raise TimeoutError(name + ' never appeared: the line before it was not shown live')\n"
)


def _start(nb: Path, home: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NB2PIPE_HOME": str(home)}
    cmd = [sys.executable, "-m", "nb2pipe.cli", "run", str(nb), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=nb.parent)


def _read_until(proc: subprocess.Popen[str], wanted: set[str]) -> list[str]:
    assert proc.stdout is not None
    seen: list[str] = []
    while wanted - set(seen):
        line = proc.stdout.readline()
        assert line, f"the run ended before printing {wanted - set(seen)}; it printed {seen}"
        seen.append(line.rstrip("\n"))
    return seen


def test_a_stage_line_is_shown_while_the_stage_runs_and_kept_with_the_run(tmp_path: Path) -> None:
    cells = [
        (WAIT, ["shared"]),
        ("print('loading', flush=False)\nwait_for('go')\nprint('loaded')\nx = 1", ["stage:load"]),
        ("y = x + 1", ["stage:use"]),
    ]
    nb = make_notebook(tmp_path, cells)
    proc = _start(nb, tmp_path / "store", "--json")
    # With --json the stages' output goes to stderr (merged here), the summary to stdout.
    before = _read_until(proc, {"loading"})
    (tmp_path / "go").touch()
    rest, _ = proc.communicate(timeout=120)
    out = "\n".join(before) + "\n" + rest
    assert proc.returncode == 0, out
    assert "loaded" in out and out.count("loading") == 1  # shown once, live, not again at the end
    run_dir = Path(json.loads(rest[rest.index("{") :])["run_dir"])
    assert (run_dir / "load.stdout").read_text() == "loading\nloaded\n"
    assert not (run_dir / "use.stdout").exists()  # nothing printed, no file


def test_parallel_stages_lines_are_prefixed_with_the_stage_name(tmp_path: Path) -> None:
    cells = [
        (WAIT, ["shared"]),
        ("x = 1", ["stage:start"]),
        ("print('left waits')\nwait_for('go_left')\na = x", ["stage:left"]),
        ("print('right waits', file=sys.stderr)\nwait_for('go_right')\nb = x", ["stage:right"]),
        ("c = a + b", ["stage:join"]),
    ]
    nb = make_notebook(tmp_path, cells)
    proc = _start(nb, tmp_path / "store", "--workers", "2")
    # Both lines can only appear if both stages run at once, each waiting for the test.
    _read_until(proc, {"[left] left waits", "[right] right waits"})
    (tmp_path / "go_left").touch()
    (tmp_path / "go_right").touch()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
