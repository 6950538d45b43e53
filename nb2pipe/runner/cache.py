"""The content-addressed result store: one directory per cache key, published by an atomic rename.

Layout under the store's home (``.nb2pipe/`` by default)::

    cache/objects/ab/abcdef.../meta.json     stage, version, outputs {name: hash}, state hashes, files written
                               values.bin    the outputs bundle (serialize.py)
                               state.bin     process-wide state after the stage (state.py), when it has any
                               stdout, stderr what the stage printed when it ran
                               files/<n>     copies of the files the stage wrote (restored on a hit if changed)
    cache/tmp/                               entries being written; never read

An entry is complete or absent: a worker writes into ``tmp/`` and renames the directory into ``objects/`` last
(``rename`` of a directory is atomic on POSIX). A run killed at any point leaves at worst a ``tmp/`` directory,
which ``nb2pipe cache gc`` removes. The key is computed by the orchestrator from the stage's code version, the
hashes of its inputs, the parameters it reads, the state it receives and the content of the files it reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

#: Bump when the key recipe or the entry layout changes: old entries then simply stop matching.
KEY_FORMAT: Final = 2
META: Final = "meta.json"
VALUES: Final = "values.bin"
STATE: Final = "state.bin"


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes; ``missing`` when it does not exist (the stage will see it missing too)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return "missing"
    except IsADirectoryError:
        return _dir_hash(path)
    return digest.hexdigest()


def _dir_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{child.relative_to(path)}\0{file_hash(child)}\0".encode())
    return "dir:" + digest.hexdigest()


def cache_key(
    *,
    stage: str,
    version: str,
    inputs: Mapping[str, str],
    params: Mapping[str, Any],
    state: Mapping[str, str | None],
    files: Mapping[str, str],
) -> str:
    """The stage's cache key: everything its result depends on, and nothing else (not comments, not timing)."""
    recipe = {
        "format": KEY_FORMAT,
        "stage": stage,
        "version": version,
        "inputs": dict(sorted(inputs.items())),
        "params": {k: _canonical(v) for k, v in sorted(params.items())},
        "state": dict(sorted(state.items())),
        "files": dict(sorted(files.items())),
    }
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> str:
    # repr keeps int 1, float 1.0, True and "1" apart; parameters are literals, so repr is stable.
    return f"{type(value).__name__}:{value!r}"


@dataclass(frozen=True)
class Entry:
    """A published cache entry."""

    key: str
    path: Path
    meta: dict[str, Any]

    @property
    def outputs(self) -> dict[str, str]:
        """Output name -> content hash."""
        out: dict[str, str] = self.meta["outputs"]
        return out

    @property
    def state(self) -> dict[str, str]:
        """State key -> hash of its snapshot."""
        out: dict[str, str] = self.meta.get("state", {})
        return out


class Cache:
    """The store of stage results under ``<home>/cache``."""

    def __init__(self, home: Path) -> None:
        self.root = Path(home) / "cache"
        self.objects = self.root / "objects"
        self.tmp = self.root / "tmp"

    def entry_path(self, key: str) -> Path:
        return self.objects / key[:2] / key

    def get(self, key: str) -> Entry | None:
        """The published entry for ``key``, or ``None``. An unreadable entry counts as absent."""
        path = self.entry_path(key)
        try:
            meta = json.loads((path / META).read_text())
        except (OSError, ValueError):
            return None
        return Entry(key, path, meta)

    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        """A private directory to fill; published as the entry for ``key`` when the block ends without error."""
        work = self.tmp / f"{key[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            work.mkdir()
        except FileNotFoundError:
            self.tmp.mkdir(parents=True, exist_ok=True)
            work.mkdir()
        try:
            yield work
            final = self.entry_path(key)
            try:
                try:
                    os.rename(work, final)
                except FileNotFoundError:  # first entry in this shard
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(work, final)
            except OSError:
                if not (final / META).exists():  # not a concurrent writer of the same key: a real failure
                    raise
                shutil.rmtree(work, ignore_errors=True)  # another run published the same result first
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def entries(self) -> list[Entry]:
        """Every published entry (for ``cache ls``)."""
        out: list[Entry] = []
        if not self.objects.is_dir():
            return out
        for shard in sorted(self.objects.iterdir()):
            for path in sorted(shard.iterdir()) if shard.is_dir() else ():
                entry = self.get(path.name)
                if entry is not None:
                    out.append(entry)
        return out

    def remove(self, key: str) -> bool:
        path = self.entry_path(key)
        if not path.exists():
            return False
        # Unpublish first (rename is atomic), then delete at leisure.
        self.tmp.mkdir(parents=True, exist_ok=True)
        doomed = self.tmp / f"rm-{key[:16]}-{secrets.token_hex(4)}"
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def clean_tmp(self, older_than: float = 3600.0) -> int:
        """Remove abandoned ``tmp/`` directories (a killed run's half-written entries)."""
        if not self.tmp.is_dir():
            return 0
        count = 0
        now = time.time()
        for path in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime >= older_than:
                    shutil.rmtree(path, ignore_errors=True)
                    count += 1
        return count


def entry_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
