"""Controlling rollouts on real hosts: canaries, promote, pause, resume, cancel, supersede,
deadlines, a disconnected host, manual rollback errors and the history a user reads back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from server.keys import TURNS
from server.turns import Phase
from tests.conftest import Flotilla, Images
from tests.e2e.fleet import Fleet, fleet, simple
from tests.harness import agent, eventually, fetch_text, published_port

HTTP_HEALTH = {"type": "http", "port": 80, "path": "/health", "interval": 0.5, "retries": 2}
# min_healthy_time keeps each host `updating` for at least a second: time to act mid-rollout
SLOW = {"max_parallel": 1, "min_healthy_time": 1}


def states(d: dict[str, Any]) -> dict[str, str]:
    return {h["name"]: h["state"] for h in d["hosts"]}


async def status_is(f: Flotilla, deployment_id: int, status: str) -> dict[str, Any]:
    """Wait until the deployment has `status`; return it."""

    async def check() -> dict[str, Any] | None:
        d = await f.api.deployment(deployment_id)
        return d if d["status"] == status else None

    return await eventually(check, timeout=30)


async def first_host_updating(f: Flotilla, deployment_id: int, host: str) -> None:
    async def check() -> bool:
        return states(await f.api.deployment(deployment_id)).get(host) == "updating"

    await eventually(check, timeout=30, interval=0.05)


async def holds(check: Callable[[], Awaitable[Any]], seconds: float) -> None:
    """Assert that `check` stays truthy for `seconds` (a negative: nothing must happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await check()
        await asyncio.sleep(0.2)


async def serves(fl: Fleet, app: str, host: str) -> str | None:
    port = published_port(await fl.f.api.app(app), host)
    return await fetch_text(port) if port else None


async def problem(f: Flotilla, method: str, path: str, body: Any = None) -> tuple[int, str, Any]:
    """Call the API; answer (status, content type, json body) to check problem+json."""
    headers = {"Authorization": f"Bearer {f.api.token}"}
    async with f.api.session.request(method, f.url + path, json=body, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


async def deploy_v1(f: Flotilla, fl: Fleet, images: Images) -> None:
    d1 = await f.api.deploy("web", simple(images.v1, strategy={"max_parallel": 3}))
    assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
    await fl.serving("web", "v1")


async def test_canary_waits_for_manual_promote(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with fleet(f, docker_url) as fl:
        await deploy_v1(f, fl, images)
        canary, *rest = fl.hosts
        d2 = await f.api.deploy(
            "web",
            simple(images.v2, health=HTTP_HEALTH, strategy={"canary": 1, "max_parallel": 1}),
        )
        paused = await status_is(f, d2["id"], "paused")
        assert states(paused) == {canary: "healthy", **{h: "pending" for h in rest}}
        # a paused rollout holds nothing back (fleet metrics, the collector's catch-up)
        turns = f.server.app[TURNS]
        await asyncio.wait_for(turns.until_over(Phase.ROLLING, 5), 10)
        assert not turns.is_on(Phase.ROLLING)
        assert await fl.releases_running("web") == {canary: 2, **{h: 1 for h in rest}}
        await fl.serving("web", "v2", [canary])
        for host in rest:
            assert await serves(fl, "web", host) == "v1"

        status, promoted = await f.api.call("POST", f"/v1/deployments/{d2['id']}/promote")
        assert status == 200, promoted
        done = await f.api.wait(d2["id"])
        assert done["status"] == "succeeded", done
        assert await fl.releases_running("web") == {h: 2 for h in fl.hosts}
        await fl.serving("web", "v2")
        assert (await f.api.app("web"))["current_release"] == 2


async def test_canary_auto_promote_goes_first(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with fleet(f, docker_url) as fl:
        canary, *rest = fl.hosts
        # max_parallel 3: without the canary gate every host would be assigned at once
        d = await f.api.deploy(
            "web",
            simple(
                images.v2,
                health=HTTP_HEALTH,
                strategy={"canary": 1, "auto_promote": True, "max_parallel": 3},
            ),
        )
        samples: list[dict[str, str]] = []
        while True:
            got = await f.api.deployment(d["id"])
            samples.append(states(got))
            if got["status"] not in ("pending", "running"):
                break
            await asyncio.sleep(0.05)
        assert got["status"] == "succeeded", got
        for sample in samples:
            if any(sample.get(h, "pending") != "pending" for h in rest):
                assert sample[canary] == "healthy", sample
        assert any(s.get(canary) == "updating" for s in samples), samples
        assert await fl.releases_running("web") == {h: 1 for h in fl.hosts}  # v2 is release 1
        await fl.serving("web", "v2")


async def test_new_deploy_supersedes_paused_canary(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with fleet(f, docker_url) as fl:
        await deploy_v1(f, fl, images)
        d2 = await f.api.deploy("web", simple(images.v2, strategy={"canary": 1}))
        await status_is(f, d2["id"], "paused")
        d3 = await f.api.deploy("web", simple(images.v3, strategy={"max_parallel": 3}))

        old = await f.api.wait(d2["id"])
        assert old["status"] == "superseded", old
        assert str(d3["id"]) in old["error"]
        done = await f.api.wait(d3["id"])
        assert done["status"] == "succeeded", done
        assert set(states(done).values()) == {"healthy"}
        assert await fl.releases_running("web") == {h: 3 for h in fl.hosts}
        await fl.serving("web", "v3")
        assert (await f.api.app("web"))["current_release"] == 3


async def test_pause_stops_new_batches_until_resume(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with fleet(f, docker_url) as fl:
        await deploy_v1(f, fl, images)
        first, *rest = fl.hosts
        d = await f.api.deploy("web", simple(images.v2, health=HTTP_HEALTH, strategy=SLOW))
        await first_host_updating(f, d["id"], first)
        status, paused = await f.api.call("POST", f"/v1/deployments/{d['id']}/pause")
        assert status == 200 and paused["status"] == "paused", paused

        # the batch under way finishes; no new host is assigned while paused
        async def first_healthy() -> bool:
            return states(await f.api.deployment(d["id"]))[first] == "healthy"

        await eventually(first_healthy, timeout=30)

        async def still_paused() -> bool:
            got = await f.api.deployment(d["id"])
            expected = {first: "healthy", **{h: "pending" for h in rest}}
            assert got["status"] == "paused" and states(got) == expected, got
            return True

        await holds(still_paused, 2.5)
        assert await fl.releases_running("web") == {first: 2, **{h: 1 for h in rest}}

        status, resumed = await f.api.call("POST", f"/v1/deployments/{d['id']}/resume")
        assert status == 200 and resumed["status"] == "running", resumed
        done = await f.api.wait(d["id"])
        assert done["status"] == "succeeded", done
        await fl.serving("web", "v2")


async def test_cancel_keeps_hosts_as_they_are(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with fleet(f, docker_url) as fl:
        await deploy_v1(f, fl, images)
        first, *rest = fl.hosts
        d = await f.api.deploy("web", simple(images.v2, health=HTTP_HEALTH, strategy=SLOW))
        await first_host_updating(f, d["id"], first)
        status, answer = await f.api.call("POST", f"/v1/deployments/{d['id']}/cancel")
        assert status == 200, answer

        done = await f.api.wait(d["id"])
        assert done["status"] == "cancelled", done
        assert states(done) == {first: "healthy", **{h: "pending" for h in rest}}
        assert await fl.releases_running("web") == {first: 2, **{h: 1 for h in rest}}
        await fl.serving("web", "v2", [first])
        await fl.serving("web", "v1", rest)

        _, listing = await f.api.call("GET", "/v1/deployments?app=web")
        assert [x["kind"] for x in listing["deployments"]] == ["deploy", "deploy"]
        assert (await f.api.app("web"))["current_release"] == 1


async def test_progress_deadline_fails_a_stuck_rollout(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with fleet(f, docker_url):
        patient = {**HTTP_HEALTH, "retries": 1000}  # the health check never gives up
        started = time.monotonic()
        d = await f.api.deploy(
            "web",
            simple(
                images.nohealth,
                health=patient,
                strategy={"progress_deadline": 2, "healthy_deadline": 60, "auto_rollback": False},
            ),
        )
        done = await f.api.wait(d["id"], timeout=30)
        assert done["status"] == "failed", done
        assert "progress_deadline" in done["error"], done
        assert time.monotonic() - started < 20
        _, listing = await f.api.call("GET", "/v1/deployments?app=web")
        assert [x["kind"] for x in listing["deployments"]] == ["deploy"]


async def hosts_status(f: Flotilla) -> dict[str, str]:
    status, body = await f.api.call("GET", "/v1/hosts")
    assert status == 200, body
    return {h["name"]: h["status"] for h in body["hosts"]}


@contextlib.asynccontextmanager
async def one_host_stopped(f: Flotilla, docker_url: str) -> AsyncIterator[tuple[str, str]]:
    """Two hosts whose agents both connected; the second agent then stopped (socket closed)."""
    up, up_token = await f.add_host(f"{f.hosts_prefix}a")
    gone, gone_token = await f.add_host(f"{f.hosts_prefix}b")
    async with agent(f.url, up, up_token, docker_url):
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(agent(f.url, gone, gone_token, docker_url))

            async def both_connected() -> bool:
                return await hosts_status(f) == {up: "connected", gone: "connected"}

            await eventually(both_connected)
        yield up, gone


async def test_stopped_agent_is_listed_disconnected(flotilla_sqlite: Flotilla, docker_url: str):
    f = flotilla_sqlite
    async with one_host_stopped(f, docker_url) as (up, gone):

        async def marked() -> dict[str, str] | None:
            seen = await hosts_status(f)
            return seen if seen == {up: "connected", gone: "disconnected"} else None

        await eventually(marked, timeout=5)


async def test_disconnected_host_fails_the_deployment(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with one_host_stopped(f, docker_url) as (up, gone):

        async def marked() -> bool:
            return await hosts_status(f) == {up: "connected", gone: "disconnected"}

        await eventually(marked, timeout=5)
        d = await f.api.deploy(
            "web",
            simple(
                images.v1,
                # no reconnect grace: the host is gone for good, not reconnecting
                strategy={
                    "max_parallel": 2,
                    "healthy_deadline": 3,
                    "auto_rollback": False,
                    "reconnect_grace": 0,
                    "disconnected": "wait",  # not skipped: its absence is to fail the rollout
                },
            ),
        )
        samples: list[dict[str, Any]] = []

        async def finished() -> dict[str, Any] | None:
            got = await f.api.deployment(d["id"])
            samples.append(got)
            return got if got["status"] not in ("pending", "running", "paused") else None

        try:
            done = await eventually(finished, timeout=12)
        except AssertionError:
            raise AssertionError(f"still not finished: {samples[-1]}") from None
        assert "succeeded" not in [s["status"] for s in samples]
        assert done["status"] == "failed", done
        (lost,) = [h for h in done["hosts"] if h["name"] == gone]
        assert lost["state"] == "failed" and "disconnected" in (lost["error"] or ""), done


async def test_manual_rollback_and_action_errors(
    flotilla: Flotilla, images: Images, docker_url: str
):
    f = flotilla
    async with fleet(f, docker_url, size=1):
        d1 = await f.api.deploy("web", simple(images.v1))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"

        status, ctype, body = await problem(f, "POST", "/v1/apps/web/rollback", {})
        assert (status, ctype, body["code"]) == (
            409,
            "application/problem+json",
            "nothing_to_roll_back",
        ), body
        assert body["status"] == 409

        status, ctype, body = await problem(f, "POST", "/v1/apps/web/rollback", {"release": 7})
        assert (status, ctype) == (422, "application/problem+json"), body
        assert [e["field"] for e in body["errors"]] == ["release"], body

        status, ctype, body = await problem(f, "POST", f"/v1/deployments/{d1['id']}/pause")
        assert (status, ctype, body["code"]) == (
            409,
            "application/problem+json",
            "deployment_finished",
        ), body

        # an active deployment (min_healthy_time keeps it going) without a canary
        d2 = await f.api.deploy("web", simple(images.v2, strategy={"min_healthy_time": 2}))
        status, ctype, body = await problem(f, "POST", f"/v1/deployments/{d2['id']}/promote")
        assert (status, ctype, body["code"]) == (409, "application/problem+json", "no_canary")
        assert (await f.api.wait(d2["id"]))["status"] == "succeeded"


async def test_history_lists_kinds_and_release_outcomes(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
):
    f = flotilla_sqlite
    async with fleet(f, docker_url, size=1) as fl:
        d1 = await f.api.deploy("web", simple(images.v1, health=HTTP_HEALTH))
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        d2 = await f.api.deploy("web", simple(images.v2, health=HTTP_HEALTH))
        assert (await f.api.wait(d2["id"]))["status"] == "succeeded"
        bad = await f.api.deploy(
            "web",
            simple(images.nohealth, health=HTTP_HEALTH, strategy={"healthy_deadline": 5}),
        )
        assert (await f.api.wait(bad["id"]))["status"] == "rolled_back"
        _, listing = await f.api.call("GET", "/v1/deployments?app=web")
        auto = listing["deployments"][0]
        assert auto["kind"] == "rollback" and auto["trigger"] == "auto"
        assert (await f.api.wait(auto["id"]))["status"] == "succeeded"

        status, manual = await f.api.call(
            "POST", "/v1/apps/web/rollback", {"reason": "v2 misbehaves"}
        )
        assert status == 202 and manual["release"] == 1, manual
        assert manual["kind"] == "rollback" and manual["reason"] == "v2 misbehaves"
        rb = await f.api.wait(manual["id"])
        assert rb["status"] == "succeeded", rb
        await fl.serving("web", "v1")

        _, listing = await f.api.call("GET", "/v1/deployments?app=web")
        history = [(x["id"], x["kind"], x["release"], x["status"]) for x in listing["deployments"]]
        assert history == [
            (manual["id"], "rollback", 1, "succeeded"),
            (auto["id"], "rollback", 2, "succeeded"),
            (bad["id"], "deploy", 3, "rolled_back"),
            (d2["id"], "deploy", 2, "succeeded"),
            (d1["id"], "deploy", 1, "succeeded"),
        ]
        assert listing["deployments"][0]["rollback_of"] is None
        assert auto["rollback_of"] == bad["id"]

        _, releases = await f.api.call("GET", "/v1/apps/web/releases")
        assert [(r["number"], r["outcome"]) for r in releases["releases"]] == [
            (3, "bad"),
            (2, "rolled_back"),
            (1, "succeeded"),
        ]
        assert (await f.api.app("web"))["current_release"] == 1
