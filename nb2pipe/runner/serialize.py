"""Type-aware serializers for the values that cross stage boundaries.

A stage's outputs are written as ONE bundle, so aliasing between them survives (``b = a`` in a stage gives one
object again in the next). The bundle is a pickle (protocol 5) whose large buffers -- NumPy arrays, the blocks of
pandas DataFrames, anything exposing ``PickleBuffer`` -- are stored out of band, raw, after the pickle stream, each
at a 64-byte aligned offset: no copy through the pickle machinery on write, and on read a large bundle is
memory-mapped copy-on-write, so arrays come back aligned and writable without the file being read or copied until
their pages are touched. Measured against ``.npy`` files and Parquet (``benchmarks/bench_run.py``), this is as fast as
``.npy`` to load and 3x faster than Parquet to write, exact for every dtype, and keeps identity inside containers,
so NumPy arrays and DataFrames use it rather than a separate file format. Values plain pickle refuses (lambdas,
classes defined inside a stage) fall back to cloudpickle, which pickles them by value.

Identity across stages: an output that IS one of the stage's inputs, or contains it (``y = x``,
``models = [m, other]``), and that the stage did not change, is written as a reference to that input, so a later
stage reading both gets one object, as the notebook does. The bundle also keeps a copy of every input it refers to,
so it can always be read on its own (a producer's entry may be cleared from the cache).

Each output also gets its own content hash (the digest of its own pickle, buffers included): that is what the
cache keys of the stages reading it are made of, and what ``--json`` reports, with the output's format.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import pickle
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

MAGIC: Final = b"NB2PIPE1"
_LEN: Final = struct.Struct("<Q")
#: Offsets of raw buffers (and the start of the data) are multiples of this, so arrays load aligned.
ALIGN: Final = 64
#: Bundles at least this large are memory-mapped on read instead of read into memory.
MMAP_FROM: Final = 1 << 20


class UnserializableValue(Exception):
    """An output that neither pickle nor cloudpickle can write; carries the variable's name and the cause."""

    def __init__(self, name: str, type_name: str, cause: str) -> None:
        self.name, self.type_name, self.cause = name, type_name, cause
        super().__init__(f"`{name}` ({type_name}) cannot be serialized: {cause}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.type_name, self.cause))


def _pickler(kind: str) -> Callable[..., bytes]:
    if kind == "cloudpickle":
        import cloudpickle

        dumps: Callable[..., bytes] = cloudpickle.dumps
        return dumps
    return pickle.dumps


def _pickler_class(kind: str) -> type[pickle.Pickler]:
    if kind == "cloudpickle":
        import cloudpickle

        cls: type[pickle.Pickler] = cloudpickle.CloudPickler
        return cls
    return pickle.Pickler


@dataclass(frozen=True)
class Source:
    """An input of the stage writing a bundle: where it came from and its content hash when it was loaded."""

    #: Key of the producer's cache entry.
    entry: str
    #: Content hash of the value as the producer published it.
    hash: str
    value: Any


class _RefPickler:
    """Pickle outputs, writing each unchanged input they are or contain as a reference (``persistent_id``)."""

    def __init__(self, kind: str, sources: Mapping[str, Source]) -> None:
        self.kind = kind
        self.by_id = {id(s.value): name for name, s in sources.items() if _referable(s.value)}
        self.sources = sources
        self.unchanged: dict[str, bool] = {}
        self.used: set[str] = set()

    def persistent_id(self, obj: Any) -> Any:
        name = self.by_id.get(id(obj))
        if name is None:
            return None
        if name not in self.unchanged:
            source = self.sources[name]
            self.unchanged[name] = value_digest(source.value, self.kind)[0] == source.hash
        self.used.add(name)
        # Changed in place by this stage: the producer's copy is stale; this bundle's copy supersedes it for a
        # stage that reads both (in the notebook, the input's name sees the change too).
        return ("input" if self.unchanged[name] else "changed", name)

    def dumps(self, value: Any, buffers: list[pickle.PickleBuffer]) -> bytes:
        out = io.BytesIO()
        pickler = _pickler_class(self.kind)(out, protocol=5, buffer_callback=buffers.append)
        if self.by_id:
            pickler.persistent_id = self.persistent_id  # type: ignore[method-assign]
        pickler.dump(value)
        return out.getvalue()


def _referable(value: Any) -> bool:
    # Small immutable atoms have no identity worth keeping (and are shared by the interpreter anyway).
    return not isinstance(value, (int, float, complex, bool, str, bytes, type(None)))


def _choose(values: Mapping[str, Any], sources: Mapping[str, Source]) -> tuple[str, _RefPickler, bytes, list[Any]]:
    last: Exception | None = None
    for kind in ("pickle", "cloudpickle"):
        buffers: list[pickle.PickleBuffer] = []
        pickler = _RefPickler(kind, sources)
        try:
            return kind, pickler, pickler.dumps(dict(values), buffers), buffers
        except Exception as exc:
            last = exc
    # Find the culprit, so the message names the variable.
    for name, value in values.items():
        try:
            _pickler("cloudpickle")(value, protocol=5, buffer_callback=lambda b: None)
        except Exception as exc:
            raise UnserializableValue(name, _type_name(value), f"{type(exc).__name__}: {exc}") from None
    raise UnserializableValue(", ".join(values), "bundle", str(last))


def _type_name(value: Any) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def value_digest(value: Any, kind: str = "pickle") -> tuple[str, int, int]:
    """Content hash of one value (sha256 of its pickle and out-of-band buffers), its buffer count and bytes."""
    digest = hashlib.sha256()
    sizes: list[int] = []

    def take(buf: pickle.PickleBuffer) -> None:
        raw = buf.raw()
        sizes.append(raw.nbytes)
        digest.update(raw)

    try:
        data = _pickler(kind)(value, protocol=5, buffer_callback=take)
    except Exception:
        digest, sizes = hashlib.sha256(), []
        data = _pickler("cloudpickle")(value, protocol=5, buffer_callback=take)
    digest.update(data)
    return digest.hexdigest(), len(sizes), sum(sizes)


def value_hash(value: Any, kind: str = "pickle") -> str:
    """Content hash of one value: sha256 of its pickle stream and its out-of-band buffers."""
    return value_digest(value, kind)[0]


def _pad(n: int) -> int:
    return -n % ALIGN


@dataclass(frozen=True)
class Written:
    """What :func:`dump` wrote: the serializer, each output's hash and format."""

    serializer: str
    hashes: dict[str, str]
    #: Output name -> ``{"format": "pickle+buffers", "buffers": n, "bytes": b, "same_as": input}``.
    formats: dict[str, dict[str, Any]]


def dump(values: Mapping[str, Any], path: Path, sources: Mapping[str, Source] | None = None) -> Written:
    """Write ``values`` as one bundle at ``path``; unchanged ``sources`` (the stage's inputs) become references."""
    kind, pickler, data, buffers = _choose(values, sources or {})
    refs = {name: (sources or {})[name] for name in sorted(pickler.used)}
    copies: list[Any] = []
    copy = _pickler(kind)({n: s.value for n, s in refs.items()}, protocol=5, buffer_callback=copies.append)
    sections: list[Any] = [data, *(b.raw() for b in buffers), copy, *(b.raw() for b in copies)]
    offsets, pos = [], 0
    for part in sections:
        pos += _pad(pos)
        offsets.append(pos)
        pos += memoryview(part).nbytes
    header = {
        "serializer": kind,
        "layout": 2,
        "sections": [[o, memoryview(p).nbytes] for o, p in zip(offsets, sections, strict=True)],
        "buffers": len(buffers),
        "refs": {n: s.entry for n, s in refs.items()},
        "changed": sorted(n for n in refs if not pickler.unchanged[n]),
    }
    head = json.dumps(header).encode()
    start = len(MAGIC) + _LEN.size + len(head)
    with open(path, "wb") as fh:
        fh.write(MAGIC)
        fh.write(_LEN.pack(len(head)))
        fh.write(head)
        fh.write(b"\0" * _pad(start))
        written = 0
        for offset, part in zip(offsets, sections, strict=True):
            fh.write(b"\0" * (offset - written))
            fh.write(part)
            written = offset + memoryview(part).nbytes
    hashes, formats = {}, {}
    for name, value in values.items():
        digest, count, size = value_digest(value, kind)
        hashes[name] = digest
        fmt: dict[str, Any] = {"format": f"{kind}+buffers" if count else kind, "buffers": count, "bytes": size}
        same = next((n for n, s in refs.items() if s.value is value), None)
        if same is not None:
            fmt["same_as"] = same
            if not pickler.unchanged[same]:
                fmt["changed_in_place"] = True
        formats[name] = fmt
    return Written(kind, hashes, formats)


def _read(path: Path) -> memoryview:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if size >= MMAP_FROM:
            # Copy-on-write: arrays are writable, and pages are read only when touched. Entries are never
            # modified in place (write then rename), so the mapping cannot change under the values.
            return memoryview(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY))
        blob = bytearray(size)
        fh.readinto(blob)
        return memoryview(blob)


