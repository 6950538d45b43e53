"""Writing the generated package atomically, and comparing it with what is on disk.

A new package is written to a temporary sibling directory and renamed into place. An existing package is updated
file by file, each through a temporary file and ``os.replace``, and only files whose bytes change are touched, so
converting an unchanged notebook rewrites nothing. The lock file goes last: it is the commit point. A directory
that is not an nb2pipe package is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OutputError

LOCK = "nb2pipe.lock"


@dataclass
class WriteReport:
    """What a write changed."""

    directory: Path
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: readers see the old file or the new one.

    The new file keeps the mode of the file it replaces, else gets the mode a plain ``open()`` would give (0666
    minus the umask): mkstemp's private 0600 would make generated code unreadable to the team.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def existing_files(directory: Path) -> dict[str, bytes]:
    """The generated files currently in ``directory`` (ignoring caches)."""
    out: dict[str, bytes] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith("."):
            out[path.relative_to(directory).as_posix()] = path.read_bytes()
    return out


def stale_files(directory: Path, files: dict[str, str]) -> list[str]:
    """Files that differ between ``files`` and the package on disk (added, changed or removed)."""
    current = existing_files(directory)
    wanted = {k: v.encode() for k, v in files.items()}
    return sorted(k for k in set(current) | set(wanted) if current.get(k) != wanted.get(k))


def write_package(directory: Path, files: dict[str, str]) -> WriteReport:
    """Make ``directory`` hold exactly ``files``, atomically per file, touching only what changed."""
    report = WriteReport(directory)
    try:
        if directory.exists() and not directory.is_dir():
            raise OutputError(f"{directory} exists and is not a directory")
        if directory.is_dir() and any(directory.iterdir()) and not (directory / LOCK).is_file():
            raise OutputError(
                f"{directory} exists and was not written by nb2pipe (no {LOCK}); choose another -o or remove it"
            )
        if not directory.exists():
            directory.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
            try:
                for rel, text in files.items():
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(text.encode())
                os.rename(tmp, directory)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            report.written = sorted(files)
            return report
        current = existing_files(directory)
        order = sorted(files, key=lambda rel: rel == LOCK)  # the lock last
        for rel in order:
            data = files[rel].encode()
            if current.get(rel) == data:
                report.unchanged.append(rel)
                continue
            write_atomic(directory / rel, data)
            report.written.append(rel)
        for rel in sorted(set(current) - set(files)):
            (directory / rel).unlink()
            report.removed.append(rel)
        return report
    except OSError as exc:
        raise OutputError(f"cannot write {directory}: {exc.strerror or exc}") from None
