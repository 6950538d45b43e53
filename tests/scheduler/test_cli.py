"""The ``nb2pipe schedule`` and ``nb2pipe scheduler`` commands, and the launcher's contract with the run commands."""

from __future__ import annotations

import json
import math
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nb2pipe.cli import main
from nb2pipe.parameters import Declared, coerce
from nb2pipe.scheduler import LaunchRequest, cli_command, launch
from nb2pipe.scheduler.launch import parameter_text, run_environment
from tests.helpers import make_notebook

from .helpers import CHILD, read_ledger


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return make_notebook(tmp_path, [("n = 3\nlr = 0.1\nname = 'x'", ["parameters"]), ("print(n * lr, name)", [])])


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_checks_everything_up_front_and_shows_the_next_five_fire_times(
    home: Path, notebook: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "schedule", "add", "nightly", str(notebook), "--cron", "30 2 * * *", "--timezone", "Europe/Berlin",
        "-p", "n", "5", "-p", "lr", "1", "--home", str(home),
    )  # fmt: skip
    assert code == 0
    assert "added schedule nightly: job" in out and "parameters: n=5, lr=1.0" in out
    assert out.count(" CET") + out.count(" CEST") == 5
    code, out, _ = run(capsys, "schedule", "show", "nightly", "--json", "--home", str(home))
    shown = json.loads(out)
    assert shown["parameters"] == {"n": 5, "lr": 1.0}
    assert shown["kind"] == "job" and shown["target"] == str(notebook.absolute())
    assert len(shown["upcoming"]) == 5 and shown["catchup"] == "latest" and shown["max_concurrent"] == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cron", "30 2 * *"], "has 4 fields"),
        (["--cron", "* * * * *", "--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["--cron", "* * * * *", "-p", "nn", "5"], "unknown parameter 'nn'; did you mean 'n'?"),
        (["--cron", "* * * * *", "-p", "n", "five"], "parameter 'n' (-p): 'five' is not a int"),
    ],
)
def test_a_bad_schedule_is_refused_at_add_time(
    home: Path, notebook: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code, out, err = run(capsys, "schedule", "add", "s", str(notebook), *extra, "--home", str(home))
    assert code == 2 and message in err and out == ""
    assert len(err.strip().splitlines()) == 1


def test_add_refuses_duplicates_bad_names_and_targets(
    home: Path, notebook: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--cron", "0 * * * *", "--home", str(home)]
    assert run(capsys, "schedule", "add", "s", str(notebook), *base)[0] == 0
    assert "already exists" in run(capsys, "schedule", "add", "s", str(notebook), *base)[2]
    assert "use letters, digits" in run(capsys, "schedule", "add", "a b", str(notebook), *base)[2]
    assert "no such notebook" in run(capsys, "schedule", "add", "t", str(tmp_path / "x.ipynb"), *base)[2]
    assert "not a notebook" in run(capsys, "schedule", "add", "t", str(tmp_path), *base)[2]
    plain = make_notebook(tmp_path, [("x = 1", [])], name="plain.ipynb")
    code, _, err = run(capsys, "schedule", "add", "t", str(plain), *base, "-p", "x", "2")
    assert code == 2 and "no cell tagged 'parameters'" in err


def test_a_pipeline_directory_is_scheduled_as_a_pipeline_run(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = tmp_path / "pipelines" / "demo"
    pipe.mkdir(parents=True)
    spec = {"parameters": [{"name": "n_estimators", "type": "int", "default": 100}]}
    (pipe / "pipeline.json").write_text(json.dumps(spec))
    code, out, err = run(
        capsys, "schedule", "add", "p", str(pipe), "--cron", "0 3 * * *", "-p", "n_estimators", "7",
        "--catchup", "all", "--max-concurrent", "2", "--retries", "3", "--retry-delay", "30", "--timeout", "3600",
        "--json", "--home", str(home),
    )  # fmt: skip
    assert code == 0, err
    added = json.loads(out)
    assert (added["kind"], added["parameters"]) == ("pipeline", {"n_estimators": 7})
    assert (added["catchup"], added["max_concurrent"], added["retries"]) == ("all", 2, 3)
    assert (added["retry_delay"], added["timeout"]) == (30.0, 3600.0)
    with pytest.raises(SystemExit) as exit_info:  # argparse's own usage error
        main(["schedule", "add", "q", str(pipe), "--cron", "0 3 * * *", "--retries", "-1"])
    assert exit_info.value.code == 2
    assert "expected a whole number >= 0" in capsys.readouterr().err


def test_list_pause_resume_rm_and_history_outliving_the_schedule(
    home: Path, notebook: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = ["--home", str(home)]
    run(capsys, "schedule", "add", "s", str(notebook), "--cron", "0 * * * *", "--timezone", "UTC", *h)
    assert "s " in run(capsys, "schedule", "list", *h)[1]
    assert run(capsys, "schedule", "pause", "s", *h)[1] == "paused s\n"
    assert json.loads(run(capsys, "schedule", "list", "--json", *h)[1])[0]["paused"] is True
    assert run(capsys, "schedule", "resume", "s", *h)[1] == "resumed s\n"
    assert "did you mean 's'" in run(capsys, "schedule", "pause", "ss", *h)[2]
    assert run(capsys, "schedule", "rm", "s", *h)[0] == 0
    assert "no schedules" in run(capsys, "schedule", "list", *h)[1]
    assert "schedule s (removed): 0 fire(s)" in run(capsys, "schedule", "history", "s", *h)[1]
    con = sqlite3.connect(home / "runs.sqlite")
    assert con.execute("SELECT action FROM audit").fetchall() == [("schedule.remove",)]
    con.close()


@pytest.fixture
def fake_run_command(monkeypatch: pytest.MonkeyPatch, ledger: Path) -> None:
    """Swap the one place that names the run commands (``cli_command``) for a child that behaves like them."""

    def command(request: LaunchRequest) -> list[str]:
        return [sys.executable, "-c", CHILD, str(request.parameters.get("n", "ok")), str(ledger)]

    monkeypatch.setattr(launch, "cli_command", command)


@pytest.mark.usefixtures("fake_run_command")
def test_run_now_starts_waits_and_reports(
    home: Path, tmp_path: Path, ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = make_notebook(tmp_path, [("n = 'ok'", ["parameters"])], name="modes.ipynb")
    h = ["--home", str(home)]
    run(capsys, "schedule", "add", "good", str(nb), "--cron", "0 0 1 1 *", *h)
    run(capsys, "schedule", "add", "bad", str(nb), "--cron", "0 0 1 1 *", "-p", "n", "fail", *h)
    code, out, _ = run(capsys, "schedule", "run-now", "good", *h)
    assert code == 0 and out.endswith("succeeded\n")
    code, out, _ = run(capsys, "schedule", "run-now", "bad", *h)
    assert code == 1 and out.endswith("failed\n")
    assert [line[0] for line in read_ledger(ledger)] == ["good", "bad"]
    history = json.loads(run(capsys, "schedule", "history", "good", "--json", *h)[1])
    assert [(f["trigger"], f["status"]) for f in history] == [("manual", "succeeded")]
    assert history[0]["runs"][0]["run_id"] == read_ledger(ledger)[0][2]


@pytest.mark.usefixtures("fake_run_command")
def test_scheduler_once_runs_what_is_due_and_exits(
    home: Path, notebook: Path, ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = ["--home", str(home)]
    run(capsys, "schedule", "add", "s", str(notebook), "--cron", "0 * * * *", "--timezone", "UTC", *h)
    con = sqlite3.connect(home / "runs.sqlite")  # pretend it was added three hours ago
    con.execute("UPDATE schedules SET cursor = cursor - 3 * 3600, next_fire = next_fire - 3 * 3600")
    con.commit()
    con.close()
    code, _, err = run(capsys, "scheduler", "--once", *h)
    assert code == 0, err
    assert len(read_ledger(ledger)) == 1  # --catchup latest: the most recent missed fire only
    assert "skipped the fire at" in err and "once: started 1 run(s), 0 did not succeed" in err
    assert run(capsys, "scheduler", "--once", *h)[0] == 0
    assert len(read_ledger(ledger)) == 1  # nothing is due twice


# -- the contract with `nb2pipe job run` and `nb2pipe run` ----------------------------------------------------------


def request(kind: str, parameters: dict[str, Any]) -> LaunchRequest:
    return LaunchRequest(
        run_id="20260329-010000-abcdef",
        schedule="nightly",
        kind=kind,
        target="/p/nb.ipynb",
        parameters=parameters,
        scheduled_for=1774746000.0,
        attempt=1,
        home=Path("/p/.nb2pipe"),
    )


def test_the_production_commands_and_environment() -> None:
    assert cli_command(request("job", {"n": 5, "name": "a b"})) == [
        sys.executable, "-m", "nb2pipe", "job", "run", "/p/nb.ipynb", "-p", "n", "5", "-p", "name", "a b", "--json",
    ]  # fmt: skip
    assert cli_command(request("pipeline", {}))[3:] == ["run", "/p/nb.ipynb", "--json"]
    env = run_environment(request("job", {}), base={"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "NB2PIPE_RUN_ID": "20260329-010000-abcdef",
        "NB2PIPE_SCHEDULE": "nightly",
        "NB2PIPE_SCHEDULED_FOR": "2026-03-29T01:00:00Z",
        "NB2PIPE_HOME": "/p/.nb2pipe",
    }


@pytest.mark.parametrize(
    ("type_name", "value"),
    [
        ("int", 5),
        ("float", 0.25),
        ("float", math.inf),
        ("bool", False),
        ("str", "it's 'quoted'"),
        ("str", "5"),
        ("list", [1, "a", 2.5]),
        ("dict", {"a": [1, 2]}),
        ("int | None", None),
    ],
)
def test_parameters_cross_the_command_line_with_their_types(type_name: str, value: Any) -> None:
    declared = Declared("p", type_name, None, "None")
    assert coerce(declared, parameter_text(value)) == value


def test_parameters_nan_round_trips() -> None:
    assert math.isnan(coerce(Declared("p", "float", 0.0, "0.0"), parameter_text(math.nan)))


def test_the_cli_stays_lazy() -> None:
    import subprocess

    code = "import sys, nb2pipe.cli as c; c.build_parser(); print('croniter' in sys.modules, 'sqlite3' in sys.modules)"
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"], f"took {time.monotonic() - started:.2f} s"
