"""The server hosts the scheduler loop: no thread and no file until there is a schedule, then real fires.

A schedule added through the API with a seconds-level cron expression is fired by the loop running inside the
Jupyter server (no ``nb2pipe scheduler`` process anywhere), which starts a real tracked job in a kernel.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.kernel

NB = "examples/sweep_parameters.ipynb"


def history(root, name):
    proc = subprocess.run(
        [sys.executable, "-m", "nb2pipe", "schedule", "history", name, "--json", "--home", str(root / ".nb2pipe")],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(proc.stdout) if proc.returncode == 0 else []


async def test_no_schedules_no_thread_no_store(api, root, jp_serverapp):
    host = jp_serverapp.web_app.settings["nb2pipe_scheduler"]
    assert (await api("GET", "analyze", params={"path": NB}))[0] == 200
    assert host.scheduler is None
    assert not (root / ".nb2pipe").exists()


async def test_a_schedule_added_in_jupyterlab_fires_inside_the_server(api, root, jp_serverapp):
    host = jp_serverapp.web_app.settings["nb2pipe_scheduler"]
    body = {"name": "often", "path": NB, "cron": "* * * * * */5", "parameters": {"n_estimators": 5}}
    status, added = await api("POST", "schedules", body=body)
    assert status == 201, added
    assert host.scheduler is not None  # started by the first schedule
    deadline = time.monotonic() + 120
    done = []
    while time.monotonic() < deadline and not done:
        await asyncio.sleep(1)
        done = [f for f in history(root, "often") if f["status"] in ("succeeded", "failed")]
    assert (await api("DELETE", "schedules", "often"))[0] == 200
    host.stop()
    assert done, history(root, "often")
    assert done[-1]["status"] == "succeeded", done
    assert done[-1]["trigger"] == "cron"
