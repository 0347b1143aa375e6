"""Hygiene at the edges (issue 17): failed authentications are throttled per address on the
REST API and the agent socket; names are matched whole; integers out of range are 4xx, never
5xx; the data dir and the files in it are the owner's only, and no token is printed."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from server.app import create_app
from server.config import Settings
from server.db import migrate
from server.throttle import FailedLogins
from tests.conftest import Flotilla, start_server
from tests.harness import Api

VALID = {"image": "web:v1"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_throttled_past_the_limit_until_its_window_ends() -> None:
    clock = Clock()
    logins = FailedLogins(limit=3, window=60.0, clock=clock)
    for _ in range(3):
        assert logins.retry_after("10.0.0.1", "api") == 0.0
        logins.failed("10.0.0.1")
    assert logins.retry_after("10.0.0.1", "api") == 60.0
    assert logins.retry_after("10.0.0.2", "api") == 0.0  # per address
    clock.now += 30
    assert logins.retry_after("10.0.0.1", "api") == 30.0
    clock.now += 30
    assert logins.retry_after("10.0.0.1", "api") == 0.0  # a new window


async def test_failed_logins_get_429_on_the_api_and_the_agent_socket(
    flotilla_sqlite: Flotilla,
) -> None:
    flotilla = flotilla_sqlite
    for _ in range(20):
        status, _ = await flotilla.api.call("GET", "/v1/apps", token="flt_wrong")
        assert status == 401
    async with flotilla.api.session.get(
        flotilla.url + "/v1/apps", headers={"Authorization": "Bearer flt_wrong"}
    ) as response:
        assert response.status == 429
        assert int(response.headers["Retry-After"]) >= 1
        body = await response.json()
        assert body["code"] == "too_many_failed_logins"
    status, _ = await flotilla.api.call("GET", "/v1/apps")  # even a good token, from there
    assert status == 429
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await flotilla.api.session.ws_connect(
            flotilla.url + "/v1/agent/connect", headers={"Authorization": "Bearer flt_x"}
        )
    assert refused.value.status == 429


async def test_missing_tokens_are_not_counted_as_guesses(flotilla_sqlite: Flotilla) -> None:
    for _ in range(30):
        status, _ = await flotilla_sqlite.api.call("GET", "/v1/apps", token="")
        assert status == 401
    assert (await flotilla_sqlite.api.call("GET", "/v1/apps"))[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/apps/web%0A/deployments", VALID, 422),  # a name with a newline
        ("POST", "/v1/apps/web/deployments", {"image": "web:v1\n"}, 422),
        ("POST", "/v1/apps/web/deployments", {**VALID, "env": {"A\n": "x"}}, 422),
        ("POST", "/v1/apps/web/deployments", {**VALID, "resources": {"memory": "1g\n"}}, 422),
        (
            "POST",
            "/v1/webhooks",
            {"url": "http://127.0.0.1:9/", "events": ["host.*\n"], "secret": "s" * 16},
            422,
        ),
        ("GET", f"/v1/events?deployment={2**70}", None, 422),
        ("GET", f"/v1/webhooks/{2**70}/deliveries", None, 404),
        ("DELETE", f"/v1/webhooks/{2**63}", None, 404),
        ("POST", "/v1/apps/web/rollback", {"release": 2**63}, 422),
    ],
)
async def test_edges_answer_4xx(
    flotilla_sqlite: Flotilla, method: str, path: str, body: object, status: int
) -> None:
    flotilla = flotilla_sqlite
    assert (await flotilla.api.call("POST", "/v1/apps/web/deployments", VALID))[0] == 202
    got, answer = await flotilla.api.call(method, path, body)
    assert got == status, answer


async def test_the_data_dir_is_the_owners_and_no_token_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()  # as an operator would: 0755
    server, _ = await start_server(f"sqlite+aiosqlite:///{data}/flotilla.db", data)
    try:
        token = (data / "admin.token").read_text().strip()
        out = capsys.readouterr().out
        assert token not in out and str(data / "admin.token") in out
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        for path in [data / "admin.token", *data.glob("flotilla.db*")]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        await server.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.10.1:8080/hook",
        "http://[fe80::1]/hook",
        "http://[fd00:ec2::254]/hook",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
)
async def test_webhooks_to_metadata_or_link_local_addresses_are_refused(
    flotilla_sqlite: Flotilla, url: str
) -> None:
    body = {"url": url, "events": ["deployment.*"], "secret": "s" * 16}
    status, problem = await flotilla_sqlite.api.call("POST", "/v1/webhooks", body)
    assert status == 422, problem
    assert [e["field"] for e in problem["errors"]] == ["url"]
    assert "--allow-internal-webhooks" in problem["detail"]


async def test_an_explicit_flag_allows_internal_webhooks(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/flotilla.db"
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(data_dir=tmp_path, database_url=url, allow_internal_webhooks=True)
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    api = Api(f"http://127.0.0.1:{server.port}", (tmp_path / "admin.token").read_text().strip())
    try:
        body = {
            "url": "http://169.254.169.254/hook",
            "events": ["deployment.*"],
            "secret": "s" * 16,
        }
        status, answer = await api.call("POST", "/v1/webhooks", body)
        assert status == 201, answer
    finally:
        await api.close()
        await server.close()
