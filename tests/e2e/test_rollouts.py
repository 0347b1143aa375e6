"""Rollouts that ops can trust: batches, health gates, auto rollback, manual rollback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.conftest import Flotilla, Images
from tests.e2e.fleet import fleet, simple
from tests.harness import Engine, eventually, fetch_text, free_port

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


async def test_crashing_release_rolls_back_with_exit_code_and_logs(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with fleet(f, docker_url) as fl:
        d1 = await f.api.deploy("web", simple(images.v1))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        bad = await f.api.deploy("web", simple(images.crash, strategy={"healthy_deadline": 5}))
        failed = await f.api.wait(bad["id"])
        assert failed["status"] == "rolled_back", failed
        (touched,) = [h for h in failed["hosts"] if h["state"] == "failed"]
        (problem,) = touched["evidence"]["problems"]
        assert problem["reason"] == "exited" and problem["exit_code"] == 3
        assert "crashing" in problem["logs"]
        assert "exited with code 3" in failed["error"]
        rollback = await _auto_rollback_of(f, bad["id"])
        assert (await f.api.wait(rollback["id"]))["status"] == "succeeded"
        await fl.serving("web", "v1")
        assert await fl.releases_running("web") == {h: 1 for h in fl.hosts}


@pytest.mark.parametrize(
    "strategy",
    [{"max_parallel": 1}, {"max_parallel": 3}, {"max_parallel": 3, "order": "stop-first"}],
    ids=["pre-pull round", "one batch", "one batch stop-first"],
)
async def test_missing_image_fails_before_anything_stops(
    flotilla_sqlite: Flotilla,
    images: Images,
    engine: Engine,
    docker_url: str,
    strategy: dict[str, Any],
):
    """Rolling: the pre-pull round fails it before any host is assigned. One batch (no
    pre-pull round): every host is assigned, and each agent's failed pull stops nothing,
    not even with stop-first."""
    f = flotilla_sqlite
    async with fleet(f, docker_url) as fl:
        d1 = await f.api.deploy("web", simple(images.v1, strategy={"max_parallel": 3}))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        before = _starts(engine, fl.hosts)
        # nothing listens on 127.0.0.1:1: the pull fails at once, on every host
        bad = await f.api.deploy(
            "web", simple("127.0.0.1:1/flotilla/missing:v9", strategy=strategy)
        )
        failed = await f.api.wait(bad["id"])
        assert failed["status"] == "rolled_back", failed
        assert "pull" in failed["error"]
        if strategy["max_parallel"] == 1:
            assert all(h["state"] in ("pending", "failed") for h in failed["hosts"])
        evidence = [p for h in failed["hosts"] for p in h["evidence"].get("problems", [])]
        assert evidence and evidence[0]["reason"] == "pull_failed"
        rollback = await _auto_rollback_of(f, bad["id"])
        assert (await f.api.wait(rollback["id"]))["status"] == "succeeded"
        assert _starts(engine, fl.hosts) == before  # nothing was stopped or replaced
        await fl.serving("web", "v1")
        _, releases = await f.api.call("GET", "/v1/apps/web/releases")
        assert releases["releases"][0]["outcome"] == "bad"


def _starts(engine: Engine, hosts: list[str]) -> set[tuple[str, str]]:
    """The running containers of `web`, with when each last started: a stop and a start
    again would change it."""
    running = (c for h in hosts for c in engine.containers(h, "web", all=False))
    return {(c.id, c.attrs["State"]["StartedAt"]) for c in running}


async def _auto_rollback_of(f: Flotilla, deployment_id: int) -> dict:
    _, listing = await f.api.call("GET", "/v1/deployments?app=web")
    (rollback,) = [d for d in listing["deployments"] if d["rollback_of"] == deployment_id]
    assert rollback["kind"] == "rollback" and rollback["trigger"] == "auto"
    return dict(rollback)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the agent's part
async def test_manual_rollback_restarts_the_retained_container(
    flotilla: Flotilla, images: Images, engine: Engine, docker_url: str
):
    f = flotilla
    async with fleet(f, docker_url, size=1) as fl:
        (host,) = fl.hosts
        ids = {}
        for n, image in enumerate((images.v1, images.v2, images.v3), start=1):
            d = await f.api.deploy("web", simple(image, message=f"release {n}"))
            assert (await f.api.wait(d["id"]))["status"] == "succeeded"
            (c,) = engine.containers(host, "web", all=False)
            ids[n] = c.id

        # default target: the last release that succeeded before the current one
        status, rb = await f.api.call("POST", "/v1/apps/web/rollback", {"reason": "3am page"})
        assert status == 202, rb
        assert rb["kind"] == "rollback" and rb["release"] == 2 and rb["reason"] == "3am page"
        assert (await f.api.wait(rb["id"]))["status"] == "succeeded"
        await fl.serving("web", "v2")
        (c,) = engine.containers(host, "web", all=False)
        assert c.id == ids[2]  # restarted, not recreated

        status, rb = await f.api.call("POST", "/v1/apps/web/rollback", {"release": 1})
        assert status == 202, rb
        assert (await f.api.wait(rb["id"]))["status"] == "succeeded"
        await fl.serving("web", "v1")
        (c,) = engine.containers(host, "web", all=False)
        assert c.id == ids[1]
        app = await f.api.app("web")
        assert app["current_release"] == 1
        _, releases = await f.api.call("GET", "/v1/apps/web/releases")
        outcomes = {r["number"]: r["outcome"] for r in releases["releases"]}
        assert outcomes[3] == "rolled_back" and outcomes[1] == "succeeded"


async def test_start_first_keeps_answering(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with fleet(f, docker_url, size=1) as fl:
        _ = fl.hosts
        d1 = await f.api.deploy("web", simple(images.v1, health=HTTP_HEALTH))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        failures = 0
        answers: list[str] = []
        stop = asyncio.Event()

        async def poll() -> None:
            nonlocal failures
            while not stop.is_set():
                app = await f.api.app("web")
                ports = [
                    p["host_port"]
                    for h in app["hosts"]
                    for i in h["instances"]
                    if i["state"] == "running"
                    for p in i["ports"]
                ]
                texts = [t for t in [await fetch_text(p) for p in ports] if t]
                if texts:
                    answers.append(texts[-1])
                else:
                    failures += 1
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll())
        d2 = await f.api.deploy(
            "web", simple(images.v2, health=HTTP_HEALTH, strategy={"min_healthy_time": 1})
        )
        assert (await f.api.wait(d2["id"]))["strategy"]["order"] is None
        stop.set()
        await poller
        assert failures == 0
        assert answers[0] == "v1" and answers[-1] == "v2"


async def test_stop_first_with_a_fixed_host_port(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    port = free_port()
    body = {"ports": [{"container": 80, "host": port}]}
    async with fleet(f, docker_url, size=1):
        for image, text in ((images.v1, "v1"), (images.v2, "v2")):
            d = await f.api.deploy("web", {"image": image, **body})
            assert (await f.api.wait(d["id"]))["status"] == "succeeded"
            assert await eventually(lambda: fetch_text(port)) == text
        status, problem = await f.api.call(
            "POST",
            "/v1/apps/web/deployments",
            {"image": images.v3, **body, "strategy": {"order": "start-first"}},
        )
        assert status == 422 and "start-first" in problem["detail"] + str(problem["errors"])
