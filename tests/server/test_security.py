"""Every endpoint needs authentication, honours the authorizer, and refuses paths outside the server root."""

from __future__ import annotations

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado.httpclient import HTTPClientError

ENDPOINTS = [
    ("GET", ("analyze",), {"params": {"path": "examples/sweep_parameters.ipynb"}}),
    ("POST", ("analyze",), {"body": "{}"}),
    ("POST", ("export",), {"body": "{}"}),
    ("GET", ("runs",), {}),
    ("POST", ("runs",), {"body": "{}"}),
    ("GET", ("runs", "20260101-000000-abcdef"), {}),
    ("POST", ("runs", "20260101-000000-abcdef", "cancel"), {"body": "{}"}),
    ("GET", ("runs", "20260101-000000-abcdef", "notebook"), {}),
    ("GET", ("schedules",), {}),
    ("POST", ("schedules",), {"body": "{}"}),
    ("GET", ("schedules", "nightly"), {}),
    ("POST", ("schedules", "nightly", "pause"), {"body": "{}"}),
    ("POST", ("schedules", "nightly", "resume"), {"body": "{}"}),
    ("DELETE", ("schedules", "nightly"), {}),
]


@pytest.mark.parametrize(("method", "parts", "kwargs"), ENDPOINTS)
async def test_unauthenticated_requests_are_refused(jp_fetch, root, method, parts, kwargs):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nb2pipe", "api", *parts, method=method, headers={"Authorization": ""}, **kwargs)
    assert info.value.code in (401, 403)


class DenyAll(Authorizer):
    def is_authorized(self, handler, user, action, resource):  # type: ignore[no-untyped-def]
        return False


@pytest.fixture
def jp_server_config(jp_server_config):
    return {**jp_server_config, "ServerApp": {**jp_server_config["ServerApp"], "authorizer_class": DenyAll}}


@pytest.mark.parametrize(("method", "parts", "kwargs"), ENDPOINTS)
async def test_the_authorizer_is_consulted(jp_fetch, root, method, parts, kwargs):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nb2pipe", "api", *parts, method=method, **kwargs)
    assert info.value.code == 403
