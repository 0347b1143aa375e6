"""Every agent message is parsed once, at the door, into its strict typed model: a message
of the wrong shape closes that agent's connection with a clear reason, and nothing of it
reaches a reader (GET /v1/apps/{app} keeps answering). And an agent that reads nothing
holds up no one: not the other hosts' pushes, not its own return on a new connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType
from prometheus_client.parser import text_string_to_metric_families

from agent.codec import encode
from agent.protocol import Event, Hello, Instance, Status
from server.host_log import CAUSES
from server.hub import SEND_SECONDS
from tests.conftest import Flotilla, _flotilla
from tests.harness import Engine, eventually

VALID = {"image": "web:v1", "command": ["/bin/sh", "-c", "sleep 3600"]}


async def connect(
    flotilla: Flotilla, name: str, token: str, session: aiohttp.ClientSession | None = None
) -> aiohttp.ClientWebSocketResponse:
    """A host's agent connection (on `session`, else the API client's), hello said."""
    ws = await (session or flotilla.api.session).ws_connect(
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

    async def counted_as_a_bad_frame() -> bool:
        return (await disconnects(flotilla))["bad_frame"] == 1

    await eventually(counted_as_a_bad_frame, timeout=10, interval=0.1)


def small_receive_buffer(address: aiohttp.AddrInfoType) -> socket.socket:
    """A client socket with a receive buffer of a few KB: Linux would otherwise grow it up to
    net.ipv4.tcp_rmem's maximum (32 MB on some machines) before a sender must wait."""
    family, kind, proto, _, _ = address
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


@contextlib.asynccontextmanager
async def not_reading(
    flotilla: Flotilla, name: str, token: str
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A host's agent that says hello, then reads nothing (stuck, or hostile). Its socket
    takes a few KB; the server's own buffers take a few MB more (Linux grows a socket's send
    buffer up to net.ipv4.tcp_wmem's maximum), then a send to it waits."""
    connector = aiohttp.TCPConnector(socket_factory=small_receive_buffer)
    async with aiohttp.ClientSession(connector=connector) as session:
        ws = await connect(flotilla, name, token, session)
        try:
            yield ws
        finally:  # the server cut it, or the test failed: the session's end closes it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.close(), 5)


async def closed(ws: aiohttp.ClientWebSocketResponse, within: float) -> None:
    """Read what the connection still holds until it ends (the server closed or cut it)."""
    ends = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)
    async with asyncio.timeout(within):
        while (await ws.receive()).type not in ends:
            pass


