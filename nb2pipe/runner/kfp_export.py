"""``nb2pipe export kfp``: compile a converted pipeline into a Kubeflow Pipelines v2 pipeline (kfp SDK).

Each stage becomes a lightweight Python component whose body carries the stage's own code (its stage module and
the shared module, zipped and embedded) and the runner's state helpers, so the compiled YAML is self-contained:
the image needs only Python and the stage's pinned requirements. Values between stages travel as artifacts (a
pickle per value, never JSON parameters), so a DataFrame stays a DataFrame; process-wide state travels as an
artifact too. Each component receives only the parameters its stage reads.

The component sources are generated into a module file and imported (kfp reads a lightweight component's source
with ``inspect``), then compiled with ``kfp.compiler.Compiler``.
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import io
import sys
import tempfile
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import Nb2PipeError
from .target import Pipeline

DEFAULT_IMAGE = "python:3.11-slim"
KFP_TYPES = {"int": "int", "float": "float", "str": "str", "bool": "bool", "list": "list", "dict": "dict"}


class KfpExportError(Nb2PipeError):
    """The pipeline cannot be expressed in Kubeflow Pipelines (a parameter type KFP has no equivalent for)."""


def _zip_package(pipeline: Pipeline, stage: dict[str, Any]) -> str:
    """The files this stage needs, zipped and base64-encoded: its module, shared.py, package markers, state.py."""
    name = pipeline.name
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{name}/stages/__init__.py", "")
        module_file = stage["module"].split(".")[-1] + ".py"
        zf.write(pipeline.directory / "stages" / module_file, f"{name}/stages/{module_file}")
        if (pipeline.directory / "shared.py").exists() and stage.get("shared"):
            zf.write(pipeline.directory / "shared.py", f"{name}/shared.py")
        zf.write(Path(__file__).with_name("state.py"), "_nb2pipe_state.py")
    return base64.b64encode(buf.getvalue()).decode()


def _imports(source: str) -> set[str]:
    tops: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            tops.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            tops.add(node.module.split(".")[0])
    return tops


def requirements(pipeline: Pipeline, stage: dict[str, Any]) -> list[str]:
    """Pinned distributions for what the stage imports (versions of this environment), plus ``pip install`` lines."""
    module_file = pipeline.directory / "stages" / (stage["module"].split(".")[-1] + ".py")
    tops = _imports(module_file.read_text(encoding="utf-8"))
    if stage.get("shared") and (pipeline.directory / "shared.py").exists():
        tops |= _imports((pipeline.directory / "shared.py").read_text(encoding="utf-8"))
    dists = metadata.packages_distributions()
    pinned: set[str] = set()
    for top in sorted(tops):
        if top in sys.stdlib_module_names or top == pipeline.name:
            continue
        for dist in dists.get(top, []):
            try:
                pinned.add(f"{dist}=={metadata.version(dist)}")
            except metadata.PackageNotFoundError:
                pinned.add(dist)
    for req in pipeline.spec.get("requirements", []):
        pinned.add(str(req))
    return sorted(pinned, key=str.lower)


_BODY = """
    import base64, importlib, io, os, pickle, sys, tempfile, zipfile
    try:
        import cloudpickle as pickler
    except ImportError:
        pickler = pickle
    root = tempfile.mkdtemp(prefix="nb2pipe-")
    zipfile.ZipFile(io.BytesIO(base64.b64decode(PACKAGE))).extractall(root)
    sys.path.insert(0, root)
    import _nb2pipe_state
    for path, keys in STATE_IN:
        with open(path, "rb") as fh:
            snapshot = pickle.load(fh)
        _nb2pipe_state.restore({k: v for k, v in snapshot.items() if k in keys})
    kwargs = {}
    for name, path in INPUTS.items():
        with open(path, "rb") as fh:
            kwargs[name] = pickle.load(fh)
    kwargs.update(PARAMS)
    stage = getattr(importlib.import_module(MODULE), FUNCTION)
    result = stage(**kwargs)
    for name, path in OUTPUTS.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            pickler.dump(result[name], fh, protocol=4)
    if STATE_OUT:
        os.makedirs(os.path.dirname(STATE_OUT), exist_ok=True)
        with open(STATE_OUT, "wb") as fh:
            pickler.dump(_nb2pipe_state.capture(STATE_KEYS), fh, protocol=4)
