"""The analyze and export endpoints against a real Jupyter server (pytest-jupyter)."""

from __future__ import annotations

import json
from pathlib import Path

NB = "examples/sweep_parameters.ipynb"


async def test_analyze_returns_stages_edges_parameters_and_cells(api, root):
    status, data = await api("GET", "analyze", params={"path": NB})
    assert status == 200
    assert data["ok"] is True and data["errors"] == []
    assert data["path"] == NB
    names = [s["name"] for s in data["stages"]]
    assert names == ["load_data", "add_noise", "split", "train", "evaluate"]
    train = next(s for s in data["stages"] if s["name"] == "train")
    assert train["cells"] == [{"id": "4bbd33e6", "number": 12}]
    assert "n_estimators" in train["parameters"]
    edge = next(e for e in data["edges"] if e["from"] == "split" and e["to"] == "train")
    assert {"X_train", "y_train"} <= set(edge["names"])
    assert {"name": "n_estimators", "type": "int", "default": 100} in data["parameters"]
    assert data["parameters_cell"] == {"id": "ef3f9f44", "number": 4}
    roles = {c["id"]: c["role"] for c in data["cells"]}
    assert roles["29a624b6"] == "shared" and roles["ef3f9f44"] == "parameters"


async def test_analyze_error_names_the_cell_by_id(api, root):
    nb = json.loads((root / NB).read_text())
    nb["cells"][5]["metadata"]["tags"] = ["stage:not a name"]
    (root / "examples/bad.ipynb").write_text(json.dumps(nb))
    status, data = await api("GET", "analyze", params={"path": "examples/bad.ipynb"})
    assert status == 200
    assert data["ok"] is False
    (error,) = data["errors"]
    assert error["kind"] == "TagError" and error["cell_id"] == "681f73cf" and error["cell"] == 6
    assert "examples/bad.ipynb" in error["message"] and str(root) not in error["message"]
    assert {c["id"] for c in data["cells"]} == set()  # the tags themselves are unreadable


async def test_analyze_unsaved_content_and_kale_tags(api, root):
    nb = json.loads((root / NB).read_text())
    for cell in nb["cells"]:
        tags = cell["metadata"].get("tags", [])
        cell["metadata"]["tags"] = [
            t.replace("stage:", "step:").replace("shared", "imports").replace("parameters", "pipeline-parameters")
            for t in tags
        ]
    status, data = await api("POST", "analyze", body={"path": NB, "notebook": nb})
    assert status == 200 and data["ok"] is True
    assert [s["name"] for s in data["stages"]][:2] == ["load_data", "add_noise"]


async def test_analyze_warns_about_tags_on_markdown_cells(api, root):
    nb = json.loads((root / NB).read_text())
    nb["cells"][0]["metadata"]["tags"] = ["stage:intro"]
    status, data = await api("POST", "analyze", body={"path": NB, "notebook": nb})
    assert status == 200 and data["ok"] is True
    (warning,) = data["warnings"]
    assert warning["cell_id"] == "e23721dc" and "markdown" in warning["message"]


async def test_export_writes_the_package_inside_the_root(api, root):
    status, data = await api("POST", "export", body={"path": NB, "output": "pipelines"})
    assert status == 200, data
    assert data["directory"] == "pipelines/sweep_parameters"
    assert (root / "pipelines/sweep_parameters/pipeline.json").is_file()
    status, again = await api("POST", "export", body={"path": NB, "output": "pipelines"})
    assert status == 200 and again["written"] == []


async def test_export_refuses_output_outside_the_root(api, root: Path):
    status, _ = await api("POST", "export", body={"path": NB, "output": "../escape"})
    assert status == 403
    assert not (root.parent / "escape").exists()
