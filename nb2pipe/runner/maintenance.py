"""``nb2pipe cache ls/clear/gc``: look at and prune the result store without ever exposing a half-removed entry.

Removal unpublishes an entry with one rename before deleting it, so a run reading the cache at the same moment
sees the entry or no entry. ``gc`` keeps every result a run used within ``keep_days`` (the run store knows which
cache keys each stage run used) and removes the leftovers of killed runs (``cache/tmp``) whose process is gone.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from .cache import Cache, entry_size


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def list_entries(home: Path) -> list[dict[str, Any]]:
    now = time.time()
    rows = []
    for entry in Cache(home).entries():
        created = float(entry.meta.get("created_at", 0.0))
        rows.append(
            {
                "key": entry.key,
                "pipeline": entry.meta.get("pipeline"),
                "stage": entry.meta.get("stage"),
                "version": entry.meta.get("version"),
                "outputs": entry.outputs,
                "formats": {n: f.get("format", "?") for n, f in entry.meta.get("formats", {}).items()},
                "size": entry_size(entry.path),
                "created_at": created,
                "age": _age(now - created),
                "path": str(entry.path),
            }
        )
    return rows


def clear(home: Path, *, pipeline: str | None = None, stage: str | None = None) -> int:
    cache = Cache(home)
    count = 0
    for entry in cache.entries():
        if pipeline and entry.meta.get("pipeline") != pipeline:
            continue
        if stage and entry.meta.get("stage") != stage:
            continue
        count += cache.remove(entry.key)
    return count


def gc(home: Path, *, keep_days: float = 30.0) -> tuple[int, int, int]:
    """Remove unused results, abandoned temporary entries and old converted packages; return the three counts."""
    cache = Cache(home)
    cutoff = time.time() - keep_days * 86400
    used: set[str] = set()
    if (home / "runs.sqlite").exists():
        from ..runstore import RunStore

        with RunStore(home) as store:
            rows = store.query(
                "SELECT DISTINCT s.cache_key FROM stage_runs s JOIN runs r ON r.id = s.run_id "
                "WHERE s.cache_key IS NOT NULL AND (r.created_at >= ? OR r.status IN ('queued', 'running'))",
                (cutoff,),
            )
            used = {r[0] for r in rows}
    removed = 0
    for entry in cache.entries():
        if entry.key in used or float(entry.meta.get("created_at", 0.0)) >= cutoff:
            continue
        removed += cache.remove(entry.key)
    from ..runstore import pid_alive

    tmp = 0
    if cache.tmp.is_dir():
        for path in cache.tmp.iterdir():
            parts = path.name.split("-")
            pid = int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None
            if pid is None or not pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)
                tmp += 1
    packages = 0
    pkg_root = home / "packages"
    if pkg_root.is_dir():
        for path in pkg_root.iterdir():
            if path.stat().st_mtime < cutoff or path.name.startswith(".tmp-"):
                shutil.rmtree(path, ignore_errors=True)
                packages += 1
    return removed, tmp, packages
