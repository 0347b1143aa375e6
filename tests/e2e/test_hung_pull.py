"""A pull from a registry that never answers holds nothing up (issue 20 item 4), against the
real Docker Engine: a TCP listener on 127.0.0.1 accepts connections and never answers (the
Engine treats 127.0.0.1 registries as insecure-allowed, so it really tries). A deploy that
supersedes the one whose pull hangs is acted on at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.conftest import Flotilla, Images
from tests.e2e.fleet import fleet, simple
from tests.harness import eventually


@pytest.fixture
async def blackhole() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A registry's port that accepts connections and never answers, and the connections it
    holds; closed at the end."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # kept open, never written to

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], held
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


async def test_a_deploy_superseding_a_hung_pull_takes_effect_within_seconds(
    flotilla_sqlite: Flotilla,
    images: Images,
    docker_url: str,
    blackhole: tuple[int, list[asyncio.StreamWriter]],
) -> None:
    f = flotilla_sqlite
    port, held = blackhole
    async with fleet(f, docker_url, size=1) as fl:
        d1 = await f.api.deploy("web", simple(images.v1))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        await fl.serving("web", "v1")

        hung = simple(f"127.0.0.1:{port}/x:1", strategy={"auto_rollback": False})
        d2 = await f.api.deploy("web", hung)

        async def updating() -> bool:
            d = await f.api.deployment(d2["id"])
            return [h["state"] for h in d["hosts"]] == ["updating"]

        await eventually(updating, timeout=30)

        async def pulling() -> bool:  # the Engine is in the pull that hangs
            return bool(held)

        await eventually(pulling, timeout=30)
        asked = time.monotonic()
        d3 = await f.api.deploy("web", simple(images.v2))
        assert (await f.api.wait(d3["id"]))["status"] == "succeeded"
        await fl.serving("web", "v2")
        took = time.monotonic() - asked
        assert (await f.api.deployment(d2["id"]))["status"] == "superseded"
        print(f"\ndeploy superseding a hung pull served in {took:.1f}s")
        assert took < 10, took


async def test_cancelling_a_deployment_whose_pull_hangs_takes_effect_within_seconds(
    flotilla_sqlite: Flotilla,
    images: Images,
    docker_url: str,
    blackhole: tuple[int, list[asyncio.StreamWriter]],
) -> None:
    f = flotilla_sqlite
    port, held = blackhole
    async with fleet(f, docker_url, size=1) as fl:
        (host,) = fl.hosts
        d1 = await f.api.deploy("web", simple(images.v1))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        await fl.serving("web", "v1")

        d2 = await f.api.deploy("web", simple(f"127.0.0.1:{port}/x:1"))

        async def pulling() -> bool:  # the Engine is in the pull that hangs
            d = await f.api.deployment(d2["id"])
            return [h["state"] for h in d["hosts"]] == ["updating"] and bool(held)

        await eventually(pulling, timeout=30)
        asked = time.monotonic()
        status, _ = await f.api.call("POST", f"/v1/deployments/{d2['id']}/cancel")
        assert status == 202 or status == 200, status
        ended = await f.api.wait(d2["id"])
        took = time.monotonic() - asked
        print(f"\ncancel of a deployment whose pull hangs took {took:.1f}s")
        assert ended["status"] == "cancelled" and took < 5, (ended, took)
        assert [(h["name"], h["state"]) for h in ended["hosts"]] == [(host, "pending")]
        assert (await fl.releases_running("web"))[host] == d1["release"]
        await fl.serving("web", "v1")  # it never stopped serving

        # the agent no longer pulls: a deploy after it is served at once
        d3 = await f.api.deploy("web", simple(images.v2))
        assert (await f.api.wait(d3["id"], timeout=20))["status"] == "succeeded"
        await fl.serving("web", "v2")
        status, body = await f.api.call("GET", "/v1/apps/web/releases")
        outcomes = {r["number"]: r["outcome"] for r in body["releases"]}
        assert outcomes[d2["release"]] not in ("bad", "failed")  # a cancel is no verdict
