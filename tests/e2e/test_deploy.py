"""Deploying to real hosts on a real Docker Engine, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from tests.conftest import Flotilla, Images
from tests.harness import Engine, agent, eventually, fetch_text, published_port


async def test_deploy_v1_then_v2(
    flotilla: Flotilla, images: Images, engine: Engine, docker_url: str
):
    host, token = await flotilla.add_host()
    async with agent(flotilla.url, host, token, docker_url):
        d1 = await flotilla.api.deploy(
            "web", {"image": images.v1, "ports": [{"container": 80}], "message": "first"}
        )
        assert d1["status"] == "pending" and d1["release"] == 1
        done = await flotilla.api.wait(d1["id"])
        assert done["status"] == "succeeded", done
        assert done["hosts"] == [
            {
                "name": host,
                "state": "healthy",
                "error": None,
                "previous_release": None,
                "evidence": {},
            }
        ]
        app = await flotilla.api.app("web")
        assert app["current_release"] == 1
        port = published_port(app, host, 1)
        assert port is not None
        assert await eventually(lambda: fetch_text(port)) == "v1"

        (container,) = engine.containers(host, "web")
        labels = container.labels
        assert labels["flotilla.app"] == "web"
        assert labels["flotilla.release"] == "1"
        assert labels["flotilla.host"] == host
        assert labels["flotilla.deployment"] == str(d1["id"])
        assert container.name == f"flotilla-web-1-0.{host}"

        d2 = await flotilla.api.deploy("web", {"image": images.v2, "ports": [{"container": 80}]})
        assert d2["release"] == 2
        assert (await flotilla.api.wait(d2["id"]))["status"] == "succeeded"
        app = await flotilla.api.app("web")
        assert app["current_release"] == 2
        port2 = published_port(app, host, 2)
        assert port2 is not None
        assert await eventually(lambda: fetch_text(port2)) == "v2"

        async def v1_stopped() -> bool:
            running = engine.containers(host, "web", all=False)
            return [c.labels["flotilla.release"] for c in running] == ["2"]

        assert await eventually(v1_stopped)
        assert await fetch_text(port) is None  # v1 no longer answers

        status, releases = await flotilla.api.call("GET", "/v1/apps/web/releases")
        assert status == 200
        assert [r["number"] for r in releases["releases"]] == [2, 1]
        assert releases["releases"][1]["message"] == "first"
        assert releases["releases"][1]["created_by"] == "admin"
        assert releases["releases"][1]["digest"]  # recorded once the host had the image


async def test_label_selector_reaches_only_matching_host(
    flotilla: Flotilla, images: Images, engine: Engine, docker_url: str
):
    web_host, web_token = await flotilla.add_host(role="web")
    db_host, db_token = await flotilla.add_host(role="db")
    async with (
        agent(flotilla.url, web_host, web_token, docker_url),
        agent(flotilla.url, db_host, db_token, docker_url),
    ):
        d = await flotilla.api.deploy(
            "front",
            {
                "image": images.v1,
                "ports": [{"container": 80}],
                "hosts": {"labels": {"role": "web"}},
            },
        )
        done = await flotilla.api.wait(d["id"])
        assert done["status"] == "succeeded"
        assert [h["name"] for h in done["hosts"]] == [web_host]
        assert len(engine.containers(web_host, "front")) == 1
        await asyncio.sleep(1)  # give a wrong push the time to show up
        assert engine.containers(db_host) == []

        status, hosts = await flotilla.api.call("GET", "/v1/hosts")
        assert status == 200
        by_name = {h["name"]: h for h in hosts["hosts"]}
        assert by_name[web_host]["status"] == "connected"
        assert by_name[web_host]["labels"] == {"role": "web"}
        assert by_name[web_host]["docker_version"]
