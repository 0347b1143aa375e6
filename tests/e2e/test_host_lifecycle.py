"""Hosts come and go (issue 20 item 2): cordon, drain, uncordon and remove a host, and a
deployment skips hosts that were away when it started, which converge when they come back.
Against the real Docker Engine, with in-process agents."""

from __future__ import annotations

from typing import Any

import docker.errors

from tests.conftest import Flotilla, Images
from tests.e2e.fleet import fleet, simple
from tests.harness import Engine, agent, eventually


async def _containers(engine: Engine, host: str, app: str) -> int:
    try:
        return len(engine.containers(host, app))
    except docker.errors.NotFound:  # one vanished while the engine listed them
        return -1


async def _events(f: Flotilla, kind: str) -> list[dict[str, Any]]:
    status, body = await f.api.call("GET", "/v1/events?limit=1000")
    assert status == 200
    return [e for e in body["events"] if e["kind"] == kind]


async def _host(f: Flotilla, name: str) -> dict[str, Any]:
    status, body = await f.api.call("GET", "/v1/hosts")
    assert status == 200
    return next(h for h in body["hosts"] if h["name"] == name)


async def test_cordon_drain_uncordon_and_remove(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str, engine: Engine
) -> None:
    f = flotilla_sqlite
    async with fleet(f, docker_url, size=2) as fl:
        a, b = fl.hosts
        d1 = await f.api.deploy("web", simple(images.v1, strategy={"max_parallel": 2}))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        await fl.serving("web", "v1")

        # cordon: no target of new deployments; what runs there stays
        status, body = await f.api.call("POST", f"/v1/hosts/{b}/cordon")
        assert status == 200 and body["cordoned"] is True and body["schedulable"] is False, body
        assert (await _host(f, b))["cordoned"] is True
        assert (await _host(f, a))["schedulable"] is True
        d2 = await f.api.deploy("web", simple(images.v2))
        done = await f.api.wait(d2["id"])
        assert done["status"] == "succeeded" and [h["name"] for h in done["hosts"]] == [a]
        await fl.serving("web", "v2", hosts=[a])
        await fl.serving("web", "v1", hosts=[b])  # not dropped: a cordoned host keeps it
        assert await fl.releases_running("web") == {a: 2, b: 1}

        # not drained: not removed
        status, problem = await f.api.call("DELETE", f"/v1/hosts/{b}")
        assert status == 409 and problem["code"] == "host_not_drained", problem
        assert await _containers(engine, b, "web") >= 1

        # drain: refused while an active deployment targets the host
        crashing = {"healthy_deadline": 3, "auto_rollback": False}
        d3 = await f.api.deploy("web", simple(images.crash, strategy=crashing))

        async def running() -> bool:
            return (await f.api.deployment(d3["id"]))["status"] == "running"

        await eventually(running, timeout=30)
        status, problem = await f.api.call("POST", f"/v1/hosts/{a}/drain")
        assert status == 409 and problem["code"] == "host_in_use", problem
        assert (await _host(f, a))["cordoned"] is False  # the refusal changed nothing
        assert (await f.api.wait(d3["id"]))["status"] == "failed"

        # drain b: cordoned (already), its containers stopped and removed, events recorded
        status, body = await f.api.call("POST", f"/v1/hosts/{b}/drain")
        assert status == 200 and body["removed"] == ["web"] and body["cordoned"] is True, body

        async def gone_from_b() -> bool:
            return await _containers(engine, b, "web") == 0

        assert await eventually(gone_from_b, timeout=30)
        assert await _containers(engine, a, "web") >= 1
        (drained,) = await _events(f, "host_drained")
        assert drained["host"] == b and "web" in drained["message"]
        assert any(e["host"] == b for e in await _events(f, "app_removed"))
        assert [e["host"] for e in await _events(f, "host_cordoned")] == [b]

        # uncordon a host: a target again
        for action in ("cordon", "uncordon"):
            status, body = await f.api.call("POST", f"/v1/hosts/{a}/{action}")
            assert status == 200 and body["cordoned"] is (action == "cordon"), body
        assert [e["host"] for e in await _events(f, "host_uncordoned")] == [a]

        # a drained host is removed
        status, _ = await f.api.call("DELETE", f"/v1/hosts/{b}")
        assert status == 204
        assert b not in {h["name"] for h in (await f.api.call("GET", "/v1/hosts"))[1]["hosts"]}

        for path in ("/v1/hosts/nope/cordon", "/v1/hosts/nope/drain", "/v1/hosts/Bad_/uncordon"):
            status, problem = await f.api.call("POST", path)
            assert status == 404 and problem["errors"][0]["field"] == "name", (path, problem)


async def test_a_deployment_skips_hosts_away_when_it_starts_and_they_converge_later(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str, engine: Engine
) -> None:
    f = flotilla_sqlite
    away, away_token = await f.add_host(f"{f.hosts_prefix}z")  # never connected
    async with fleet(f, docker_url, size=1) as fl:
        (here,) = fl.hosts
        # "wait": the away host holds the deployment until its deadline fails it
        waiting = {
            "disconnected": "wait",
            "reconnect_grace": 0,
            "healthy_deadline": 2,
            "auto_rollback": False,
        }
        d0 = await f.api.deploy("web", simple(images.v1, strategy=waiting))
        failed = await f.api.wait(d0["id"])
        assert failed["status"] in ("failed", "rolled_back"), failed
        assert "disconnected" in (failed["error"] or ""), failed

        # "skip" (the default): listed as skipped, done for the deployment's success
        d1 = await f.api.deploy("web", simple(images.v1, strategy={"reconnect_grace": 0}))
        done = await f.api.wait(d1["id"])
        assert done["status"] == "succeeded", done
        states = {h["name"]: h["state"] for h in done["hosts"]}
        assert states == {here: "healthy", away: "skipped"}
        await fl.serving("web", "v1")
        # it comes back: it converges to the release
        async with agent(f.url, away, away_token, docker_url):
            await fl.serving("web", "v1", hosts=[away])
            assert (await fl.releases_running("web"))[away] == d1["release"]
