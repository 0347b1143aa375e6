"""Apps come and go (issue 20 item 3): a release that selects fewer hosts removes the app from
the others once it is healthy, and DELETE /v1/apps/{app} removes it everywhere but keeps its
history. Against the real Docker Engine."""

from __future__ import annotations

import contextlib
import json

import docker.errors

from server.db import tokens
from server.keys import SESSIONS
from tests.conftest import Flotilla, Images
from tests.e2e.fleet import fleet, simple
from tests.harness import Engine, agent, eventually, finish, start_cli


async def _containers(engine: Engine, host: str, app: str) -> int:
    try:
        return len(engine.containers(host, app))
    except docker.errors.NotFound:  # one vanished while the engine listed them
        return -1


async def _events(f: Flotilla, kind: str) -> list[dict]:
    status, body = await f.api.call("GET", "/v1/events?limit=1000")
    assert status == 200
    return [e for e in body["events"] if e["kind"] == kind]


async def test_a_release_that_selects_fewer_hosts_removes_the_app_from_the_others(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str, engine: Engine
):
    f = flotilla_sqlite
    async with fleet(f, docker_url, size=2) as fl:
        a, b = fl.hosts
        d1 = await f.api.deploy("web", simple(images.v1, strategy={"max_parallel": 2}))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        await fl.serving("web", "v1")

        d2 = await f.api.deploy("web", simple(images.v2, hosts={"names": [a]}))
        assert (await f.api.wait(d2["id"]))["status"] == "succeeded"
        await fl.serving("web", "v2", hosts=[a])

        async def gone_from_b() -> bool:
            return await _containers(engine, b, "web") == 0

        assert await eventually(gone_from_b, timeout=30)  # not only stopped: removed
        assert await _containers(engine, a, "web") >= 1

        async def b_runs_nothing() -> bool:
            return (await fl.releases_running("web")).get(b) is None

        assert await eventually(b_runs_nothing, timeout=30)
        (removed,) = await _events(f, "app_removed")
        assert b in removed["message"] and a not in removed["message"].split(":")[0]


async def test_delete_app_removes_it_everywhere_and_keeps_its_history(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str, engine: Engine
):
    f = flotilla_sqlite
    async with fleet(f, docker_url, size=2) as fl:
        d1 = await f.api.deploy("web", simple(images.v1, strategy={"max_parallel": 2}))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        await fl.serving("web", "v1")

        async with f.server.app[SESSIONS].begin() as session:
            reader = await tokens.create_token(session, "reader", ["read"])
            deployer = await tokens.create_token(session, "ci", ["deploy"])
        for token in (reader, deployer):
            status, problem = await f.api.call("DELETE", "/v1/apps/web", token=token)
            assert (status, problem["code"]) == (403, "forbidden")
        status, problem = await f.api.call("DELETE", "/v1/apps/nope")
        assert status == 404, problem

        status, body = await f.api.call("DELETE", "/v1/apps/web")
        assert status == 200, body
        assert body == {"app": "web", "removed_from": sorted(fl.hosts)}

        async def all_gone() -> bool:
            counts = [await _containers(engine, h, "web") for h in fl.hosts]
            return counts == [0, 0]

        assert await eventually(all_gone, timeout=30)
        _, releases = await f.api.call("GET", "/v1/apps/web/releases")
        assert [r["number"] for r in releases["releases"]] == [1]  # history kept
        _, apps = await f.api.call("GET", "/v1/apps")
        assert {"name": "web", "current_release": None, "last_release": 1} in apps["apps"]
        assert len(await _events(f, "app_removed")) == 1

        status, problem = await f.api.call("POST", "/v1/apps/web/rollback", {})
        assert status == 409  # it runs nowhere: nothing to roll back

        d2 = await f.api.deploy("web", simple(images.v2, strategy={"max_parallel": 2}))
        assert (await f.api.wait(d2["id"]))["status"] == "succeeded"  # back again
        await fl.serving("web", "v2")


