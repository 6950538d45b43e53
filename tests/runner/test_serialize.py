"""The value bundle: exact round trips, aligned writable arrays, memory-mapped large bundles, formats reported."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from nb2pipe.runner import serialize
from tests.helpers import make_notebook
from tests.runner.conftest import cli


def _frames() -> dict[str, object]:
    idx = pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["k", "n"])
    mixed = pd.DataFrame(
        {
            "i": np.array([1, 2, 3], dtype=np.int16),
            "f": [0.5, np.nan, 2.5],
            "s": ["x", None, "z"],
            "cat": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
            "t": pd.date_range("2024-01-01", periods=3, freq="h", tz="Europe/Paris"),
            "o": [1, "two", (3,)],
        },
        index=idx,
    )
    mixed.attrs["source"] = "test"
    return {"mixed": mixed, "series": pd.Series([1.0, 2.0], index=["p", "q"], name="v")}


def test_dataframes_and_arrays_round_trip_exactly(tmp_path: Path) -> None:
    values = {
        **_frames(),
        "big": np.arange(400_000, dtype=np.float64).reshape(1000, 400),  # > 1 MiB: memory-mapped on read
        "fortran": np.asfortranarray(np.arange(12, dtype=np.complex128).reshape(3, 4)),
        "small": np.arange(3, dtype=np.int8),
        "text": "hello",
    }
    path = tmp_path / "values.bin"
    written = serialize.dump(values, path)
    back = serialize.load(path)
    pd.testing.assert_frame_equal(back["mixed"], values["mixed"])
    assert back["mixed"].attrs == {"source": "test"}
    pd.testing.assert_series_equal(back["series"], values["series"])
    for name in ("big", "fortran", "small"):
        array = back[name]
        assert array.dtype == values[name].dtype and np.array_equal(array, values[name])
        assert array.flags.writeable and array.flags.aligned, name
    assert back["fortran"].flags.f_contiguous
    back["big"][0, 0] = -1.0  # copy-on-write: the cached file is untouched
    assert serialize.load(path)["big"][0, 0] == 0.0
    assert written.formats["big"] == {"format": "pickle+buffers", "buffers": 1, "bytes": 3_200_000}
    assert written.formats["text"]["format"] == "pickle"
    assert written.hashes["big"] == serialize.value_hash(values["big"])


def test_bundles_of_the_first_layout_still_load(tmp_path: Path) -> None:
    # Entries written before the aligned layout stay readable: pickle stream, then raw buffers back to back.
    value = {"a": np.arange(5.0), "b": [1, 2]}
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    header = json.dumps({"serializer": "pickle", "buffers": [r.nbytes for r in raws], "pickle": len(data)}).encode()
    path = tmp_path / "values.bin"
    with open(path, "wb") as fh:
        fh.write(serialize.MAGIC + serialize._LEN.pack(len(header)) + header + data)
        for raw in raws:
            fh.write(raw)
    back = serialize.load(path)
    assert np.array_equal(back["a"], value["a"]) and back["b"] == [1, 2]


def test_a_bundle_referring_to_its_inputs_reads_on_its_own(tmp_path: Path) -> None:
    x = [1, 2]
    source = serialize.Source("producer-key", serialize.value_hash(x), x)
    written = serialize.dump({"y": x, "pair": [x, 3]}, tmp_path / "values.bin", {"x": source})
    assert written.formats["y"]["same_as"] == "x"
    back = serialize.load(tmp_path / "values.bin")  # the producer's entry is not there: its copy is used
    assert back["y"] == [1, 2] and back["pair"][0] is back["y"]


def test_an_input_changed_in_place_is_written_by_value(tmp_path: Path) -> None:
    x = [1, 2]
    source = serialize.Source("producer-key", serialize.value_hash(x), x)
    x.append(3)
    written = serialize.dump({"y": x}, tmp_path / "values.bin", {"x": source})
    assert written.formats["y"] == {
        "format": "pickle",
        "buffers": 0,
        "bytes": 0,
        "same_as": "x",
        "changed_in_place": True,
    }
    assert serialize.supersedes(tmp_path / "values.bin")
    assert serialize.load(tmp_path / "values.bin")["y"] == [1, 2, 3]


def test_formats_are_shown_by_run_json_and_cache_ls(tmp_path: Path) -> None:
    home = tmp_path / "store"
    cells = [
        ("import numpy as np", ["shared"]),
        ("arr = np.zeros(10)\nlabel = 'zeros'", ["stage:make"]),
        ("alias = arr\ntotal = float(arr.sum())", ["stage:use"]),
        ("done = (alias is arr, total, label)", ["stage:end"]),
    ]
    nb = make_notebook(tmp_path, cells)
    proc = cli(["run", str(nb), "--json", "-q"], home)
    assert proc.returncode == 0, proc.stderr
    stages = {s["name"]: s for s in json.loads(proc.stdout)["stages"]}
    make = stages["make"]["outputs"]
    assert make["arr"]["format"] == "pickle+buffers" and make["arr"]["bytes"] == 80
    assert make["label"]["format"] == "pickle"
    assert stages["use"]["outputs"]["alias"]["same_as"] == "arr"
    listing = cli(["cache", "ls"], home)
    assert "arr: pickle+buffers" in listing.stdout and "label: pickle" in listing.stdout
    rows = json.loads(cli(["cache", "ls", "--json"], home).stdout)
    assert {r["stage"]: r["formats"] for r in rows}["make"] == {"arr": "pickle+buffers", "label": "pickle"}


class Model:
    def __init__(self, score: float) -> None:
        self.score = score


def _producer(directory: Path, values: dict[str, object]) -> tuple[serialize.Loader, dict[str, object]]:
    """Write ``values`` as a producer's entry and read them back as a stage would (its loader, its inputs)."""
    directory.mkdir(parents=True)
    serialize.dump(values, directory / "values.bin")
    loader = serialize.Loader({directory.name: directory})
    return loader, loader.load(directory / "values.bin", directory.name)


