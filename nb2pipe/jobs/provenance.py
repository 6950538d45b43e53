"""Provenance of a run: where the code came from (git), what ran it (Python, packages) and the notebook's hash.

The package list is read from the installed distributions' metadata (no ``pip freeze`` subprocess). It is cached in
the store's folder, keyed by the interpreter and the modification times of its site-packages folders, so a run in
an unchanged environment pays a few stat calls, not a scan of every package.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from ..runstore import Environment


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_state(folder: str | os.PathLike[str]) -> tuple[str | None, bool | None]:
    """The commit checked out in ``folder``'s repository and whether tracked files differ from it (None outside git)."""
    try:
        head = subprocess.run(
            ["git", "-C", os.fspath(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "-C", os.fspath(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return head.stdout.strip(), dirty


def _site_dirs() -> list[str]:
    return sorted({p for p in sys.path if p and os.path.isdir(p) and ("site-packages" in p or "dist-packages" in p)})


def _cache_key() -> str:
    parts = [sys.executable, sys.version]
    for folder in _site_dirs():
        try:
            parts.append(f"{folder}:{os.stat(folder).st_mtime_ns}")
        except OSError:
            continue
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def current_environment(cache_dir: str | os.PathLike[str] | None = None) -> Environment:
    """This interpreter and its installed packages (``name==version``, sorted), cached under ``cache_dir``."""
    key = _cache_key()
    cache = Path(cache_dir) / "environments" / f"{key}.json" if cache_dir is not None else None
    if cache is not None:
        try:
            data = json.loads(cache.read_text(encoding="utf-8"))
            return Environment(data["python"], data["platform"], tuple(data["packages"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    from importlib.metadata import distributions

    packages = sorted(
        {f"{d.metadata['Name']}=={d.version}" for d in distributions() if d.metadata and d.metadata["Name"]},
        key=str.lower,
    )
    env = Environment(platform.python_version(), platform.platform(), tuple(packages))
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"python": env.python, "platform": env.platform, "packages": packages}))
            os.replace(tmp, cache)
        except OSError:
            pass  # a cache we cannot write only costs time
    return env
