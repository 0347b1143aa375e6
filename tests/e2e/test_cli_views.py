"""What people and scripts read from the `flotilla` command line, against a live server, a
real agent and the real Docker Engine: `status APP` says what runs where (host, release,
state, ports), every read command prints a table, and `-o json` the server's answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.conftest import Flotilla, Images
from tests.e2e.test_cli_exits import HEALTH, cli
from tests.harness import agent, eventually, published_port


@pytest.fixture
async def web(flotilla_sqlite: Flotilla, docker_url: str) -> AsyncIterator[tuple[Flotilla, str]]:
    """A server with one connected host."""
    host, token = await flotilla_sqlite.add_host(role="web")
    async with agent(flotilla_sqlite.url, host, token, docker_url):
        yield flotilla_sqlite, host


def rows(out: str) -> list[list[str]]:
    """A table's rows (below its header), split on runs of spaces."""
    lines = out.strip().splitlines()
    return [line.split() for line in lines[1:]]


async def test_status_says_what_runs_where(web: tuple[Flotilla, str], images: Images) -> None:
    f, host = web
    ran = await cli(f, "deploy", "web", "--image", images.v1, "--port", "80", "--wait")
    assert ran.code == 0, ran
    d2 = await f.api.deploy(
        "web", {"base": "current", "image": images.v2, "health": HEALTH, "message": "v2"}
    )
    assert (await f.api.wait(d2["id"]))["status"] == "succeeded"
    port = published_port(await f.api.app("web"), host, 2)
    assert port is not None

    ran = await cli(f, "status", "web")
    assert ran.code == 0, ran
    head, table = ran.out.split("\n", 1)
    assert head == f"app web: release 2 ({images.v2})", ran.out
    assert table.splitlines()[0].split() == ["HOST", "RELEASE", "STATE", "INSTANCES", "PORTS"]
    (row,) = rows(table)
    assert row[:3] == [host, "2", "healthy"], ran.out
    assert f"127.0.0.1:{port}->80/tcp" in row, ran.out
    assert "1 running, 1 stopped" in table  # release 1 kept stopped for a fast rollback

    ran = await cli(f, "status", "web", "-o", "json")
    assert ran.code == 0, ran
    body = json.loads(ran.out)
    assert body["current_release"] == 2 and body["hosts"][0]["name"] == host

    # a number is a deployment, as `flotilla deployment ID` shows it
    by_number = await cli(f, "status", str(d2["id"]))
    by_id = await cli(f, "deployment", str(d2["id"]))
    assert by_number.out == by_id.out and by_id.code == 0, by_id
    assert by_id.out.startswith(f"deployment {d2['id']}: deploy of web to release 2, succeeded")
    assert [host, "healthy"] in [r[:2] for r in rows(by_id.out.split("\n", 2)[2])], by_id.out
    ran = await cli(f, "deployment", str(d2["id"]), "-o", "json")
    assert json.loads(ran.out)["status"] == "succeeded"

    ran = await cli(f, "history", "web", "--limit", "1")
    assert ran.code == 0 and len(rows(ran.out)) == 1, ran
    assert rows(ran.out)[0][:4] == [str(d2["id"]), "deploy", "2", "succeeded"], ran.out
    assert "{" not in ran.out  # a table, not JSON
    ran = await cli(f, "history", "web", "--limit", "5", "-o", "json")
    assert [d["release"] for d in json.loads(ran.out)["deployments"]] == [2, 1]

    ran = await cli(f, "releases", "web")
    assert [r[:2] for r in rows(ran.out)] == [["2", images.v2], ["1", images.v1]], ran.out
    assert "v2" in ran.out.splitlines()[1]  # its message
    ran = await cli(f, "releases", "web", "-o", "json")
    assert [r["number"] for r in json.loads(ran.out)["releases"]] == [2, 1]

    ran = await cli(f, "apps")
    assert rows(ran.out) == [["web", "2", "2"]], ran.out
    ran = await cli(f, "apps", "-o", "json")
    assert json.loads(ran.out)["apps"][0]["current_release"] == 2

    ran = await cli(f, "hosts")
    (hrow,) = rows(ran.out)
    assert hrow[:3] == [host, "role=web", "connected"], ran.out
    ran = await cli(f, "hosts", "-o", "json")
    assert json.loads(ran.out)["hosts"][0]["status"] == "connected"

    ran = await cli(f, "events", "--app", "web", "--limit", "3")
    events = rows(ran.out)
    assert len(events) == 3 and int(events[0][0]) < int(events[-1][0]), ran.out  # oldest first
    ran = await cli(f, "events", "--app", "web", "-o", "json")
    kinds = [e["kind"] for e in json.loads(ran.out)["events"]]
    assert "deploy_succeeded" in kinds or "deployment_succeeded" in kinds, kinds

    ran = await cli(f, "status", "nothing")
    assert ran.code == 1 and "nothing" in ran.err, ran


async def test_status_shows_the_rollout_under_way(
    web: tuple[Flotilla, str], images: Images
) -> None:
    f, _ = web
    away, _ = await f.add_host(role="web")  # no agent: the rollout waits for it
    d1 = await f.api.deploy("web", {"image": images.v1})

    async def running() -> bool:
        return (await f.api.deployment(d1["id"]))["status"] == "running"

    await eventually(running)
    ran = await cli(f, "status", "web")
    assert ran.code == 0, ran
    assert f"deployment {d1['id']}: deploy of release 1 running" in ran.out, ran.out
    assert [away, "-", "pending"] in [r[:3] for r in rows(ran.out.split("\n", 2)[2])], ran.out
    ran = await cli(f, "pause", str(d1["id"]))
    assert ran.code == 0 and ran.out.startswith(f"deployment {d1['id']}: "), ran
    ran = await cli(f, "cancel", str(d1["id"]), "-o", "json")
    assert ran.code == 0 and json.loads(ran.out)["id"] == d1["id"], ran