class Told:
    """The releases of app web an agent's connection was told of, as they come."""

    def __init__(self, name: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.name = name
        self.releases: set[int] = set()
        self._news = asyncio.Condition()
        self._listener = asyncio.create_task(self._listen(ws))

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            body = orjson.loads(msg.data) if msg.type == WSMsgType.TEXT else {}
            if body.get("type") == "desired":
                async with self._news:
                    self.releases.update(a["release"] for a in body["assignments"])
                    self._news.notify_all()

    async def of(self, release: int, within: float) -> None:
        """Wait until it was told of `release`; fail after `within` seconds."""
        async with self._news:
            try:
                await asyncio.wait_for(
                    self._news.wait_for(lambda: release in self.releases), within
                )
            except TimeoutError:
                raise AssertionError(f"release {release} never reached {self.name}") from None

    async def stop(self) -> None:
        """Stop listening; a listener that failed fails the test with its own error."""
        self._listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._listener


BIG = {f"V{i}": "x" * 60_000 for i in range(3)}  # a desired state of about 180 KB
# a deploy reaches a reading host while a send to another waits for SEND_SECONDS and the
# watch's half of it at most (the watch cuts a stuck send after 1 to 1.5 SEND_SECONDS)
REACHES_WITHIN = 2 * SEND_SECONDS + 5


async def deploy_big(flotilla: Flotilla, release: int) -> None:
    """Deploy a release of web, its desired state about 180 KB, to every host in one batch
    (a host that was cut off is skipped, not waited for)."""
    strategy = {"max_parallel": 2, "reconnect_grace": 0}
    spec = {**VALID, "env": {**BIG, "N": str(release)}, "strategy": strategy}
    code, body = await flotilla.api.call("POST", "/v1/apps/web/deployments", spec)
    assert code == 202, body


async def connected(flotilla: Flotilla) -> dict[str, bool]:
    """Each host's connection as GET /v1/hosts shows it."""
    _, hosts = await flotilla.api.call("GET", "/v1/hosts")
    return {h["name"]: h["status"] == "connected" for h in hosts["hosts"]}


async def counted(flotilla: Flotilla, metric: str) -> float:
    """A metric without labels as /metrics says it now (a counter by its family's name)."""
    async with flotilla.api.session.get(flotilla.url + "/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        if family.name == metric:
            return float(family.samples[0].value)
    raise AssertionError(f"no {metric} in /metrics")


async def disconnects(flotilla: Flotilla) -> dict[str, float]:
    """flotilla_agent_disconnects_total by cause, as /metrics says it now."""
    async with flotilla.api.session.get(flotilla.url + "/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        if family.name == "flotilla_agent_disconnects":
            return {s.labels["cause"]: s.value for s in family.samples if s.name.endswith("_total")}
    raise AssertionError("no flotilla_agent_disconnects in /metrics")


async def connections(flotilla: Flotilla) -> float:
    """The server's count of agent connections, as /metrics says it (at once, where the
    hosts' rows are written in a batch that waits out the rollouts)."""
    return await counted(flotilla, "flotilla_agent_connections")


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
    async with not_reading(flotilla, stuck_name, stuck_token):
        ws = await connect(flotilla, name, token)
        told = Told(name, ws)

        async def both_connected() -> bool:
            return all((await connected(flotilla)).values())

        async def cut_off() -> bool:
            return not (await connected(flotilla))[stuck_name]

        try:
            await eventually(both_connected, timeout=5, interval=0.05)  # once written
            release = 0
            while await connections(flotilla) == 2:  # until its buffers are full and it is cut
                release += 1
                assert release <= 150, "150 deploys of 180 KB and the host was not cut off"
                await deploy_big(flotilla, release)
                await told.of(release, REACHES_WITHIN)
            await deploy_big(flotilla, release + 1)  # and the pushes go on without it
            await told.of(release + 1, REACHES_WITHIN)
            await eventually(cut_off, timeout=10, interval=0.1)  # GET /v1/hosts says so too
            assert await connected(flotilla) == {stuck_name: False, name: True}
            _, events = await flotilla.api.call("GET", "/v1/events")
            cut = [e for e in events["events"] if e["kind"] == "host_send_timed_out"]
            assert [e["host"] for e in cut] == [stuck_name]
            assert "the agent took no frame in" in cut[0]["message"]
            # as it happened (the list is newest first): the send timed out, then it was away
            said = [e for e in events["events"] if e["host"] == stuck_name]
            assert [e["kind"] for e in said[:2]] == ["host_disconnected", "host_send_timed_out"]
            assert said[0]["message"].startswith("agent disconnected: cut by the server: a frame")
            assert await counted(flotilla, "flotilla_agent_send_timeouts") == 1
            assert (await disconnects(flotilla))["send_timeout"] == 1
        finally:
            await told.stop()
            await ws.close()


async def test_an_agent_back_on_a_new_connection_while_a_send_to_its_old_one_waits_stays(
    flotilla_sqlite: Flotilla,
) -> None:
    """An agent that hung while the server sent to it, and comes back on a new connection
    (restarted): the old connection is closed (cut, as it takes no close frame either), and
    the new one gets the host's desired state and stays, though the watch on the old send
    fires meanwhile. (Had the watch looked the host's connection up when it fired, it would
    have cut the new one.) The new connection comes SEND_SECONDS * 0.7 after the send began
    to wait: the watch fires on it 1.5 to 4 s later, before the old connection's close gives
    up (SEND_SECONDS after the new one came)."""
    flotilla = flotilla_sqlite
    name, token = await flotilla.add_host()
    other, other_token = await flotilla.add_host()
    async with not_reading(flotilla, name, token) as old:
        reading = await connect(flotilla, other, other_token)
        told_other = Told(other, reading)
        try:
            release = 0
            while True:  # until a send to `name` waits: the push loop waits for it, and the
                release += 1  # other host hears of no later release
                assert release <= 150, "150 deploys of 180 KB and no send waited"
                await deploy_big(flotilla, release)
                try:
                    await told_other.of(release, SEND_SECONDS * 0.7)
                except AssertionError:
                    break
            ws = await connect(flotilla, name, token)
            told = Told(name, ws)
            try:
                await told.of(release, SEND_SECONDS + 5)  # once the old connection is closed
                await closed(old, 10)
                await told_other.of(release, 5)  # the push loop goes on
                assert not ws.closed
                await deploy_big(flotilla, release + 1)
                await told.of(release + 1, 5)
                await told_other.of(release + 1, 5)
            finally:
                await told.stop()
                await ws.close()
        finally:
            await told_other.stop()
            await reading.close()


async def disconnected(flotilla: Flotilla, name: str) -> str | None:
    """The message of the host's newest host_disconnected event, if any yet."""
    _, events = await flotilla.api.call("GET", "/v1/events")
    said = [
        e["message"]
        for e in events["events"]
        if e["kind"] == "host_disconnected" and e["host"] == name
    ]
    return said[0] if said else None


async def cut_off_by_admin(flotilla: Flotilla, method: str, path: str, expected: int) -> str:
    """A new host's connected agent, then the admin call `method` `path` (the host's name in
    its braces), answered `expected`; what the host's disconnection event says, once the
    agent has read to the end, as an agent does."""
    name, token = await flotilla.add_host()
    ws = await connect(flotilla, name, token)
    await eventually(lambda: connections(flotilla), timeout=5, interval=0.05)
    status_code, _ = await flotilla.api.call(method, path.format(name))
    assert status_code == expected
    while (await asyncio.wait_for(ws.receive(), 10)).type == WSMsgType.TEXT:
        pass
    said: str = await eventually(lambda: disconnected(flotilla, name), timeout=10, interval=0.1)
    return said


async def test_a_disconnection_says_why(flotilla_sqlite: Flotilla) -> None:
    """`flotilla events` tells an ops engineer why an agent went away: a bad message, or a
    close (with its code); /metrics counts each by its cause."""
    flotilla = flotilla_sqlite
    # every cause is counted from the start, at 0 (an alert on increase() sees the first)
    assert await disconnects(flotilla) == dict.fromkeys(CAUSES, 0.0)
    bad_name, bad_token = await flotilla.add_host()
    ws = await connect(flotilla, bad_name, bad_token)
    await ws.send_str("[1, 2]")
    while (await asyncio.wait_for(ws.receive(), 10)).type == WSMsgType.TEXT:
        pass  # the desired state pushed on connect, then the close frame (answered)
    said = await eventually(lambda: disconnected(flotilla, bad_name), timeout=10, interval=0.1)
    assert said.startswith("agent disconnected: a bad message: ")
    await ws.close()

    name, token = await flotilla.add_host()
    ws = await connect(flotilla, name, token)
    await eventually(lambda: connections(flotilla), timeout=5, interval=0.05)
    await ws.close()  # an agent stopping: code 1000
    said = await eventually(lambda: disconnected(flotilla, name), timeout=10, interval=0.1)
    assert said == "agent disconnected: the agent closed the connection (close code 1000)"

    # the server's own closes: an admin rotates a host's token, or removes a host
    said = await cut_off_by_admin(flotilla, "POST", "/v1/hosts/{}/token", 201)
    assert said == "agent disconnected: its token was rotated (close code 4004)"
    said = await cut_off_by_admin(flotilla, "DELETE", "/v1/hosts/{}", 204)
    assert said == "agent disconnected: the host was removed (close code 4005)"
    counts = {cause: n for cause, n in (await disconnects(flotilla)).items() if n}
    assert counts == {"bad_message": 1, "agent": 1, "rotated": 1, "removed": 1}


@pytest.fixture
async def quick_heartbeat(
    sqlite_url: str, tmp_path: Path, engine: Engine
) -> AsyncIterator[Flotilla]:
    """A server that pings each agent every 0.5 s (not 20): one that answers no ping is
    disconnected within about a second."""
    async for f in _flotilla(sqlite_url, tmp_path, engine, agent_heartbeat=0.5):
        yield f


async def test_an_agent_that_answers_no_heartbeat_is_disconnected_as_such(
    quick_heartbeat: Flotilla,
) -> None:
    """An agent (or a network) that hangs answers no ping: the server closes its socket and
    says so. It is not a bad frame: the refused-reports count, whose alert speaks of broken
    or hostile agents, stays as it was."""
    flotilla = quick_heartbeat
    name, token = await flotilla.add_host()
    async with aiohttp.ClientSession() as session:
        ws = await connect(flotilla, name, token, session)  # and never reads: no pong
        said = await eventually(lambda: disconnected(flotilla, name), timeout=10, interval=0.1)
        assert said == "agent disconnected: no answer to the server's heartbeat"
        await ws.close()
    assert (await disconnects(flotilla))["heartbeat"] == 1
    async with flotilla.api.session.get(flotilla.url + "/metrics") as response:
        text = await response.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    refused = families["flotilla_agent_reports_refused"]  # the counter is there, and
    assert "frame" not in {s.labels["reason"] for s in refused.samples}  # no frame refused