def supersedes(path: Path) -> bool:
    """Whether the bundle at ``path`` holds an input its stage changed in place (read such bundles first)."""
    with open(path, "rb") as fh:
        if fh.read(len(MAGIC)) != MAGIC:
            return False
        (hlen,) = _LEN.unpack(fh.read(_LEN.size))
        return bool(json.loads(fh.read(hlen)).get("changed"))


class Loader:
    """Reads bundles for one stage, keeping one object per (producer entry, name) across all of them.

    A value is ``objects[(entry, name)]``: the first bundle that provides it wins, so bundles holding an input
    changed in place are read first (:func:`supersedes`) and their copy replaces the producer's stale one.
    """

    def __init__(self, entries: Mapping[str, Path] | None = None) -> None:
        #: Entry key -> directory of the entries this stage reads (references to them are resolved there).
        self.entries = dict(entries or {})
        self.objects: dict[tuple[str, str], Any] = {}
        self.loaded: dict[str, dict[str, Any]] = {}

    def load(self, path: Path, entry: str | None = None) -> dict[str, Any]:
        """The values of the bundle at ``path`` (the ``values.bin`` of entry ``entry``)."""
        if entry is not None and entry in self.loaded:
            return self.loaded[entry]
        view = _read(path)
        if bytes(view[: len(MAGIC)]) != MAGIC:
            raise ValueError(f"{path}: not an nb2pipe value bundle")
        (hlen,) = _LEN.unpack_from(view, len(MAGIC))
        start = len(MAGIC) + _LEN.size
        header = json.loads(bytes(view[start : start + hlen]))
        start += hlen
        if header["serializer"] == "cloudpickle":
            import cloudpickle  # noqa: F401  (the classes it pickled by value need it importable)
        if header.get("layout") != 2:  # the first layout: pickle, then each buffer, back to back
            data = view[start : start + header["pickle"]]
            pos, buffers = start + header["pickle"], []
            for size in header["buffers"]:
                buffers.append(view[pos : pos + size])
                pos += size
            values: dict[str, Any] = pickle.loads(data, buffers=buffers)  # noqa: S301 - our own cache
        else:
            base = start + _pad(start)
            parts = [view[base + o : base + o + n] for o, n in header["sections"]]
            count = header["buffers"]
            refs: dict[str, str] = header["refs"]
            copies: list[dict[str, Any]] = []

            def resolve(pid: Any) -> Any:
                kind, name = pid
                key = (refs[name], name)
                if kind == "changed" or (key not in self.objects and refs[name] not in self.entries):
                    if not copies:
                        copy = parts[count + 1]
                        copies.append(pickle.loads(copy, buffers=parts[count + 2 :]))  # noqa: S301
                    if kind == "changed" or key not in self.objects:
                        self.objects[key] = copies[0][name]
                elif key not in self.objects:
                    self.load(self.entries[refs[name]] / path.name, refs[name])
                return self.objects[key]

            unpickler = pickle.Unpickler(io.BytesIO(parts[0]), buffers=parts[1 : count + 1])  # noqa: S301
            unpickler.persistent_load = resolve  # type: ignore[method-assign]
            values = unpickler.load()
        if entry is not None:
            self.loaded[entry] = values
            for name, value in values.items():
                self.objects.setdefault((entry, name), value)
        return values


def load(path: Path) -> dict[str, Any]:
    """Read a bundle written by :func:`dump` on its own; arrays come back writable."""
    return Loader().load(path)


def dumps_small(value: Any) -> bytes:
    """Pickle a small value (process state) with the same fallback; used for state snapshots."""
    buf = io.BytesIO()
    try:
        pickle.dump(value, buf, protocol=5)
    except Exception:
        return _pickler("cloudpickle")(value, protocol=5)
    return buf.getvalue()
