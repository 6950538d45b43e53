"""Schedules for the sidebar: listed per notebook with their last run, paused, resumed and removed over the API."""

from __future__ import annotations

import pytest

from nb2pipe.runstore import RunStore
from tests.server.test_runs import NB, has_command

pytestmark = pytest.mark.skipif(not has_command("schedule", "pause"), reason="nb2pipe schedule is not here")


async def add(api, name: str, path: str = NB) -> None:
    status, added = await api("POST", "schedules", body={"name": name, "path": path, "cron": "30 2 * * *"})
    assert status == 201, added


async def test_list_for_a_notebook_with_next_fire_and_last_run(api, root):
    await add(api, "nightly")
    (root / "other.ipynb").write_bytes((root / NB).read_bytes())
    await add(api, "elsewhere", "other.ipynb")
    status, everything = await api("GET", "schedules")
    assert status == 200 and {s["name"] for s in everything} == {"nightly", "elsewhere"}

    status, listing = await api("GET", "schedules", params={"path": NB})
    assert status == 200
    (nightly,) = listing
    assert nightly["name"] == "nightly" and nightly["path"] == NB
    assert nightly["next_fire"] and nightly["paused"] is False and nightly["last_run"] is None

    with RunStore(root / ".nb2pipe") as store:
        target = str(root / NB)
        store.create_run("job", target, status="succeeded", schedule="nightly", scheduled_for="2026-01-01")
        newest = store.create_run("job", target, status="failed", schedule="nightly", scheduled_for="2026-01-02")
    (nightly,) = (await api("GET", "schedules", params={"path": NB}))[1]
    assert nightly["last_run"]["id"] == newest and nightly["last_run"]["status"] == "failed"
    assert (await api("GET", "schedules", params={"path": "../x.ipynb"}))[0] == 403


async def test_pause_resume_and_remove(api, root):
    await add(api, "nightly")
    status, paused = await api("POST", "schedules", "nightly", "pause")
    assert status == 200 and paused["paused"] is True and paused["next_fire"] is None
    assert paused["output"] == "paused nightly"
    (listed,) = (await api("GET", "schedules", params={"path": NB}))[1]
    assert listed["paused"] is True

    status, resumed = await api("POST", "schedules", "nightly", "resume")
    assert status == 200 and resumed["paused"] is False and resumed["next_fire"]

    assert (await api("DELETE", "schedules", "nightly"))[0] == 200
    assert (await api("GET", "schedules", params={"path": NB}))[1] == []


async def test_refusals_name_the_cause(api, root):
    status, data = await api("POST", "schedules", "ghost", "pause")
    assert status == 400 and "ghost" in data["message"]
    assert (await api("POST", "schedules", "ghost"))[0] == 405
    assert (await api("DELETE", "schedules", "ghost"))[0] == 400
