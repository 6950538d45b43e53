"""The executed notebook of a run, served read-only by ``GET /nb2pipe/api/runs/ID/notebook``.

The run folder lives in the hidden ``.nb2pipe`` folder, which the contents manager does not serve; this endpoint
serves only the file the run store names as the run's executed notebook, and only inside the root or the store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from nb2pipe.runstore import RunStore
from tests.server.test_runs import has_command, wait_final


def notebook(*sources: str) -> dict:
    cells = [
        {"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
        for i, s in enumerate(sources)
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": kernelspec}, "cells": cells}


def recorded_run(root: Path, run_dir: Path, target: str = "demo.ipynb") -> str:
    with RunStore(root / ".nb2pipe") as store:
        return store.create_run("job", target, status="succeeded", run_dir=str(run_dir))


async def test_a_job_run_from_the_api_serves_its_executed_notebook_with_outputs(api, root, jp_fetch):
    if not has_command("job", "run"):
        pytest.skip("nb2pipe job run is not in this checkout")
    (root / "hello.ipynb").write_text(json.dumps(notebook("n = 6", "print('six squared is', n * n)")))
    status, launch = await api("POST", "runs", body={"kind": "job", "path": "hello.ipynb", "parameters": {}})
    assert status == 202, launch
    run = await wait_final(api, launch["id"])
    assert run["status"] == "succeeded", run
    assert run["has_notebook"] is True
    status, listing = await api("GET", "runs", params={"path": "hello.ipynb"})
    assert [r["has_notebook"] for r in listing["runs"]] == [True]

    status, executed = await api("GET", "runs", launch["id"], "notebook")
    assert status == 200
    outputs = [o for c in executed["cells"] for o in c.get("outputs", [])]
    assert any("six squared is 36" in "".join(o.get("text", "")) for o in outputs), outputs
    # The same file is not reachable through the contents API: the run folder is hidden.
    run_dir = Path(run["run_dir"]).resolve().relative_to(root.resolve())
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("api", "contents", *run_dir.parts, "hello.ipynb")
    assert info.value.code == 404


async def test_a_run_without_an_executed_notebook_is_404(api, root):
    assert (await api("GET", "runs", "nosuchrun", "notebook"))[0] == 404
    run_id = recorded_run(root, root / ".nb2pipe" / "runs" / "empty")
    status, data = await api("GET", "runs", run_id, "notebook")
    assert status == 404 and "no executed notebook" in data["message"]
    status, listing = await api("GET", "runs")
    assert [r["has_notebook"] for r in listing["runs"]] == [False]


async def test_a_run_folder_outside_the_root_and_the_store_is_refused(api, root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere")
    (outside / "demo.ipynb").write_text(json.dumps(notebook("secret = 1")))
    run_id = recorded_run(root, outside)
    assert (await api("GET", "runs", run_id, "notebook"))[0] == 404
    # A symbolic link inside the store that leads outside is refused too.
    link = root / ".nb2pipe" / "runs" / "linked"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    run_id = recorded_run(root, link)
    assert (await api("GET", "runs", run_id, "notebook"))[0] == 404
    # Only the notebook the row names is served: a target spelled with a path keeps only its file name.
    inside = root / ".nb2pipe" / "runs" / "ok"
    inside.mkdir(parents=True)
    (inside / "demo.ipynb").write_text(json.dumps(notebook("x = 1")))
    run_id = recorded_run(root, inside, target="../../etc/demo.ipynb")
    status, executed = await api("GET", "runs", run_id, "notebook")
    assert status == 200 and executed["cells"][0]["source"] == "x = 1"


async def test_an_unreadable_executed_notebook_is_a_clear_error(api, root):
    run_dir = root / ".nb2pipe" / "runs" / "broken"
    run_dir.mkdir(parents=True)
    (run_dir / "demo.ipynb").write_text("{not json")
    run_id = recorded_run(root, run_dir)
    status, data = await api("GET", "runs", run_id, "notebook")
    assert status == 409 and "not readable JSON" in data["message"]
