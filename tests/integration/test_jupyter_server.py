"""What JupyterLab's *File → Save and Export Notebook As* menu gets from a real Jupyter server.

The menu lists the formats of ``GET /api/nbconvert`` and downloads ``GET /nbconvert/<format>/<path>?download=true``.
We start ``jupyter server`` in a subprocess and make exactly those requests: both exporters must be listed with
their MIME types, the script must download as ``<notebook>.py`` with the bytes ``nb2pipe export script`` writes, the
package as ``<notebook>.zip`` holding ``nb2pipe convert``'s files, and nothing may be written next to the notebook.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import nb2pipe
from nb2pipe.script import export_script

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "example_notebooks" / "sweep_parameters.ipynb"
TOKEN = "nb2pipe-test-token"


@dataclass
class Server:
    url: str
    root: Path

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"token {TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("server")
    root = base / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    port = _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_RUNTIME_DIR": str(base / "runtime")}
    log = (base / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("jupyter")),
            "server",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={TOKEN}",
            "--ServerApp.allow_root=True",  # CI containers run as root
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    srv = Server(f"http://127.0.0.1:{port}", root)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if srv.get("/api/status")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (base / "server.log").read_text()
            time.sleep(0.2)
        yield srv
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_the_export_menu_lists_both_exporters(server: Server) -> None:
    status, _, body = server.get("/api/nbconvert")
    assert status == 200
    formats = json.loads(body)
    assert formats["nb2pipe"] == {"output_mimetype": "application/zip"}
    assert formats["nb2pipe_script"] == {"output_mimetype": "text/x-python"}


def test_script_download(server: Server) -> None:
    status, headers, body = server.get(f"/nbconvert/nb2pipe_script/{NOTEBOOK.name}?download=true")
    assert status == 200, body[:500]
    assert headers["Content-Type"].startswith("text/x-python")
    assert headers["Content-Disposition"] == "attachment; filename*=utf-8''sweep_parameters.py"
    assert body.decode() == export_script(NOTEBOOK)
    assert sorted(p.name for p in server.root.iterdir()) == [NOTEBOOK.name]


def test_package_download_is_a_zip_of_the_package(server: Server) -> None:
    status, headers, body = server.get(f"/nbconvert/nb2pipe/{NOTEBOOK.name}?download=true")
    assert status == 200, body[:500]
    assert headers["Content-Type"].startswith("application/zip")
    assert headers["Content-Disposition"] == "attachment; filename*=utf-8''sweep_parameters.zip"
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        unpacked = {name: archive.read(name) for name in archive.namelist()}
    expected = nb2pipe.analyze(NOTEBOOK).rendered.files
    assert unpacked == {f"sweep_parameters/{rel}": text.encode() for rel, text in expected.items()}
    assert sorted(p.name for p in server.root.iterdir()) == [NOTEBOOK.name]  # nothing written by the server


def test_a_broken_notebook_is_an_error_naming_the_cell(server: Server) -> None:
    broken = json.loads(NOTEBOOK.read_text())
    cell = next(c for c in broken["cells"] if c.get("id") == "4bbd33e6")
    cell["source"] = "model.fit(X_train\n"
    (server.root / "broken.ipynb").write_text(json.dumps(broken))
    try:
        status, _, body = server.get("/nbconvert/nb2pipe_script/broken.ipynb?download=true")
    finally:
        (server.root / "broken.ipynb").unlink()
    assert status == 500
    assert "cell 12 (id 4bbd33e6): invalid Python at line 1" in body.decode()