"""


def _ident(prefix: str, name: str) -> str:
    return f"{prefix}_{name}"


def generate_source(pipeline: Pipeline, image: str = DEFAULT_IMAGE) -> str:
    """Python source defining one component per stage and the pipeline function ``nb2pipe_pipeline``."""
    params = {p["name"]: p for p in pipeline.spec.get("parameters", [])}
    for p in params.values():
        if p["type"] not in KFP_TYPES:
            raise KfpExportError(
                f"parameter {p['name']!r} has type {p['type']}, which KFP parameters cannot carry; "
                "use int, float, str, bool, list or dict"
            )
    stages = pipeline.stages
    lines = [
        f'"""Kubeflow Pipelines definition of {pipeline.name}, generated by nb2pipe export kfp."""',
        "from kfp import dsl",
        "from kfp.dsl import Artifact, Input, Output",
        "",
    ]
    for name in pipeline.spec["order"]:
        stage = stages[name]
        state_sources: dict[str, list[str]] = {}
        for key, producer in stage["state"]["inputs"].items():
            if producer and stages[producer]["state"]["outputs"]:
                state_sources.setdefault(producer, []).append(key)
        args = [f"{_ident('in', i['name'])}: Input[Artifact]" for i in stage["inputs"]]
        args += [f"{_ident('state', p)}: Input[Artifact]" for p in state_sources]
        args += [f"{_ident('p', p)}: {KFP_TYPES[params[p]['type']]}" for p in stage["parameters"]]
        args += [f"{_ident('out', o)}: Output[Artifact]" for o in stage["outputs"]]
        if stage["state"]["outputs"]:
            args.append("out_state: Output[Artifact]")
        reqs = requirements(pipeline, stage)
        lines.append(f"@dsl.component(base_image={image!r}, packages_to_install={reqs!r})")
        lines.append(f"def stage_{name}({', '.join(args)}):")
        lines.append(f'    """Stage {name} of {pipeline.name} (cells {", ".join(stage["cells"])})."""')
        lines.append(f"    PACKAGE = {_zip_package(pipeline, stage)!r}")
        lines.append(f"    MODULE = {stage['module']!r}")
        lines.append(f"    FUNCTION = {stage['function']!r}")
        inputs = ", ".join(f"{i['name']!r}: {_ident('in', i['name'])}.path" for i in stage["inputs"])
        lines.append(f"    INPUTS = {{{inputs}}}")
        state_in = ", ".join(f"({_ident('state', p)}.path, {keys!r})" for p, keys in state_sources.items())
        lines.append(f"    STATE_IN = [{state_in}]")
        params_code = ", ".join(f"{p!r}: p_{p}" for p in stage["parameters"])
        outputs_code = ", ".join(f"{o!r}: out_{o}.path" for o in stage["outputs"])
        lines.append(f"    PARAMS = {{{params_code}}}")
        lines.append(f"    OUTPUTS = {{{outputs_code}}}")
        lines.append(f"    STATE_OUT = {'out_state.path' if stage['state']['outputs'] else 'None'}")
        lines.append(f"    STATE_KEYS = {list(stage['state']['outputs'])!r}")
        lines.extend(_BODY.strip("\n").splitlines())
        lines.append("")
    signature = ", ".join(f"{p}: {KFP_TYPES[params[p]['type']]} = {params[p]['default']!r}" for p in params)
    lines.append(f"@dsl.pipeline(name={pipeline.name.replace('_', '-')!r}, description={_description(pipeline)!r})")
    lines.append(f"def nb2pipe_pipeline({signature}):")
    if not pipeline.spec["order"]:
        lines.append("    pass")
    deps_with_data: dict[str, set[str]] = {}
    for name in pipeline.spec["order"]:
        stage = stages[name]
        call = [
            f"{_ident('in', i['name'])}=t_{i['from']}.outputs[{_ident('out', i['name'])!r}]" for i in stage["inputs"]
        ]
        producers = {i["from"] for i in stage["inputs"]}
        for producer in stage["state"]["inputs"].values():
            if producer and stages[producer]["state"]["outputs"] and producer not in deps_with_data.get(name, set()):
                call.append(f"{_ident('state', producer)}=t_{producer}.outputs['out_state']")
                deps_with_data.setdefault(name, set()).add(producer)
                producers.add(producer)
        call += [f"{_ident('p', p)}={p}" for p in stage["parameters"]]
        lines.append(f"    t_{name} = stage_{name}({', '.join(call)})")
        lines.append(f"    t_{name}.set_display_name({name!r})")
        lines.append(f"    t_{name}.set_caching_options(True)")
        ordering = sorted(
            {e["from"] for e in pipeline.spec.get("edges", []) if e["to"] == name and e["from"] not in producers}
        )
        for before in ordering:
            lines.append(f"    t_{name}.after(t_{before})")
    return "\n".join(lines) + "\n"


def _description(pipeline: Pipeline) -> str:
    return f"Generated by nb2pipe from {pipeline.spec.get('notebook', pipeline.name)}"


def load_pipeline_function(pipeline: Pipeline, image: str = DEFAULT_IMAGE, build_dir: Path | None = None) -> Any:
    """Generate the components into a module file, import it, and return the ``@dsl.pipeline`` function."""
    source = generate_source(pipeline, image)
    directory = Path(build_dir or tempfile.mkdtemp(prefix="nb2pipe-kfp-"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pipeline.name}_kfp.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"_nb2pipe_kfp_{pipeline.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.nb2pipe_pipeline


def export_kfp(
    target: str, output: str | Path, *, home: Path, image: str = DEFAULT_IMAGE
) -> tuple[Path, Callable[..., Any]]:
    """Compile ``target`` (a notebook or pipeline directory) to a KFP v2 YAML file; returns it and the function."""
    from kfp import compiler

    from .target import load_target

    pipeline = load_target(target, home)
    func = load_pipeline_function(pipeline, image)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(func, str(out))
    return out, func
