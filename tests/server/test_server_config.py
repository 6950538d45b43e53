"""``c.Nb2Pipe`` settings in a real server's configuration reach the hosted scheduler."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NB2PIPE_SERVER_SCHEDULER", raising=False)  # the variable would win over the config


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return {
        **jp_server_config,
        "ServerApp": {"jpserver_extensions": {"nb2pipe.server": True}},
        "Nb2Pipe": {"scheduler": False, "standbys": 0},
    }


async def test_scheduler_and_standbys_come_from_the_server_config(jp_serverapp) -> None:
    host = jp_serverapp.web_app.settings["nb2pipe_scheduler"]
    assert host.enabled is False and host.standbys == 0
    assert host.ensure_started() is False and host.scheduler is None
