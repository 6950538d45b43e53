"""``nb2pipe export kfp``: compiled with the kfp SDK, the DAG checked in the YAML, run with kfp's local runner."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import yaml

from nb2pipe.runner import serialize
from nb2pipe.runner.compare import difference
from nb2pipe.runner.kfp_export import export_kfp
from tests.runner.conftest import EXAMPLES, cli, run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    nb = tmp_path / "sweep_parameters.ipynb"
    shutil.copy(EXAMPLES / "sweep_parameters.ipynb", nb)
    return nb


def test_compiled_yaml_has_the_pipeline_dag_artifacts_and_own_parameters(tmp_path: Path, sweep: Path) -> None:
    home = tmp_path / "store"
    out = tmp_path / "pipeline.yaml"
    proc = cli(["export", "kfp", str(sweep), "-o", str(out)], home)
    assert proc.returncode == 0, proc.stderr
    spec = yaml.safe_load(out.read_text())
    from nb2pipe.runner.target import load_target

    pipeline = load_target(sweep, home)
    tasks = spec["root"]["dag"]["tasks"]
    assert {t["taskInfo"]["name"] for t in tasks.values()} == set(pipeline.spec["order"])
    for stage in pipeline.spec["stages"]:
        task = tasks[f"stage-{stage['name'].replace('_', '-')}"]
        producers = {f"stage-{e['from'].replace('_', '-')}" for e in pipeline.spec["edges"] if e["to"] == stage["name"]}
        assert set(task.get("dependentTasks", [])) == producers
        # Values between stages are artifacts, never JSON parameters.
        artifacts = task.get("inputs", {}).get("artifacts", {})
        assert set(artifacts) == {f"in_{i['name']}" for i in stage["inputs"]}
        for i in stage["inputs"]:
            ref = artifacts[f"in_{i['name']}"]["taskOutputArtifact"]
            assert ref["producerTask"] == f"stage-{i['from'].replace('_', '-')}"
        # Each stage gets only its own parameters.
        params = task.get("inputs", {}).get("parameters", {})
        assert set(params) == {f"p_{p}" for p in stage["parameters"]}
    root_params = spec["root"]["inputDefinitions"]["parameters"]
    assert root_params["n_estimators"] == {"defaultValue": 100, "isOptional": True, "parameterType": "NUMBER_INTEGER"}
    train = spec["deploymentSpec"]["executors"]["exec-stage-train"]["container"]
    assert "scikit-learn==" in " ".join(train["command"])  # pinned requirements


@pytest.mark.filterwarnings("ignore:Task .* have no effect in the current local runner")
def test_local_subprocess_runner_matches_the_local_runner(tmp_path: Path, sweep: Path) -> None:
    from kfp import local

    home = tmp_path / "store"
    _, pipeline_func = export_kfp(str(sweep), tmp_path / "pipeline.yaml", home=home)
    root = tmp_path / "kfp_root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    pipeline_func(n_estimators=20)
    report = run(sweep, home, pairs=[("n_estimators", "20")])
    assert report.status == "succeeded"
    (run_dir,) = root.iterdir()
    compared = 0
    for outcome in report.stages:
        values = serialize.load(Path(outcome.location or "") / "values.bin")
        for name, value in values.items():
            artifact = run_dir / f"stage-{outcome.name.replace('_', '-')}" / f"out_{name}"
            kfp_value = pickle.loads(artifact.read_bytes())
            assert difference(value, kfp_value, name) is None, (outcome.name, name)
            compared += 1
    assert compared == sum(len(o.outputs) for o in report.stages) > 5


@pytest.mark.filterwarnings("ignore:Task .* have no effect in the current local runner")
def test_process_state_travels_as_an_artifact(tmp_path: Path) -> None:
    from kfp import local

    from tests.helpers import make_notebook

    cells = [
        ("import numpy as np", ["shared"]),
        ("np.random.seed(3)\nsize = 4", ["stage:seed"]),
        ("draws = np.random.rand(size).tolist()", ["stage:draw"]),
        ("total = sum(draws)", ["stage:report"]),
    ]
    nb = make_notebook(tmp_path, cells)
    home = tmp_path / "store"
    out, pipeline_func = export_kfp(str(nb), tmp_path / "pipeline.yaml", home=home)
    draw = yaml.safe_load(out.read_text())["root"]["dag"]["tasks"]["stage-draw"]
    assert draw["inputs"]["artifacts"]["state_seed"]["taskOutputArtifact"]["outputArtifactKey"] == "out_state"
    root = tmp_path / "kfp_root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    pipeline_func()
    (run_dir,) = root.iterdir()
    draws = pickle.loads((run_dir / "stage-draw" / "out_draws").read_bytes())
    import numpy as np

    np.random.seed(3)
    assert draws == np.random.rand(4).tolist()
    report = run(nb, home)
    assert serialize.load(Path(report.stages[1].location or "") / "values.bin")["draws"] == draws
