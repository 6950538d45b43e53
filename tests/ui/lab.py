"""Start a real JupyterLab for browser tests: 127.0.0.1, a free port, no token, a temporary root and config.

Only the extension built in this checkout (``nb2pipe/labextension``) is loaded as a federated extension, so the
test always exercises the code it sits next to, whatever is installed in the environment.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILT = REPO / "nb2pipe" / "labextension"
CHROMIUM = os.environ.get("NB2PIPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class Lab:
    url: str
    root: Path
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_lab(base: Path) -> Iterator[Lab]:
    """A JupyterLab server with the nb2pipe server extension and this checkout's labextension."""
    if not (BUILT / "package.json").is_file():
        raise RuntimeError(f"{BUILT} is missing: build the extension first (npm run build:prod)")
    root, config, data = base / "root", base / "config", base / "data"
    for d in (root, config / "labconfig", data / "labextensions", base / "workspaces"):
        d.mkdir(parents=True, exist_ok=True)
    (data / "labextensions" / "nb2pipe").symlink_to(BUILT)
    disabled = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
    (config / "labconfig" / "page_config.json").write_text(json.dumps(disabled))
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"nb2pipe.server": True}}})
    )
    port = free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "NB2PIPE_HOME": str(root / ".nb2pipe")}
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        "--LabApp.news_url=None",
        f"--LabApp.labextensions_path={data / 'labextensions'}",
    ]
    log = base / "lab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield Lab(url, root, log)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
