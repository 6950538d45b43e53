"""Type-aware serializers for the values that cross stage boundaries.

A stage's outputs are written as ONE bundle, so aliasing between them survives (``b = a`` in a stage gives one
object again in the next). The bundle is a pickle (protocol 5) whose large buffers -- NumPy arrays, the blocks of
pandas DataFrames, anything exposing ``PickleBuffer`` -- are stored out of band, raw, after the pickle stream: no
copy through the pickle machinery on write, and they come back as writable arrays on read. Values plain pickle
refuses (lambdas, classes defined inside a stage) fall back to cloudpickle, which pickles them by value.

Each output also gets its own content hash (the digest of its own pickle, buffers included): that is what the
cache keys of the stages reading it are made of, and what ``--json`` reports.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

MAGIC: Final = b"NB2PIPE1"
_LEN: Final = struct.Struct("<Q")


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


def _dumps(value: Any, kind: str, buffers: list[pickle.PickleBuffer]) -> bytes:
    return _pickler(kind)(value, protocol=5, buffer_callback=buffers.append)


def _choose(values: Mapping[str, Any]) -> tuple[str, bytes, list[pickle.PickleBuffer]]:
    last: Exception | None = None
    for kind in ("pickle", "cloudpickle"):
        buffers: list[pickle.PickleBuffer] = []
        try:
            return kind, _dumps(dict(values), kind, buffers), buffers
        except Exception as exc:
            last = exc
    # Find the culprit, so the message names the variable.
    for name, value in values.items():
        try:
            _dumps(value, "cloudpickle", [])
        except Exception as exc:
            raise UnserializableValue(name, _type_name(value), f"{type(exc).__name__}: {exc}") from None
    raise UnserializableValue(", ".join(values), "bundle", str(last))


def _type_name(value: Any) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def value_hash(value: Any, kind: str = "pickle") -> str:
    """Content hash of one value: sha256 of its pickle stream and its out-of-band buffers."""
    digest = hashlib.sha256()

    def take(buf: pickle.PickleBuffer) -> None:
        digest.update(buf.raw())

    try:
        data = _pickler(kind)(value, protocol=5, buffer_callback=take)
    except Exception:
        digest = hashlib.sha256()
        data = _pickler("cloudpickle")(value, protocol=5, buffer_callback=take)
    digest.update(data)
    return digest.hexdigest()


def dump(values: Mapping[str, Any], path: Path) -> tuple[str, dict[str, str]]:
    """Write ``values`` as one bundle at ``path``; return the serializer used and each value's hash."""
    kind, data, buffers = _choose(values)
    raws = [b.raw() for b in buffers]
    header = json.dumps({"serializer": kind, "buffers": [r.nbytes for r in raws], "pickle": len(data)}).encode()
    with open(path, "wb") as fh:
        fh.write(MAGIC)
        fh.write(_LEN.pack(len(header)))
        fh.write(header)
        fh.write(data)
        for raw in raws:
            fh.write(raw)
    return kind, {name: value_hash(value, kind) for name, value in values.items()}


def load(path: Path) -> dict[str, Any]:
    """Read a bundle written by :func:`dump`; arrays come back writable."""
    blob = bytearray(path.read_bytes())
    view = memoryview(blob)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise ValueError(f"{path}: not an nb2pipe value bundle")
    pos = len(MAGIC)
    (hlen,) = _LEN.unpack_from(view, pos)
    pos += _LEN.size
    header = json.loads(bytes(view[pos : pos + hlen]))
    pos += hlen
    data = view[pos : pos + header["pickle"]]
    pos += header["pickle"]
    buffers = []
    for size in header["buffers"]:
        buffers.append(view[pos : pos + size])
        pos += size
    if header["serializer"] == "cloudpickle":
        import cloudpickle  # noqa: F401  (registers nothing, but the classes it pickled by value need it)
    values: dict[str, Any] = pickle.loads(data, buffers=buffers)  # noqa: S301 - our own cache, written by us
    return values


def dumps_small(value: Any) -> bytes:
    """Pickle a small value (process state) with the same fallback; used for state snapshots."""
    buf = io.BytesIO()
    try:
        pickle.dump(value, buf, protocol=5)
    except Exception:
        return _pickler("cloudpickle")(value, protocol=5)
    return buf.getvalue()
