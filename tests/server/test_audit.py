"""The audit trail (issue 17 item 5): every mutating call and every refused one (401, 403,
429) is recorded with its actor, action, target, source address, user agent, request id and
outcome; token, host and webhook changes too; calls refused for their content are not, nor
is anything an agent says. GET /v1/audit needs admin and filters by actor, action, time."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import aiohttp
import orjson

from agent.codec import encode
from agent.protocol import Event, Hello
from tests.conftest import Flotilla

UA = {"User-Agent": "audit-test/1.0"}


async def audit(flotilla: Flotilla, query: str = "") -> list[dict[str, Any]]:
    status, body = await flotilla.api.call("GET", "/v1/audit" + query)
    assert status == 200, body
    return list(body["audit"])


async def from_address(flotilla: Flotilla, address: str, path: str, token: str) -> int:
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(flotilla.url + path, headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        return r.status


async def test_mutating_and_refused_calls_are_recorded(flotilla: Flotilla) -> None:
    api = flotilla.api
    headers = {**UA, "X-Request-Id": "req-42"}
    status, made = await api.call(
        "POST", "/v1/tokens", {"name": "reader", "scopes": ["read"]}, headers=headers
    )
    assert status == 201
    reader = made["token"]
    assert (await api.call("GET", "/v1/apps", token="", headers=UA))[0] == 401
    assert (await api.call("GET", "/v1/tokens", token=reader, headers=UA))[0] == 403
    assert (await api.call("POST", "/v1/tokens", {"name": "x"}))[0] == 422  # not recorded
    assert (await api.call("GET", "/v1/apps"))[0] == 200  # a read: not recorded
    status, hook = await api.call(
        "POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/h", "secret": "s" * 16}
    )
    assert status == 201
    assert (await api.call("DELETE", f"/v1/webhooks/{hook['id']}"))[0] == 204
    assert (await api.call("POST", "/v1/hosts", {"name": "web-9"}))[0] == 201
    assert (await api.call("POST", "/v1/hosts/web-9/token"))[0] == 201
    assert (await api.call("DELETE", "/v1/hosts/web-9"))[0] == 204
    assert (await api.call("DELETE", "/v1/tokens/reader"))[0] == 204

    entries = await audit(flotilla)
    by_action = {(e["action"], e["outcome"]): e for e in entries}
    created = by_action[("token.create", 201)]
    assert created["actor"] == "admin" and created["target"] == "token=reader"
    assert created["source"] == "127.0.0.1" and created["user_agent"] == "audit-test/1.0"
    assert created["request_id"] == "req-42"
    anonymous = by_action[("app.list", 401)]
    assert anonymous["actor"] is None and anonymous["user_agent"] == "audit-test/1.0"
    forbidden = by_action[("token.list", 403)]
    assert forbidden["actor"] == "reader" and "admin" in forbidden["detail"]
    for action, outcome, target in [
        ("webhook.create", 201, f"webhook={hook['id']}"),
        ("webhook.delete", 204, f"id={hook['id']}"),
        ("host.add", 201, "host=web-9"),
        ("host.rotate_token", 201, "name=web-9"),
        ("host.remove", 204, "name=web-9"),
        ("token.revoke", 204, "name=reader"),
    ]:
        entry = by_action[(action, outcome)]
        assert entry["actor"] == "admin", entry
        if target:
            assert entry["target"] == target, entry
    assert all(e["outcome"] != 422 for e in entries)
    assert ("app.list", 200) not in by_action
    assert all(e["request_id"] for e in entries)
    # the token never appears in the audit
    assert reader not in repr(entries)

    # filters
    mine = await audit(flotilla, "?actor=reader")
    assert [e["action"] for e in mine] == ["token.list"]
    revokes = await audit(flotilla, "?action=token.revoke")
    assert [e["target"] for e in revokes] == ["name=reader"]
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert await audit(flotilla, f"?since={future.replace('+', '%2B')}") == []
    assert len(await audit(flotilla, f"?until={future.replace('+', '%2B')}&limit=2")) == 2
    status, problem = await api.call("GET", "/v1/audit?since=yesterday")
    assert status == 422 and problem["errors"][0]["field"] == "since"
    status, problem = await api.call("GET", "/v1/audit?limit=0")
    assert status == 422 and problem["errors"][0]["field"] == "limit"


async def test_the_audit_needs_admin_and_throttled_calls_are_recorded(
    flotilla_sqlite: Flotilla,
) -> None:
    flotilla = flotilla_sqlite
    api = flotilla.api
    _, made = await api.call("POST", "/v1/tokens", {"name": "ci", "scopes": ["deploy"]})
    assert (await api.call("GET", "/v1/audit", token=made["token"]))[0] == 403
    for _ in range(21):  # past the failed-login limit, from an address of its own
        status = await from_address(flotilla, "127.0.0.9", "/v1/apps", "flt_guess")
    assert status == 429
    entries = await audit(flotilla, "?action=app.list")
    outcomes = [e["outcome"] for e in entries if e["source"] == "127.0.0.9"]
    assert outcomes.count(401) == 20 and outcomes.count(429) == 1
    refused = await audit(flotilla, "?action=audit.list")
    assert [(e["actor"], e["outcome"]) for e in refused] == [("ci", 403)]


async def test_agents_cannot_write_the_audit(flotilla_sqlite: Flotilla) -> None:
    flotilla = flotilla_sqlite
    name, token = await flotilla.add_host()
    before = await audit(flotilla)
    ws = await flotilla.api.session.ws_connect(
        flotilla.url + "/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    )
    await ws.send_str(encode(Hello(host=name, agent_version="t", docker_version="0")))
    forged = orjson.loads(encode(Event(host=name, kind="drift_healed", app="web", message="m")))
    forged.update(kind="token_created", message="audit: admin created a token")
    await ws.send_str(orjson.dumps(forged).decode())
    await asyncio.sleep(0.5)
    await ws.close()
    # a refused agent connection is itself recorded
    try:
        await flotilla.api.session.ws_connect(
            flotilla.url + "/v1/agent/connect", headers={"Authorization": "Bearer flt_nope"}
        )
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 401
    after = await audit(flotilla)
    new = after[: len(after) - len(before)]
    assert [(e["action"], e["outcome"]) for e in new] == [("agent.connect", 401)]
