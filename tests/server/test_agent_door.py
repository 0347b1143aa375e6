"""Every agent message is parsed once, at the door, into its strict typed model: a message
of the wrong shape closes that agent's connection with a clear reason, and nothing of it
reaches a reader (GET /v1/apps/{app} keeps answering)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType
from prometheus_client.parser import text_string_to_metric_families

from agent.codec import encode
from agent.protocol import Event, Hello, Instance, Status
from server.hub import SEND_SECONDS
from tests.conftest import Flotilla
from tests.harness import eventually

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


async def wait_for_app(flotilla: Flotilla, app: str, ready: Any) -> Any:
    for _ in range(100):
        status_code, body = await flotilla.api.call("GET", f"/v1/apps/{app}")
        if status_code == 200 and ready(body):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"GET /v1/apps/{app} never showed it: {body}")


def instances_of(app_body: Any) -> list[tuple[str, str]]:
    return [(h["name"], i["container_id"]) for h in app_body["hosts"] for i in h["instances"]]


async def test_an_agent_reports_only_its_own_host_and_the_apps_it_was_told_of(
    flotilla_sqlite: Flotilla,
) -> None:
    flotilla = flotilla_sqlite
    name, token = await flotilla.add_host()
    other, _ = await flotilla.add_host()
    assert (await flotilla.api.call("POST", "/v1/apps/web/deployments", VALID))[0] == 202
    assert (
        await flotilla.api.call(
            "POST", "/v1/apps/db/deployments", {**VALID, "hosts": {"names": [other]}}
        )
    )[0] == 202
    ws = await connect(flotilla, name, token)
    mine = Instance("mine", "n", name, "web", 1, 1, 1, "running", ready=True)
    forged = [
        Instance("foreign-app", "n", name, "db", 1, 1, 1, "running", ready=True),
        Instance("foreign-host", "n", other, "web", 1, 1, 1, "running", ready=True),
    ]
    status = Status(
        host=name, generation=1, instances=(mine, *forged), digests=(("db:9", "sha256:x"),)
    )
    await ws.send_str(encode(status))
    await ws.send_str(encode(Event(name, "deployment_succeeded", "web", "forged")))
    await ws.send_str(encode(Event(name, "drift_healed", "db", "forged")))
    web = await wait_for_app(flotilla, "web", lambda b: bool(instances_of(b)))
    assert instances_of(web) == [(name, "mine")]
    _, db = await flotilla.api.call("GET", "/v1/apps/db")
    assert instances_of(db) == []
    _, events = await flotilla.api.call("GET", "/v1/events?app=web")
    assert not [e for e in events["events"] if e["message"] == "forged"]
    metrics = await flotilla.api.session.get(flotilla.url + "/metrics")
    text = await metrics.text()
    assert 'flotilla_agent_reports_refused_total{reason="foreign"}' in text
    assert 'flotilla_agent_reports_refused_total{reason="kind"} 1.0' in text
    assert not ws.closed  # refused parts are ignored; the connection stays
    await ws.close()


async def test_a_second_connection_for_a_host_replaces_the_first_and_says_so(
    flotilla_sqlite: Flotilla,
) -> None:
    flotilla = flotilla_sqlite
    name, token = await flotilla.add_host()
    first = await connect(flotilla, name, token)
    await asyncio.sleep(0.1)
    second = await connect(flotilla, name, token)
    closing = await asyncio.wait_for(first.receive(), 10)
    while closing.type == WSMsgType.TEXT:
        closing = await asyncio.wait_for(first.receive(), 10)
    assert first.close_code == 4001
    for _ in range(100):
        _, events = await flotilla.api.call("GET", "/v1/events")
        replaced = [e for e in events["events"] if e["kind"] == "host_session_replaced"]
        if replaced:
            break
        await asyncio.sleep(0.05)
    assert replaced and replaced[0]["host"] == name
    assert replaced[0]["message"].count("127.0.0.1") == 2  # both source addresses
    await second.close()


async def test_a_frame_past_the_cap_closes_the_connection(flotilla_sqlite: Flotilla) -> None:
    flotilla = flotilla_sqlite
    name, token = await flotilla.add_host()
    ws = await connect(flotilla, name, token)
    await ws.send_str(status(name, 1) + " " * (1024 * 1024))
    closing = await asyncio.wait_for(ws.receive(), 10)
    while closing.type == WSMsgType.TEXT:
        closing = await asyncio.wait_for(ws.receive(), 10)
    assert ws.close_code == 1009  # message too big
    assert (await flotilla.api.call("GET", "/v1/hosts"))[0] == 200


async def test_an_agent_that_stops_reading_is_cut_off_and_holds_up_no_other(
    flotilla_sqlite: Flotilla,
) -> None:
    """An agent whose socket takes no more frames (it reads nothing: stuck, or hostile) must
    not stop the server's pushes to everyone else. Its send waits SEND_SECONDS at most; then
    its connection is cut, and the other host hears of every deploy meanwhile. (Before, the
    push waited for that send for ever, and every later push with it.)"""
    flotilla = flotilla_sqlite
    stuck_name, stuck_token = await flotilla.add_host()
    name, token = await flotilla.add_host()
    stuck = await connect(flotilla, stuck_name, stuck_token)  # never reads: its buffers fill
    ws = await connect(flotilla, name, token)
    heard: set[int] = set()  # releases the reading host was told of
    told = asyncio.Condition()

    async def listen() -> None:
        async for msg in ws:
            body = orjson.loads(msg.data) if msg.type == WSMsgType.TEXT else {}
            if body.get("type") == "desired":
                async with told:
                    heard.update(a["release"] for a in body["assignments"])
                    told.notify_all()

    listener = asyncio.create_task(listen())
    big = {f"V{i}": "x" * 60_000 for i in range(3)}  # a desired state of about 180 KB

    async def deploy(release: int) -> None:
        """Deploy `release`; it must reach the reading host while a send to the other waits
        SEND_SECONDS and the watch's half of it at most, with a margin."""
        # both hosts in one batch (each is assigned the release, big spec and all); once the
        # one that does not read is cut off, a deploy skips it instead of waiting for it
        strategy = {"max_parallel": 2, "reconnect_grace": 0}
        spec = {**VALID, "env": {**big, "N": str(release)}, "strategy": strategy}
        code, body = await flotilla.api.call("POST", "/v1/apps/web/deployments", spec)
        assert code == 202, body
        async with told:
            try:  # the watch cuts a stuck send after 1 to 1.5 SEND_SECONDS; and a margin
                await asyncio.wait_for(
                    told.wait_for(lambda: release in heard), 2 * SEND_SECONDS + 5
                )
            except TimeoutError:
                raise AssertionError(f"release {release} never reached {name}") from None

    async def connected() -> dict[str, bool]:
        _, hosts = await flotilla.api.call("GET", "/v1/hosts")
        return {h["name"]: h["status"] == "connected" for h in hosts["hosts"]}

    async def both_connected() -> bool:
        return all((await connected()).values())

    async def connections() -> float:
        """The server's count of agent connections, as /metrics says it (at once, where the
        hosts' rows are written in a batch that waits out the rollouts)."""
        async with flotilla.api.session.get(flotilla.url + "/metrics") as response:
            text = await response.text()
        for family in text_string_to_metric_families(text):
            if family.name == "flotilla_agent_connections":
                return family.samples[0].value
        raise AssertionError("no flotilla_agent_connections in /metrics")

    async def cut_off() -> bool:
        return not (await connected())[stuck_name]

    try:
        await eventually(both_connected, timeout=5, interval=0.05)  # once the hub wrote them
        release = 0
        while await connections() == 2:  # until its buffers are full and it is cut
            release += 1
            assert release <= 150, "150 deploys of 180 KB and the host was not cut off"
            await deploy(release)
        await deploy(release + 1)  # and the pushes go on without it
        await eventually(cut_off, timeout=10, interval=0.1)  # GET /v1/hosts says so too
        assert await connected() == {stuck_name: False, name: True}
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await ws.close()
        await asyncio.wait_for(stuck.close(), 10)  # the server cut it: no handshake to wait for
