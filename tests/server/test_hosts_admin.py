"""Hosts' lifecycle (issue 17 item 2) through the REST API and the command line: a host is
added with its token shown once; rotating the token or removing the host cuts the live
agent connection off at once; a host that an active deployment targets cannot be removed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from agent.codec import encode
from agent.protocol import Hello
from tests.conftest import Flotilla
from tests.harness import agent, eventually, unique


async def connect(flotilla: Flotilla, name: str, token: str) -> aiohttp.ClientWebSocketResponse:
    ws = await flotilla.api.session.ws_connect(
        flotilla.url + "/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    )
    await ws.send_str(encode(Hello(host=name, agent_version="test", docker_version="0")))
    return ws


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, float]:
    """Read until the server closes the socket; its close code and when."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type != WSMsgType.TEXT:
            return ws.close_code, time.monotonic()


async def refused(flotilla: Flotilla, token: str) -> int:
    """The status a new agent connection with this token gets."""
    try:
        ws = await connect(flotilla, "x", token)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 101


async def add(flotilla: Flotilla, name: str, **labels: str) -> dict[str, Any]:
    status, answer = await flotilla.api.call("POST", "/v1/hosts", {"name": name, "labels": labels})
    assert status == 201, answer
    flotilla.hosts.append(name)
    return dict(answer)


async def test_add_list_and_bad_requests(flotilla: Flotilla) -> None:
    name = unique("h")
    made = await add(flotilla, name, role="web")
    assert made["token"].startswith("flt_") and made["labels"] == {"role": "web"}
    status, hosts = await flotilla.api.call("GET", "/v1/hosts")
    listed = {h["name"]: h for h in hosts["hosts"]}
    assert listed[name]["labels"] == {"role": "web"}
    assert listed[name]["status"] == "disconnected"
    assert made["token"] not in repr(hosts)
    for body, field, code in [
        ({"name": name}, "name", 409),
        ({"name": "Bad_Name"}, "name", 422),
        ({"name": "web\n"}, "name", 422),
        ({"name": "ok", "labels": {"flotilla.x": "1"}}, "labels", 422),
        ({"name": "ok", "labels": "role=web"}, "labels", 422),
        ({"labels": {}}, "name", 422),
    ]:
        status, problem = await flotilla.api.call("POST", "/v1/hosts", body)
        assert status == code, (body, problem)
        assert status == 409 or any(e["field"].startswith(field) for e in problem["errors"])
    _, after = await flotilla.api.call("GET", "/v1/hosts")
    assert after == hosts
    for method, path in [("POST", "/v1/hosts/nope/token"), ("DELETE", "/v1/hosts/nope")]:
        status, problem = await flotilla.api.call(method, path)
        assert status == 404 and problem["errors"][0]["field"] == "name"


async def test_rotating_a_token_cuts_the_agent_off_at_once(flotilla: Flotilla) -> None:
    name = unique("h")
    old = (await add(flotilla, name))["token"]
    ws = await connect(flotilla, name, old)
    await eventually(lambda: _connected(flotilla, name))
    reading = asyncio.create_task(closed_with(ws))  # as an agent does, all the time
    asked = time.monotonic()
    status, answer = await flotilla.api.call("POST", f"/v1/hosts/{name}/token")
    assert status == 201 and answer["token"] != old
    code, at = await reading
    assert code == 4004 and at - asked < 1.0
    assert await refused(flotilla, old) == 401
    fresh = await connect(flotilla, name, answer["token"])
    await eventually(lambda: _connected(flotilla, name))
    await fresh.close()


