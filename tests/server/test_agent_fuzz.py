"""A hypothesis fuzz of the agent channel against a live server: wrong types, oversize
strings and lists, other hosts' names, foreign apps, forged event kinds and floods, from one
host's connection (reconnecting whenever the server closes it). Afterwards the server is up,
an honest host's statuses are still recorded, no GET answers 5xx, and the /metrics series
stay bounded.

Hypothesis draws the frames (a fixed seed, so a run is repeatable); they are sent from the
test's event loop, where the live server runs."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.codec import encode
from agent.protocol import Instance, Status
from tests.conftest import Flotilla
from tests.server.test_agent_door import VALID, connect, instances_of, wait_for_app

FRAMES = 400
names = st.one_of(
    st.sampled_from(["web", "db", "evil", "", "x" * 300]),
    st.text(max_size=20),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.text(max_size=5), st.booleans()
)


def instance(host: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "container_id": st.text(max_size=10),
            "name": st.text(max_size=10),
            "host": st.one_of(st.just(host), names),
            "app": names,
            "release": numbers,
            "replica": numbers,
            "deployment": numbers,
            "state": st.sampled_from(["running", "exited", "x" * 300]),
            "ready": st.one_of(st.booleans(), st.integers()),
        }
    )


def frames(host: str) -> st.SearchStrategy[str]:
    status = st.fixed_dictionaries(
        {
            "type": st.just("status"),
            "host": st.one_of(st.just(host), names),
            "generation": numbers,
            "instances": st.lists(instance(host), max_size=5)
            | instance(host).map(lambda i: [i] * 1001),  # past the protocol's cap
            "digests": st.lists(st.tuples(names, st.text(max_size=10)), max_size=3),
            "problems": st.lists(
                st.fixed_dictionaries(
                    {"app": names, "release": numbers, "reason": names, "message": names}
                ),
                max_size=3,
            ),
        }
    )
    event = st.fixed_dictionaries(
        {
            "type": st.just("event"),
            "host": st.one_of(st.just(host), names),
            "kind": st.sampled_from(
                ["drift_healed", "deployment_succeeded", "host_connected", "x" * 300]
            )
            | st.text(max_size=60),
            "app": names,
            "message": st.text(max_size=50),
        }
    )
    junk = st.sampled_from(["", "null", "[]", "{}", '{"type": "desired"}', "[" * 5000])
    # the stdlib's encoder: orjson refuses integers past 64 bits, which the fuzz sends
    as_json = st.one_of(status, event).map(json.dumps)
    return st.one_of(as_json, junk)


def drawn(host: str) -> list[str]:
    """FRAMES frames drawn by hypothesis (repeatably)."""
    found: list[str] = []

    @settings(
        max_examples=FRAMES,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(frame=frames(host))
    def collect(frame: str) -> None:
        found.append(frame)

    collect()
    return found


async def test_the_agent_channel_survives_a_fuzz(flotilla_sqlite: Flotilla) -> None:
    flotilla = flotilla_sqlite
    hostile, token = await flotilla.add_host()
    honest, honest_token = await flotilla.add_host()
    assert (await flotilla.api.call("POST", "/v1/apps/web/deployments", VALID))[0] == 202
    ws: aiohttp.ClientWebSocketResponse | None = None
    closed = 0
    for frame in drawn(hostile):
        if ws is None or ws.closed:
            ws = await connect(flotilla, hostile, token)
        try:
            await ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            closed += 1
            ws = None
        await asyncio.sleep(0)
    if ws is not None:
        await ws.close()
    assert closed >= 0
    # an honest host is still heard
    good = await connect(flotilla, honest, honest_token)
    mine = Instance("honest-1", "n", honest, "web", 1, 1, 1, "running", ready=True)
    await good.send_str(encode(Status(host=honest, generation=1, instances=(mine,))))
    web = await wait_for_app(flotilla, "web", lambda b: (honest, "honest-1") in instances_of(b))
    assert all(name in (honest, hostile) for name, _ in instances_of(web))
    for path in ("/v1/apps", "/v1/apps/web", "/v1/hosts", "/v1/events", "/v1/deployments"):
        status, _ = await flotilla.api.call("GET", path)
        assert status == 200, path
    # no series is named after what the frames made up: only the apps and hosts that exist
    apps, hosts = await labels(flotilla)
    assert apps <= {"web"}, apps
    assert hosts <= {hostile, honest}, hosts
    assert await series(flotilla) < 1000
    await good.close()


async def labels(flotilla: Flotilla) -> tuple[set[str], set[str]]:
    """The values of the app and host labels /metrics shows."""
    async with flotilla.api.session.get(flotilla.url + "/metrics") as response:
        text = await response.text()
    return set(re.findall(r'\bapp="([^"]*)"', text)), set(re.findall(r'\bhost="([^"]*)"', text))


async def series(flotilla: Flotilla) -> int:
    """How many series /metrics shows."""
    async with flotilla.api.session.get(flotilla.url + "/metrics") as response:
        text = await response.text()
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))
