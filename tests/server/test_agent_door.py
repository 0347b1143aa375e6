"""Every agent message is parsed once, at the door, into its strict typed model: a message
of the wrong shape closes that agent's connection with a clear reason, and nothing of it
reaches a reader (GET /v1/apps/{app} keeps answering)."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType

from agent.protocol import Hello, Instance, Status, encode
from tests.conftest import Flotilla

VALID = {"image": "web:v1", "command": ["/bin/sh", "-c", "sleep 3600"]}


async def connect(flotilla: Flotilla, name: str, token: str) -> aiohttp.ClientWebSocketResponse:
    ws = await flotilla.api.session.ws_connect(
        flotilla.url + "/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    )
    await ws.send_str(encode(Hello(host=name, agent_version="test", docker_version="0")))
    return ws


def status(name: str, release: object) -> str:
    instance = Instance("c1", "n", name, "web", 1, 1, 1, "running", ready=True)
    body = orjson.loads(encode(Status(host=name, generation=1, instances=(instance,))))
    body["instances"][0]["release"] = release
    return orjson.dumps(body).decode()


@pytest.mark.parametrize(
    "bad",
    [
        status("{host}", "abc"),  # a release that is not a number
        status("{host}", True),
        '{"type": "event", "host": "{host}", "kind": {"x": 1}, "app": "web", "message": "m"}',
        '{"type": "status", "host": "{host}"}',  # no generation
        '{"type": "desired", "host": "{host}", "generation": 1}',  # not an agent's message
        "[1, 2]",
    ],
)
async def test_a_bad_message_closes_the_connection_and_changes_nothing(
    flotilla_sqlite: Flotilla, bad: str
) -> None:
    flotilla = flotilla_sqlite
    name, token = await flotilla.add_host()
    status_code, _ = await flotilla.api.call("POST", "/v1/apps/web/deployments", VALID)
    assert status_code == 202
    ws = await connect(flotilla, name, token)
    await ws.send_str(bad.replace("{host}", name))
    closing = await asyncio.wait_for(ws.receive(), 10)
    while closing.type == WSMsgType.TEXT:  # the desired state pushed on connect
        closing = await asyncio.wait_for(ws.receive(), 10)
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert ws.close_code == 1007
    status_code, app = await flotilla.api.call("GET", "/v1/apps/web")
    assert status_code == 200
    assert all(h["instances"] == [] for h in app["hosts"])
    await ws.close()


async def test_a_good_status_is_what_get_app_shows(flotilla_sqlite: Flotilla) -> None:
    flotilla = flotilla_sqlite
    name, token = await flotilla.add_host()
    status_code, _ = await flotilla.api.call("POST", "/v1/apps/web/deployments", VALID)
    assert status_code == 202
    ws = await connect(flotilla, name, token)
    await ws.send_str(status(name, 1))
    for _ in range(100):
        status_code, app = await flotilla.api.call("GET", "/v1/apps/web")
        if app["hosts"] and app["hosts"][0]["instances"]:
            break
        await asyncio.sleep(0.05)
    assert [i["container_id"] for h in app["hosts"] for i in h["instances"]] == ["c1"]
    await ws.close()
