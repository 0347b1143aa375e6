"""`GET /v1/deployments/{id}?wait=S&version=V`, the long poll `deploy --wait` shows its live
view from: answered as soon as the deployment's `version` is not V (its status or a host's
state changed), else when it ends or the time is up; a bad `version` is a 422 naming it."""

from __future__ import annotations

import time
from urllib.parse import quote

from agent.codec import encode
from agent.protocol import Hello, Status
from tests.conftest import Flotilla
from tests.harness import eventually


async def test_a_poll_with_a_version_answers_once_the_deployment_changed(
    flotilla_sqlite: Flotilla,
) -> None:
    f = flotilla_sqlite
    await f.add_host()  # never connects: the deployment runs on, its host updating
    started = await f.api.deploy("web", {"image": "web:v1"})
    assert started["status"] == "pending" and started["version"], started
    path = f"/v1/deployments/{started['id']}?wait=30&version="

    # the controller takes it up (running, its host updating): each step is a change
    running, seen = started, []
    while [h["state"] for h in running["hosts"]] != ["updating"]:
        began = time.monotonic()
        status, answer = await f.api.call("GET", path + quote(running["version"]))
        assert status == 200, answer
        assert time.monotonic() - began < 15, "answered at the change, not after 30 s"
        assert answer["version"] != running["version"]
        running = answer
        seen.append(running["version"])
        assert len(seen) <= 3, seen
    assert running["status"] == "running", running

    # nothing changes: answered when the time is up, at the same version
    status, still = await f.api.call(
        "GET", path.replace("wait=30", "wait=1.5") + running["version"]
    )
    assert status == 200, still
    assert (still["status"], still["version"]) == (running["status"], running["version"])
    assert [h["state"] for h in still["hosts"]] == [h["state"] for h in running["hosts"]]

    # a version it is not at (one from before, or a made-up one): answered at once
    for other in (started["version"], "made-up"):
        began = time.monotonic()
        status, now = await f.api.call("GET", path + quote(other))
        assert status == 200 and now["version"] == running["version"], now
        assert time.monotonic() - began < 5

    for bad in ("", "x" * 101):
        status, problem = await f.api.call("GET", path + bad)
        assert status == 422, problem
        assert [e["field"] for e in problem["errors"]] == ["version"], problem


async def test_a_host_that_has_not_the_image_yet_is_pulling(flotilla_sqlite: Flotilla) -> None:
    """`pulling`: a target host whose last status shows neither the release's image nor an
    instance of it (what `deploy --wait` shows as "pulling"), false once it has the image."""
    f = flotilla_sqlite
    name, token = await f.add_host()
    ws = await f.api.session.ws_connect(
        f.url + "/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    )
    await ws.send_str(encode(Hello(host=name, agent_version="test", docker_version="0")))
    started = await f.api.deploy("web", {"image": "web:v1"})

    async def hosts(pulling: bool) -> list[dict[str, object]] | None:
        await ws.send_str(encode(Status(host=name, generation=1, digests=digests)))
        _, answer = await f.api.call("GET", f"/v1/deployments/{started['id']}")
        found = answer["hosts"]
        return found if [bool(h.get("pulling")) for h in found] == [pulling] else None

    digests: tuple[tuple[str, str], ...] = ()  # nothing pulled yet
    assert await eventually(lambda: hosts(True), timeout=15)
    digests = (("web:v1", "sha256:" + "a" * 64),)
    assert await eventually(lambda: hosts(False), timeout=15)
    await ws.close()
