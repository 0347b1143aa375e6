"""Rollouts that ops can trust: batches, health gates, auto rollback, manual rollback."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import Flotilla, Images
from tests.e2e.fleet import fleet, simple

HTTP_HEALTH = {"type": "http", "port": 80, "path": "/health", "interval": 0.5, "retries": 2}


async def _history(f: Flotilla, deployment_id: int) -> list[dict]:
    status, body = await f.api.call("GET", f"/v1/events?deployment={deployment_id}&limit=1000")
    assert status == 200
    return list(reversed(body["events"]))


async def test_rolling_update_one_host_at_a_time(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with fleet(f, docker_url) as fl:
        d1 = await f.api.deploy("web", simple(images.v1, strategy={"max_parallel": 3}))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        await fl.serving("web", "v1")

        # sample every host's state while v2 rolls out one host at a time
        samples: list[dict[str, str]] = []
        d2 = await f.api.deploy(
            "web", simple(images.v2, health=HTTP_HEALTH, strategy={"max_parallel": 1})
        )
        while True:
            d = await f.api.deployment(d2["id"])
            samples.append({h["name"]: h["state"] for h in d["hosts"]})
            if d["status"] not in ("pending", "running"):
                break
            await asyncio.sleep(0.05)
        assert d["status"] == "succeeded", d
        for sample in samples:
            assert list(sample.values()).count("updating") <= 1, sample
        assert await fl.releases_running("web") == {h: 2 for h in fl.hosts}
        await fl.serving("web", "v2")


async def test_failing_health_rolls_back_to_previous_release(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with fleet(f, docker_url) as fl:
        d1 = await f.api.deploy("web", simple(images.v1, health=HTTP_HEALTH))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        started = time.monotonic()
        bad = await f.api.deploy(
            "web",
            simple(images.nohealth, health=HTTP_HEALTH, strategy={"healthy_deadline": 5}),
        )
        failed = await f.api.wait(bad["id"])
        assert failed["status"] == "rolled_back", failed
        assert "health" in failed["error"]
        (touched,) = [h for h in failed["hosts"] if h["state"] == "failed"]
        problems = touched["evidence"]["problems"]
        assert problems and "404" in problems[0]["message"], touched

        _status, listing = await f.api.call("GET", "/v1/deployments?app=web")
        rollback = listing["deployments"][0]
        assert rollback["kind"] == "rollback" and rollback["trigger"] == "auto"
        assert rollback["rollback_of"] == bad["id"] and rollback["release"] == 1
        assert (await f.api.wait(rollback["id"]))["status"] == "succeeded"
        await fl.serving("web", "v1")
        elapsed = time.monotonic() - started
        assert (await f.api.app("web"))["current_release"] == 1

        _, releases = await f.api.call("GET", "/v1/apps/web/releases")
        outcomes = {r["number"]: r["outcome"] for r in releases["releases"]}
        assert outcomes == {1: "succeeded", 2: "bad"}
        print(f"failing deploy to previous release serving: {elapsed:.1f}s")