async def test_removing_a_host_cuts_it_off_unless_a_rollout_targets_it(
    flotilla: Flotilla,
) -> None:
    name = unique("h")
    token = (await add(flotilla, name))["token"]
    ws = await connect(flotilla, name, token)
    await eventually(lambda: _connected(flotilla, name))
    body = {
        "image": "web:v1",
        "hosts": {"names": [name]},
        "strategy": {"healthy_deadline": 2, "auto_rollback": False},
    }
    deployment = await flotilla.api.deploy("web", body)

    async def targeted() -> bool:
        d = await flotilla.api.deployment(deployment["id"])
        return d["status"] == "running" and [h["name"] for h in d["hosts"]] == [name]

    await eventually(targeted)
    status, problem = await flotilla.api.call("DELETE", f"/v1/hosts/{name}")
    assert status == 409 and problem["code"] == "host_in_use"
    assert not ws.closed
    reading = asyncio.create_task(closed_with(ws))
    ended = await flotilla.api.wait(deployment["id"])  # the agent never reports: it fails
    assert ended["status"] == "failed"
    # web stays assigned to it: not drained, so not removed unless forced
    status, problem = await flotilla.api.call("DELETE", f"/v1/hosts/{name}")
    assert status == 409 and problem["code"] == "host_not_drained", problem
    assert not ws.closed
    status, problem = await flotilla.api.call("DELETE", f"/v1/hosts/{name}?force=maybe")
    assert status == 422 and problem["errors"][0]["field"] == "force", problem
    asked = time.monotonic()
    status, _ = await flotilla.api.call("DELETE", f"/v1/hosts/{name}?force=true")
    assert status == 204
    code, at = await reading
    assert code == 4005 and at - asked < 1.0
    _, hosts = await flotilla.api.call("GET", "/v1/hosts")
    assert name not in {h["name"] for h in hosts["hosts"]}
    assert await refused(flotilla, token) == 401
    status, kept = await flotilla.api.call("GET", f"/v1/deployments/{deployment['id']}")
    assert status == 200 and kept["status"] == "failed"
    status, app = await flotilla.api.call("GET", "/v1/apps/web")
    assert status == 200 and name not in {h["name"] for h in app["hosts"]}
    _, events = await flotilla.api.call("GET", "/v1/events")
    assert any(e["kind"] == "host_removed" and e["host"] == name for e in events["events"])
    # the name can be registered again
    await add(flotilla, name)


async def test_a_real_agent_is_cut_off_by_a_rotation(
    flotilla_sqlite: Flotilla, docker_url: str
) -> None:
    flotilla = flotilla_sqlite
    name = unique("h")
    token = (await add(flotilla, name))["token"]
    async with agent(flotilla.url, name, token, docker_url):
        await eventually(lambda: _connected(flotilla, name))
        status, _ = await flotilla.api.call("POST", f"/v1/hosts/{name}/token")
        assert status == 201

        async def gone() -> bool:
            _, hosts = await flotilla.api.call("GET", "/v1/hosts")
            return {h["name"]: h["status"] for h in hosts["hosts"]}[name] == "disconnected"

        await eventually(gone, timeout=5)


async def _connected(flotilla: Flotilla, name: str) -> bool:
    _, hosts = await flotilla.api.call("GET", "/v1/hosts")
    return {h["name"]: h["status"] for h in hosts["hosts"]}.get(name) == "connected"


async def test_cordon_drain_and_remove_on_each_database(flotilla: Flotilla) -> None:
    """Without agents: a host away when a deployment starts is skipped and assigned the
    release when it succeeds; a cordoned host is no target; draining removes its apps."""
    a, b = unique("h"), unique("h")
    await add(flotilla, a)
    await add(flotilla, b)
    status, body = await flotilla.api.call("POST", f"/v1/hosts/{a}/cordon")
    assert status == 200 and body["cordoned"] is True and body["schedulable"] is False
    body = {"image": "web:v1", "strategy": {"reconnect_grace": 0}}
    done = await flotilla.api.wait((await flotilla.api.deploy("web", body))["id"])
    assert done["status"] == "succeeded", done
    assert [(h["name"], h["state"]) for h in done["hosts"]] == [(b, "skipped")]
    assert "disconnected" in done["hosts"][0]["error"]
    for name, code in [(a, 204), (b, 409)]:  # b now has web assigned: not drained
        status, _ = await flotilla.api.call("DELETE", f"/v1/hosts/{name}")
        assert status == code, name
    status, body = await flotilla.api.call("POST", f"/v1/hosts/{b}/drain")
    assert status == 200 and body["removed"] == ["web"] and body["cordoned"] is True, body
    status, again = await flotilla.api.call("POST", f"/v1/hosts/{b}/drain")
    assert status == 200 and again["removed"] == []
    status, body = await flotilla.api.call("POST", f"/v1/hosts/{b}/uncordon")
    assert status == 200 and body["cordoned"] is False
    _, events = await flotilla.api.call("GET", "/v1/events?limit=1000")
    kinds = [(e["kind"], e["host"]) for e in events["events"]]
    for kind in ("host_cordoned", "host_drained", "host_uncordoned", "app_removed"):
        assert any(k == kind for k, _ in kinds), kind
    status, _ = await flotilla.api.call("DELETE", f"/v1/hosts/{b}")
    assert status == 204