async def test_delete_app_is_refused_while_a_deployment_is_under_way(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with fleet(f, docker_url, size=1):
        d1 = await f.api.deploy("web", simple(images.v1, strategy={"canary": 1}))
        status, problem = await f.api.call("DELETE", "/v1/apps/web")
        assert status == 409 and problem["code"] == "deployment_in_progress", problem
        await f.api.call("POST", f"/v1/deployments/{d1['id']}/cancel")
        await f.api.wait(d1["id"])
        flags = ["--server", f.url, "--token", f.api.token]
        ran = await finish(await start_cli("app", "rm", "web", *flags))
        assert ran.code == 0 and "Removed app 'web'" in ran.out, ran
        ran = await finish(await start_cli("app", "rm", "web", *flags, "-o", "json"))
        assert ran.code == 0 and json.loads(ran.out)["removed_from"] == [], ran


def _volumes(engine: Engine) -> set[str]:
    return {v.name for v in engine.client.volumes.list()}


async def test_delete_app_keeps_its_volumes_unless_asked(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str, engine: Engine
):
    f = flotilla_sqlite
    stranger = engine.client.volumes.create("not-flotillas-vol", labels={"flotilla.app": "vol"})
    try:
        async with fleet(f, docker_url, size=2) as fl:
            data = {"volumes": [{"source": "data", "target": "/data"}]}
            spec = simple(images.v1, strategy={"max_parallel": 2}, **data)
            for app in ("vol", "volother"):
                d = await f.api.deploy(app, spec)
                assert (await f.api.wait(d["id"]))["status"] == "succeeded"
            assert {"flotilla-vol-data", "flotilla-volother-data"} <= _volumes(engine)

            status, body = await f.api.call("DELETE", "/v1/apps/vol")  # volumes kept
            assert status == 200 and "volumes" not in body, body

            async def no_containers() -> bool:
                return [await _containers(engine, h, "vol") for h in fl.hosts] == [0, 0]

            assert await eventually(no_containers, timeout=30)
            assert "flotilla-vol-data" in _volumes(engine)

            d = await f.api.deploy("vol", spec)
            assert (await f.api.wait(d["id"]))["status"] == "succeeded"
            status, problem = await f.api.call("DELETE", "/v1/apps/vol?volumes=yes")
            assert status == 422 and problem["errors"][0]["field"] == "volumes", problem
            assert (await fl.releases_running("vol")) != {}  # nothing changed

            flags = ["--server", f.url, "--token", f.api.token]
            ran = await finish(await start_cli("app", "rm", "vol", "--volumes", *flags))
            assert ran.code == 0 and "flotilla-vol-data" in ran.out, ran

            async def volume_gone() -> bool:
                return "flotilla-vol-data" not in _volumes(engine)

            assert await eventually(volume_gone, timeout=30)
            left = _volumes(engine)
            assert {"flotilla-volother-data", "not-flotillas-vol"} <= left
            assert [await _containers(engine, h, "volother") for h in fl.hosts] == [1, 1]
            (event,) = [e for e in await _events(f, "app_removed") if "volumes" in e["message"]]
            assert "flotilla-vol-data" in event["message"] and fl.hosts[0] in event["message"]

            # a later deploy of the same name keeps its new volume: the removal no longer applies
            d = await f.api.deploy("vol", spec)
            assert (await f.api.wait(d["id"]))["status"] == "succeeded"
            await fl.serving("vol", "v1")
            assert "flotilla-vol-data" in _volumes(engine)
            status, body = await f.api.call("DELETE", "/v1/apps/vol?volumes=true")
            assert status == 200, body
            assert body["volumes"] == {"names": ["flotilla-vol-data"], "hosts": sorted(fl.hosts)}
            assert await eventually(volume_gone, timeout=30)
    finally:
        stranger.remove(force=True)
        for name in ("flotilla-vol-data", "flotilla-volother-data"):  # what this test made
            # (gone, or still used by a container the fleet's cleanup removes later)
            with contextlib.suppress(docker.errors.APIError):
                engine.client.volumes.get(name).remove(force=True)


async def test_an_agent_away_at_the_removal_removes_the_volumes_when_it_is_back(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str, engine: Engine
):
    f = flotilla_sqlite
    host, token = await f.add_host(f"{f.hosts_prefix}a")
    spec = simple(images.v1, volumes=[{"source": "keep", "target": "/data"}])
    async with agent(f.url, host, token, docker_url):
        d = await f.api.deploy("away", spec)
        assert (await f.api.wait(d["id"]))["status"] == "succeeded"
    # the agent is gone (its container runs on): the removal waits for it
    status, body = await f.api.call("DELETE", "/v1/apps/away?volumes=true")
    assert status == 200 and body["volumes"]["hosts"] == [host], body
    assert "flotilla-away-keep" in _volumes(engine)
    assert await _containers(engine, host, "away") == 1

    async with agent(f.url, host, token, docker_url):

        async def all_gone() -> bool:
            gone = "flotilla-away-keep" not in _volumes(engine)
            return gone and await _containers(engine, host, "away") == 0

        assert await eventually(all_gone, timeout=30)
