"""A real Jupyter server with the nb2pipe extension, rooted in a temporary folder holding the example notebooks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "example_notebooks"


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return {**jp_server_config, "ServerApp": {"jpserver_extensions": {"nb2pipe.server": True}}}


@pytest.fixture
def root(jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("NB2PIPE_HOME", raising=False)
    shutil.copytree(EXAMPLES, jp_root_dir / "examples")
    return jp_root_dir


@pytest.fixture
def api(jp_fetch: Callable[..., Awaitable[Any]], root: Path) -> Callable[..., Awaitable[Any]]:
    """``await api("GET", "analyze", params=...)`` -> (status, JSON body); errors are returned, not raised."""
    from tornado.httpclient import HTTPClientError

    async def call(method: str, *parts: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        if body is not None:
            kwargs["body"] = json.dumps(body)
        elif method in ("POST", "PUT"):
            kwargs["body"] = "{}"
        try:
            response = await jp_fetch("nb2pipe", "api", *parts, method=method, **kwargs)
        except HTTPClientError as exc:
            assert exc.response is not None
            text = exc.response.body.decode() or "{}"
            return exc.code, json.loads(text)
        return response.code, json.loads(response.body or b"null")

    return call
