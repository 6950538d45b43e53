"""Schedules through the public CLI (``nb2pipe schedule add|list|show|pause|resume|rm``), run off the event loop.

The scheduler owns its tables and their rules (cron parsing, time zones, parameter checks); the server only passes
the browser's request on as a command line and the command's JSON back, so both always agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..parameters import parameter_text
from ..runstore import HOME_ENV, RunStore

_TIMEOUT = 60.0


class CommandError(Exception):
    """The CLI refused the request; ``message`` is its one-line error."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


async def run_cli(args: Sequence[str], *, cwd: Path, home: Path) -> Any:
    """Run ``nb2pipe ARGS`` and return its JSON output (None when it printed nothing)."""
    env = {**os.environ, HOME_ENV: str(home.absolute())}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nb2pipe.cli",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), _TIMEOUT)
    except TimeoutError:
        process.kill()
        raise CommandError(f"nb2pipe {' '.join(args[:2])} did not answer in {_TIMEOUT:.0f} s", 504) from None
    if process.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        raise CommandError(lines[-1] if lines else f"exit code {process.returncode}", 400)
    text = out.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"output": text}


def add_args(body: Mapping[str, Any], target: str) -> list[str]:
    """``schedule add`` arguments from a request body (``name``, ``cron``, ``parameters``, options)."""
    args = ["schedule", "add", str(body["name"]), target, "--cron", str(body["cron"]), "--json"]
    for name, value in dict(body.get("parameters") or {}).items():
        args += ["-p", str(name), parameter_text(value)]
    for key, flag in (
        ("timezone", "--timezone"),
        ("catchup", "--catchup"),
        ("max_concurrent", "--max-concurrent"),
        ("retries", "--retries"),
        ("timeout", "--timeout"),
    ):
        if body.get(key) is not None:
            args += [flag, str(body[key])]
    return args


def _relative(root: Path, target: str) -> str | None:
    """``target`` as the browser names it, or None when it lies outside the root."""
    path = (root / target).resolve()
    return path.relative_to(root).as_posix() if path == root or root in path.parents else None


def for_panel(schedules: Any, root: Path, store: RunStore | None, path: str | None = None) -> list[dict[str, Any]]:
    """The ``schedule list --json`` entries the sidebar shows, with their notebook and their last run.

    Each gains ``path`` (its target relative to the root, or null outside it) and ``last_run`` (the newest run it
    started: id, status, scheduled_for, created_at; or null). Given ``path``, only that notebook's schedules.
    """
    root = root.resolve()
    out = []
    for schedule in schedules if isinstance(schedules, list) else []:
        relative = _relative(root, str(schedule.get("target", "")))
        if path is not None and relative != path:
            continue
        last = None
        if store is not None:
            with contextlib.suppress(sqlite3.Error):
                rows = store.query(
                    "SELECT id, status, scheduled_for, created_at FROM runs WHERE schedule = ? AND deleted_at IS NULL "
                    "ORDER BY created_at DESC LIMIT 1",
                    (schedule.get("name"),),
                )
                last = dict(rows[0]) if rows else None
        out.append({**schedule, "path": relative, "last_run": last})
    return out
