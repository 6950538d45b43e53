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

Identity across stages, three ways, so a later stage reading values from several producers gets one object
wherever the notebook has one:

- an output that IS one of the stage's inputs, or contains it (``y = x``, ``models = [m, other]``), and that the
  stage did not change, is written as a reference to that input;
- an output that is an object pulled out of an unchanged input (``best = models[0]``, ``best = max(models, ...)``,
  ``est = search.best_estimator_``), or a container of such objects, is written as a reference to that object in
  the producer's bundle: its position in that bundle's pickle memo, which the same bytes reproduce on every read
  (the producer's stream digest is recorded, and a reference is only followed into those same bytes);
- an input the stage changed in place is written by value, in this bundle's own stream (so what was pulled out of
  it stays inside it), and its memo position is recorded: for a stage reading both, this copy *supersedes* the
  producer's, as the notebook's name sees the change too.

The bundle also keeps a copy of everything it refers to, so it can always be read on its own (a producer's entry
may be cleared from the cache).

Each output also gets its own content hash (the digest of its own pickle, buffers included): that is what the
cache keys of the stages reading it are made of, and what ``--json`` reports, with the output's format.
"""

from __future__ import annotations

import enum
import hashlib
import io
import json
import mmap
import pickle
import struct
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

MAGIC: Final = b"NB2PIPE1"
_LEN: Final = struct.Struct("<Q")
#: Offsets of raw buffers (and the start of the data) are multiples of this, so arrays load aligned.
ALIGN: Final = 64
#: Bundles at least this large are memory-mapped on read instead of read into memory.
MMAP_FROM: Final = 1 << 20
#: Containers longer than this are not searched for objects pulled out of an input (they are written by value).
WALK_LIMIT: Final = 100_000


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
    """Pickle outputs, writing what they share with the stage's unchanged inputs as references (``persistent_id``).

    ``origins`` is the loader that read the inputs: it knows where in which producer's bundle an object came from.
    Only the outputs themselves and the items of builtin containers among them (:func:`_pulled_candidates`) are
    looked up there: that is where an object pulled out of an input ends up (``best = models[0]``,
    ``top = [models[0], models[2]]``), and looking deeper would tie an output to its inputs through shared
    library internals (an index two frames share) for nothing.
    """

    def __init__(
        self, kind: str, sources: Mapping[str, Source], origins: Loader | None = None, candidates: Iterable[Any] = ()
    ) -> None:
        self.kind = kind
        self.by_id = {id(s.value): name for name, s in sources.items() if _referable(s.value)}
        self.sources = sources
        #: Input name -> its digest now (hash, buffers, bytes), computed when needed: unchanged when the hash is
        #: still the one it was loaded with. An output that is the input reuses it.
        self.digests: dict[str, tuple[str, int, int]] = {}
        #: Input name -> ids of every object its pickle holds (to tell which input a pulled-out object is part of).
        self.contents: dict[str, frozenset[int]] = {}
        self.used: set[str] = set()
        #: Inputs the stage changed in place: written by value here, they supersede the producer's copy.
        self.changed: set[str] = set()
        pulled = [obj for obj in candidates if id(obj) not in self.by_id]
        self.origin = origins.origins(pulled) if origins is not None and pulled else {}
        #: (producer entry, memo index) -> (the object, the input it is part of).
        self.parts: dict[tuple[str, int], tuple[Any, str]] = {}

    def _is_unchanged(self, name: str) -> bool:
        if name not in self.digests:
            self.digests[name], self.contents[name] = _digest(self.sources[name].value, self.kind, keep_ids=True)
        return self.digests[name][0] == self.sources[name].hash

    def _unchanged_container(self, oid: int, entry: str) -> str | None:
        """The name of an unchanged input that holds the object ``oid`` (then the object is unchanged too).

        Each input tried is hashed, so those read from ``entry``, where the object came from, are tried first.
        """
        names = sorted(self.by_id.values(), key=lambda name: self.sources[name].entry != entry)
        for name in names:
            if self._is_unchanged(name) and oid in self.contents[name]:
                return name
        return None

    def persistent_id(self, obj: Any) -> Any:
        oid = id(obj)
        name = self.by_id.get(oid)
        if name is not None:
            if self._is_unchanged(name):
                self.used.add(name)
                return ("input", name)
            # Changed in place by this stage: written here by value, with what was pulled out of it inside.
            self.changed.add(name)
            return None
        where = self.origin.get(oid)
        if where is not None:
            container = self._unchanged_container(oid, where[0])
            if container is not None:
                self.parts[where] = (obj, container)
                return ("part", *where)
        return None

    def dumps(self, value: Any, buffers: list[pickle.PickleBuffer]) -> tuple[bytes, dict[int, int]]:
        """The pickle stream, and the memo positions (by object id) of the changed inputs written in it."""
        out = io.BytesIO()
        pickler = _pickler_class(self.kind)(out, protocol=5, buffer_callback=buffers.append)
        if self.by_id or self.origin:
            pickler.persistent_id = self.persistent_id  # type: ignore[method-assign]
        pickler.dump(value)
        positions: dict[int, int] = {}
        if self.changed:
            memo = pickler.memo.copy()
            for name in self.changed:
                oid = id(self.sources[name].value)
                if oid in memo:
                    positions[oid] = memo[oid][0]
        return out.getvalue(), positions


def _referable(value: Any) -> bool:
    # Small immutable atoms have no identity worth keeping (and are shared by the interpreter anyway).
    return not isinstance(value, (int, float, complex, bool, str, bytes, type(None)))


_NOT_PULLED = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType, enum.Enum)


def _pullable(value: Any) -> bool:
    """Whether ``value`` has an identity a notebook relies on: a mutable container, an array, an instance.

    Not classes, functions, modules or enum members (pickled by name, they come back as themselves), nor
    interpreter-shared singletons such as NumPy's dtypes, which every array of that dtype shares.
    """
    if isinstance(value, (list, dict, set, bytearray)):
        return True
    if not _referable(value) or isinstance(value, _NOT_PULLED):
        return False
    return hasattr(value, "__dict__") or hasattr(type(value), "__array_interface__")


def _pulled_candidates(values: Mapping[str, Any], depth: int = 3) -> list[Any]:
    """The outputs, and the items of builtin containers among them (nested up to ``depth``), worth looking up."""
    found: dict[int, Any] = {}
    todo = [(v, 0) for v in values.values()]
    while todo:
        value, level = todo.pop()
        if id(value) in found:
            continue
        if _pullable(value):
            found[id(value)] = value
        if level >= depth or type(value) not in (list, tuple, dict, set, frozenset) or len(value) > WALK_LIMIT:
            continue
        items = value.values() if type(value) is dict else value
        todo.extend((item, level + 1) for item in items if _referable(item))
    return list(found.values())


def _choose(
    values: Mapping[str, Any], sources: Mapping[str, Source], origins: Loader | None
) -> tuple[str, _RefPickler, bytes, dict[int, int], list[Any]]:
    last: Exception | None = None
    candidates = _pulled_candidates(values) if origins is not None and origins.has_read() else []
    for kind in ("pickle", "cloudpickle"):
        buffers: list[pickle.PickleBuffer] = []
        pickler = _RefPickler(kind, sources, origins, candidates)
        try:
            data, positions = pickler.dumps(dict(values), buffers)
            return kind, pickler, data, positions, buffers
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


def _digest(value: Any, kind: str, keep_ids: bool = False) -> tuple[tuple[str, int, int], frozenset[int]]:
    """:func:`value_digest`, and with ``keep_ids`` the ids of the objects the pickle holds (its memo)."""
    digest = hashlib.sha256()
    sizes: list[int] = []

    def take(buf: pickle.PickleBuffer) -> None:
        raw = buf.raw()
        sizes.append(raw.nbytes)
        digest.update(raw)

    out = io.BytesIO()
    pickler = _pickler_class(kind)(out, protocol=5, buffer_callback=take)
    try:
        pickler.dump(value)
    except Exception:
        digest, sizes, out = hashlib.sha256(), [], io.BytesIO()
        pickler = _pickler_class("cloudpickle")(out, protocol=5, buffer_callback=take)
        pickler.dump(value)
    digest.update(out.getbuffer())
    ids = frozenset(pickler.memo.copy()) if keep_ids else frozenset()
    return (digest.hexdigest(), len(sizes), sum(sizes)), ids


def value_digest(value: Any, kind: str = "pickle") -> tuple[str, int, int]:
    """Content hash of one value (sha256 of its pickle and out-of-band buffers), its buffer count and bytes."""
    return _digest(value, kind)[0]


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


def dump(
    values: Mapping[str, Any],
    path: Path,
    sources: Mapping[str, Source] | None = None,
    origins: Loader | None = None,
) -> Written:
    """Write ``values`` as one bundle at ``path``.

    ``sources`` are the stage's inputs and ``origins`` the loader that read them: what the outputs share with
    unchanged inputs becomes a reference (see the module's docstring).
    """
    sources = sources or {}
    kind, pickler, data, positions, buffers = _choose(values, sources, origins)
    refs = {name: sources[name] for name in sorted(pickler.used)}
    kept: dict[Any, Any] = {n: s.value for n, s in refs.items()}
    kept.update({("part", *where): obj for where, (obj, _) in sorted(pickler.parts.items())})
    copies: list[Any] = []
    copy = _pickler(kind)(kept, protocol=5, buffer_callback=copies.append)
    sections: list[Any] = [data, *(b.raw() for b in buffers), copy, *(b.raw() for b in copies)]
    offsets, pos = [], 0
    for part in sections:
        pos += _pad(pos)
        offsets.append(pos)
        pos += memoryview(part).nbytes
    supersedes = {
        name: [sources[name].entry, positions[id(sources[name].value)]]
        for name in sorted(pickler.changed)
        if id(sources[name].value) in positions
    }
    header = {
        "serializer": kind,
        "layout": 2,
        "sections": [[o, memoryview(p).nbytes] for o, p in zip(offsets, sections, strict=True)],
        "buffers": len(buffers),
        "refs": {n: s.entry for n, s in refs.items()},
        "parts": {entry: origins.stream_digest(entry) for entry, _ in pickler.parts} if origins else {},
        "supersedes": supersedes,
    }
    head = json.dumps(header, sort_keys=True).encode()
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
    part_of = {id(obj): container for obj, container in pickler.parts.values()}
    digested = {id(sources[name].value): digest for name, digest in pickler.digests.items()}
    hashes, formats = {}, {}
    for name, value in values.items():
        digest, count, size = digested.get(id(value)) or value_digest(value, kind)
        hashes[name] = digest
        fmt: dict[str, Any] = {"format": f"{kind}+buffers" if count else kind, "buffers": count, "bytes": size}
        same = next((n for n, s in sources.items() if s.value is value and (n in refs or n in supersedes)), None)
        if same is not None:
            fmt["same_as"] = same
            if same in supersedes:
                fmt["changed_in_place"] = True
        elif id(value) in part_of:
            fmt["part_of"] = part_of[id(value)]
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
        header = json.loads(fh.read(hlen))
        return bool(header.get("changed") or header.get("supersedes"))


_MISSING: Final = object()


class Loader:
    """Reads bundles for one stage, keeping one object per (producer entry, name) across all of them.

    A value is ``objects[(entry, name)]``: the first bundle that provides it wins, so bundles holding an input
    changed in place are read first (:func:`supersedes`) and their copy replaces the producer's stale one. The
    loader also keeps each entry's unpickler memo, so a reference into a producer's bundle resolves to the very
    object read from it, and the stage's own :func:`dump` can tell where a pulled-out object came from.
    """

    def __init__(
        self, entries: Mapping[str, Path] | None = None, locate: Callable[[str], Path | None] | None = None
    ) -> None:
        #: Entry key -> directory of the entries this stage reads (references to them are resolved there).
        self.entries = dict(entries or {})
        #: Finds any other entry's directory (an entry referred to through a producer), or ``None``.
        self.locate = locate
        self.objects: dict[tuple[str, str], Any] = {}
        self.loaded: dict[str, dict[str, Any]] = {}
        self._unpicklers: dict[str, pickle.Unpickler] = {}
        self._memos: dict[str, dict[int, Any]] = {}
        self._streams: dict[str, memoryview] = {}
        self._digests: dict[str, str] = {}

    def has_read(self) -> bool:
        """Whether any entry's bundle has been read (only then can an output come from one)."""
        return bool(self._unpicklers)

    def _memo(self, entry: str) -> dict[int, Any]:
        if entry not in self._memos:
            self._memos[entry] = self._unpicklers[entry].memo.copy()
        return self._memos[entry]

    def stream_digest(self, entry: str) -> str:
        """sha256 of entry's pickle stream: memo positions in it hold for exactly these bytes."""
        if entry not in self._digests:
            self._digests[entry] = hashlib.sha256(self._streams[entry]).hexdigest()
        return self._digests[entry]

    def origins(self, objects: Iterable[Any]) -> dict[int, tuple[str, int]]:
        """Object id -> (entry, memo position) of those of ``objects`` read from an entry's bundle."""
        wanted = {id(obj) for obj in objects}
        found: dict[int, tuple[str, int]] = {}
        for entry in list(self._unpicklers):
            memo = self._memo(entry)
            ids = list(map(id, memo.values()))  # at C speed: a memo may hold millions of objects
            hits = wanted.intersection(ids).difference(found)
            if hits:
                indices = list(memo)
                found.update((oid, (entry, indices[ids.index(oid)])) for oid in hits)
        return found

    def _directory(self, entry: str) -> Path | None:
        if entry in self.entries:
            return self.entries[entry]
        return self.locate(entry) if self.locate is not None else None

    def _part(self, entry: str, index: int, digest: str | None, filename: str) -> Any:
        """The object at ``index`` of ``entry``'s memo, if that entry's bytes are the ones referred to."""
        if entry not in self._unpicklers:
            directory = self._directory(entry)
            if directory is None or not (directory / filename).is_file():
                return _MISSING
            self.load(directory / filename, entry)
        if entry not in self._unpicklers or self.stream_digest(entry) != digest:
            return _MISSING
        return self._memo(entry).get(index, _MISSING)

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
            values = self._load_layout2(path, view, start + _pad(start), header, entry)
        if entry is not None:
            self.loaded[entry] = values
            for name, value in values.items():
                self.objects.setdefault((entry, name), value)
        return values

    def _load_layout2(
        self, path: Path, view: memoryview, base: int, header: dict[str, Any], entry: str | None
    ) -> dict[str, Any]:
        parts = [view[base + o : base + o + n] for o, n in header["sections"]]
        count = header["buffers"]
        refs: dict[str, str] = header["refs"]
        copies: list[dict[Any, Any]] = []

        def copy() -> dict[Any, Any]:
            if not copies:
                copies.append(pickle.loads(parts[count + 1], buffers=parts[count + 2 :]))  # noqa: S301
            return copies[0]

        def resolve(pid: Any) -> Any:
            if pid[0] == "part":  # an object pulled out of a producer's value
                found = self._part(pid[1], pid[2], header["parts"].get(pid[1]), path.name)
                return copy()[tuple(pid)] if found is _MISSING else found
            kind, name = pid
            key = (refs[name], name)
            if kind == "changed":  # written by an earlier version: the copy supersedes the producer's
                self.objects[key] = copy()[name]
            elif key not in self.objects:
                directory = self._directory(refs[name])
                if directory is not None and (directory / path.name).is_file():
                    self.load(directory / path.name, refs[name])
                if key not in self.objects:
                    self.objects[key] = copy()[name]
            return self.objects[key]

        unpickler = pickle.Unpickler(io.BytesIO(parts[0]), buffers=parts[1 : count + 1])  # noqa: S301
        unpickler.persistent_load = resolve  # type: ignore[method-assign]
        values: dict[str, Any] = unpickler.load()
        if entry is not None:
            self._unpicklers[entry] = unpickler
            self._streams[entry] = parts[0]
        superseding = header.get("supersedes") or {}
        if superseding:
            memo = unpickler.memo.copy()
            for name, (producer, index) in superseding.items():
                if index in memo:
                    self.objects[(producer, name)] = memo[index]
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