def _sources(entry: str, inputs: dict[str, object]) -> dict[str, serialize.Source]:
    return {n: serialize.Source(entry, serialize.value_hash(v), v) for n, v in inputs.items()}


def test_an_object_pulled_out_of_an_input_refers_into_the_producers_bundle(tmp_path: Path) -> None:
    loader, got = _producer(tmp_path / "a", {"models": [Model(0.5), Model(0.9)], "n": 2})
    best = max(got["models"], key=lambda m: m.score)  # type: ignore[attr-defined]
    written = serialize.dump({"best": best}, tmp_path / "values.bin", _sources("a", got), loader)
    assert written.formats["best"]["part_of"] == "models"
    # Read with the producer's entry at hand: one object, as in the notebook.
    reader = serialize.Loader({"a": tmp_path / "a"})
    models = reader.load(tmp_path / "a" / "values.bin", "a")["models"]
    assert reader.load(tmp_path / "values.bin")["best"] is models[1]  # type: ignore[index]
    # Read on its own (the producer's entry cleared): the bundle's own copy, the same value.
    alone = serialize.load(tmp_path / "values.bin")["best"]
    assert isinstance(alone, Model) and alone.score == 0.9


def test_a_reference_is_not_followed_into_a_producer_whose_bytes_changed(tmp_path: Path) -> None:
    # A producer re-run under the same key (a cleared cache, unseeded randomness) may lay its pickle out
    # differently: memo positions then mean other objects, so the bundle's own copy is used.
    loader, got = _producer(tmp_path / "a", {"models": [Model(0.5), Model(0.9)]})
    serialize.dump({"best": got["models"][0]}, tmp_path / "values.bin", _sources("a", got), loader)  # type: ignore[index]
    serialize.dump({"models": [[Model(0.1)], Model(0.2)]}, tmp_path / "a" / "values.bin")
    reader = serialize.Loader({"a": tmp_path / "a"})
    reader.load(tmp_path / "a" / "values.bin", "a")
    best = reader.load(tmp_path / "values.bin")["best"]
    assert isinstance(best, Model) and best.score == 0.5


def test_a_producer_reached_through_another_is_located_in_the_cache(tmp_path: Path) -> None:
    # a -> b hands `models` on unchanged (a reference to a); c pulls `best` out of it. A stage reading b and c
    # (not a) still gets one object: a's entry is found through `locate`.
    loader_b, got_b = _producer(tmp_path / "a", {"models": [Model(0.5), Model(0.9)]})
    (tmp_path / "b").mkdir()
    serialize.dump({"models": got_b["models"]}, tmp_path / "b" / "values.bin", _sources("a", got_b), loader_b)
    loader_c = serialize.Loader({"b": tmp_path / "b"}, lambda key: tmp_path / key)
    models = loader_c.load(tmp_path / "b" / "values.bin", "b")["models"]
    (tmp_path / "c").mkdir()
    sources = {"models": serialize.Source("b", serialize.value_hash(models), models)}
    serialize.dump({"best": models[1]}, tmp_path / "c" / "values.bin", sources, loader_c)  # type: ignore[index]
    reader = serialize.Loader({"b": tmp_path / "b", "c": tmp_path / "c"}, lambda key: tmp_path / key)
    models_d = reader.load(tmp_path / "b" / "values.bin", "b")["models"]
    assert reader.load(tmp_path / "c" / "values.bin", "c")["best"] is models_d[1]  # type: ignore[index]


def test_shared_singletons_do_not_tie_an_output_to_its_inputs(tmp_path: Path) -> None:
    # Every float64 array shares one dtype object; an output built from an input must not refer into it for that.
    loader, got = _producer(tmp_path / "a", {"arr": np.arange(3.0), "df": pd.DataFrame({"v": [1.0]})})
    out = {"doubled": got["arr"] * 2, "cols": got["df"][["v"]]}  # type: ignore[operator,index]
    serialize.dump(out, tmp_path / "values.bin", _sources("a", got), loader)
    with open(tmp_path / "values.bin", "rb") as fh:
        fh.seek(len(serialize.MAGIC))
        (hlen,) = serialize._LEN.unpack(fh.read(serialize._LEN.size))
        header = json.loads(fh.read(hlen))
    assert header["parts"] == {} and header["refs"] == {}
