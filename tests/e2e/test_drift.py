"""Agents heal drift on their own containers and never touch anyone else's."""

from __future__ import annotations

import asyncio

from tests.conftest import Flotilla, Images
from tests.harness import Engine, agent, eventually, fetch_text, published_port, unique


async def _deployed(f: Flotilla, images: Images, host: str) -> int:
    d = await f.api.deploy("web", {"image": images.v1, "ports": [{"container": 80}]})
    assert (await f.api.wait(d["id"]))["status"] == "succeeded"
    port = published_port(await f.api.app("web"), host, 1)
    assert port is not None
    return port


async def _running_port(f: Flotilla, host: str) -> int | None:
    return published_port(await f.api.app("web"), host, 1)


async def _drift_events(f: Flotilla) -> list[dict]:
    status, body = await f.api.call("GET", "/v1/events?app=web")
    assert status == 200
    return [e for e in body["events"] if e["kind"] == "drift_healed"]


async def test_removed_container_comes_back_and_is_recorded(
    flotilla_sqlite: Flotilla, images: Images, engine: Engine, docker_url: str
):
    f = flotilla_sqlite
    host, token = await f.add_host()
    async with agent(f.url, host, token, docker_url):
        await _deployed(f, images, host)
        (old,) = engine.containers(host, "web")
        old.remove(force=True)

        async def healed() -> list:
            running = engine.containers(host, "web", all=False)
            return [c for c in running if c.id != old.id]

        (new,) = await eventually(healed, timeout=10)
        assert new.labels["flotilla.release"] == "1"

        async def answers() -> str | None:
            port = await _running_port(f, host)
            return await fetch_text(port) if port else None

        assert await eventually(answers, timeout=10) == "v1"
        events = await eventually(lambda: _drift_events(f), timeout=10)
        assert events[0]["host"] == host
        assert "removed" in events[0]["message"]


async def test_stopped_container_is_started_again(
    flotilla_sqlite: Flotilla, images: Images, engine: Engine, docker_url: str
):
    f = flotilla_sqlite
    host, token = await f.add_host()
    async with agent(f.url, host, token, docker_url):
        await _deployed(f, images, host)
        (container,) = engine.containers(host, "web")
        await asyncio.to_thread(container.stop, timeout=1)

        async def running_again() -> bool:
            container.reload()
            return container.status == "running"

        assert await eventually(running_again, timeout=10)
        assert len(engine.containers(host, "web")) == 1  # started, not recreated
        assert await eventually(lambda: _drift_events(f), timeout=10)


async def test_foreign_containers_are_never_touched(
    flotilla_sqlite: Flotilla, images: Images, engine: Engine, docker_url: str
):
    f = flotilla_sqlite
    host, token = await f.add_host()
    other_host = unique("other")
    plain = engine.client.containers.run(images.v1, detach=True, name=unique("plain-"))
    lookalike = engine.client.containers.run(
        images.v1,
        detach=True,
        name=unique("lookalike-"),
        labels={
            "flotilla.app": "web",
            "flotilla.release": "7",
            "flotilla.host": other_host,
            "flotilla.deployment": "1",
        },
    )
    stopped = engine.client.containers.create(images.v1, name=unique("stopped-"))
    try:
        async with agent(f.url, host, token, docker_url):
            await _deployed(f, images, host)
            # two more deploys make the agent stop and retire old releases
            for image in (images.v2, images.v3):
                d = await f.api.deploy("web", {"image": image, "ports": [{"container": 80}]})
                assert (await f.api.wait(d["id"]))["status"] == "succeeded"
            for c in (plain, lookalike):
                c.reload()
                assert c.status == "running", c.name
            stopped.reload()
            assert stopped.status == "created"
    finally:
        for c in (plain, lookalike, stopped):
            c.remove(force=True)
