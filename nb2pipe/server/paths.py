"""Resolve a path sent by the browser to a file inside the server's root directory, and refuse anything else.

The browser speaks in paths relative to the root the Jupyter server shows (``notebooks/a.ipynb``). Anything that
could reach outside it is refused before the file system is touched: absolute paths, ``..`` parts, home (``~``)
and drive prefixes, NUL bytes, and symbolic links whose target lies outside the root.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from tornado.web import HTTPError


def resolve_inside(root: str | Path, relative: str | None, *, must_exist: bool = True, kind: str = "path") -> Path:
    """The absolute path of ``relative`` under ``root``; HTTP 400/403/404 when it is missing, outside or absent."""
    if not relative:
        raise HTTPError(400, f"missing {kind}")
    if "\x00" in relative or "\\" in relative:
        raise HTTPError(400, f"invalid {kind}")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or relative.startswith("~") or ":" in pure.parts[0]:
        raise HTTPError(403, f"{kind} must be relative to the server root")
    if ".." in pure.parts:
        raise HTTPError(403, f"{kind} may not contain '..'")
    base = Path(root).resolve()
    target = (base / pure).resolve()
    if target != base and base not in target.parents:
        raise HTTPError(403, f"{kind} leaves the server root")
    if must_exist and not target.exists():
        raise HTTPError(404, f"no such file: {relative}")
    return target


def relative_to_root(root: str | Path, path: str | Path) -> str:
    """``path`` as the browser names it (POSIX, relative to the root)."""
    return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
