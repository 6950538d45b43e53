"""Path traversal: nothing outside the server root is read, analysed, exported to or run."""

from __future__ import annotations

import json
import os

import pytest

OUTSIDE = [
    "../secret.ipynb",
    "examples/../../secret.ipynb",
    "/etc/passwd",
    "~/secret.ipynb",
    "link/secret.ipynb",
    "escape.ipynb",
]


@pytest.fixture
def outside(root):
    secret = root.parent / "secret.ipynb"
    secret.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}))
    os.symlink(root.parent, root / "link")
    os.symlink(secret, root / "escape.ipynb")
    return secret


@pytest.mark.parametrize("path", OUTSIDE)
async def test_analyze_refuses_paths_outside_the_root(api, outside, path):
    status, data = await api("GET", "analyze", params={"path": path})
    assert status == 403, data
    assert "secret" not in json.dumps(data.get("stages", []))


@pytest.mark.parametrize("path", OUTSIDE)
async def test_runs_refuse_paths_outside_the_root(api, outside, path):
    status, _ = await api("POST", "runs", body={"kind": "job", "path": path})
    assert status == 403
    status, runs = await api("GET", "runs")
    assert status == 200 and runs["runs"] == []


async def test_missing_and_non_notebook_paths(api, root):
    assert (await api("GET", "analyze", params={"path": "examples/none.ipynb"}))[0] == 404
    (root / "data.txt").write_text("x")
    assert (await api("GET", "analyze", params={"path": "data.txt"}))[0] == 400
    assert (await api("GET", "analyze"))[0] == 400
