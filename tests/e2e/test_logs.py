"""`flotilla logs` end to end, on the real Docker Engine: an app whose containers print lines
(one of them its secret) on two hosts; `--tail`, `--host`, `-o json`, `--follow` (a new line
shows, Ctrl-C ends it quietly, and the agent stops reading), a stream that ends when the
container stops, a host whose agent is away; refusals: another app's token, bad parameters
(problem+json naming the parameter), an unknown app, a host that does not run the app."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import sys
import threading
import time

import pytest

from tests.conftest import Flotilla, Images
from tests.e2e.fleet import fleet
from tests.e2e.test_cli_exits import cli, start
from tests.harness import Engine, eventually, finish

SECRET = "logs-secret-7f0c2d91aa"
SCRIPT = (
    "echo start-line; echo secret=$LOG_KEY; i=0; "
    "while true; do echo tick-$i; i=$((i+1)); sleep 0.5; done"
)


def readers() -> int:
    """The agents' log reader threads alive (the agents run in this process)."""
    return sum(1 for t in threading.enumerate() if t.name == "logs-reader")


async def deploy_chatty(f: Flotilla, images: Images) -> None:
    status, body = await f.api.call("PUT", "/v1/apps/chatty/secrets/LOG_KEY", {"value": SECRET})
    assert status == 200, body
    spec = {"image": images.v1, "command": ["/bin/sh", "-c", SCRIPT], "secrets": ["LOG_KEY"]}
    d = await f.api.deploy("chatty", spec)
    assert (await f.api.wait(d["id"]))["status"] == "succeeded"


@pytest.mark.timeout(240)
async def test_logs_tail_host_json_follow_and_masking(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str, engine: Engine
) -> None:
    f = flotilla_sqlite
    async with fleet(f, docker_url, size=2) as fl:
        a, b = fl.hosts
        await deploy_chatty(f, images)

        async def both_ticked() -> str | None:
            ran = await cli(f, "logs", "chatty", "--tail", "1000")
            ok = ran.code == 0 and all(f"{h} 0 | tick-1" in ran.out for h in (a, b))
            return ran.out if ok else None

        out = await eventually(both_ticked, timeout=30)
        for host in (a, b):
            assert f"{host} 0 | start-line" in out
            assert f"{host} 0 | secret=****" in out
        assert SECRET not in out

        ran = await cli(f, "logs", "chatty", "--host", a, "--tail", "3")
        assert ran.code == 0, ran
        lines = ran.out.splitlines()
        assert len(lines) == 3 and all(line.startswith(f"{a} 0 | tick-") for line in lines)

        ran = await cli(f, "logs", "chatty", "--tail", "2", "-o", "json", "--since", "10m")
        assert ran.code == 0, ran
        records = [json.loads(line) for line in ran.out.splitlines()]
        assert sorted(r["host"] for r in records) == sorted([a, a, b, b])
        assert all(r["app"] == "chatty" and r["release"] == 1 for r in records)
        assert all(r["line"].startswith("tick-") and r["time"].endswith("Z") for r in records)

        ran = await cli(f, "logs", "chatty", "--since", "2999-01-01T00:00:00Z")
        assert (ran.code, ran.out) == (0, "")  # nothing printed after that time

        # --follow: a line printed after the call shows, then Ctrl-C ends it quietly
        proc = await start(f, "logs", "chatty", "--host", b, "--tail", "0", "--follow")
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert first.decode().startswith(f"{b} 0 | tick-")
        assert readers() == 1
        proc.send_signal(signal.SIGINT)
        ran = await finish(proc)
        assert ran.code == 130 and ran.err == "", ran

        async def stopped() -> bool | None:
            return True if readers() == 0 else None

        await eventually(stopped, timeout=15)  # the server told the agent to stop

        # a followed stream ends when the container stops
        proc = await start(f, "logs", "chatty", "--host", a, "--tail", "1", "--follow")
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 15)
        (container,) = engine.containers(a, "chatty", all=False)
        await asyncio.to_thread(container.stop, timeout=1)
        ran = await finish(proc, timeout=30)
        assert ran.code == 0, ran
    # the agents are gone: a named host is refused, the app's logs say why in notes
    ran = await cli(f, "logs", "chatty", "--host", a)
    assert ran.code == 1 and "not connected" in ran.err, ran
    ran = await cli(f, "logs", "chatty")
    assert ran.code == 0, ran
    assert f"flotilla logs: {a}: the agent is not connected" in ran.err


async def test_logs_refusals(flotilla_sqlite: Flotilla, images: Images, docker_url: str) -> None:
    f = flotilla_sqlite
    async with fleet(f, docker_url, size=1) as fl:
        await deploy_chatty(f, images)
        status, body = await f.api.call(
            "POST", "/v1/tokens", {"name": "other-reader", "scopes": ["read"], "apps": ["other"]}
        )
        assert status == 201, body
        ran = await cli(f, "logs", "chatty", token=body["token"])
        assert ran.code == 5 and "not allowed on app 'chatty'" in ran.err, ran

        for query, field in (
            ("tail=abc", "tail"),
            ("tail=10001", "tail"),
            ("since=yesterday", "since"),
            ("host=Bad_Name", "host"),
            ("follow=maybe", "follow"),
        ):
            status, body = await f.api.call("GET", f"/v1/apps/chatty/logs?{query}")
            assert status == 422, (query, body)
            assert [e["field"] for e in body["errors"]] == [field], body
        ran = await cli(f, "logs", "chatty", "--since", "yesterday")
        assert ran.code == 2 and "since" in ran.err, ran
        ran = await cli(f, "logs", "chatty", "--tail", "-3")
        assert ran.code == 2, ran

        status, body = await f.api.call("GET", "/v1/apps/nope/logs")
        assert status == 404, body
        ran = await cli(f, "logs", "nope")
        assert ran.code == 1 and "does not exist" in ran.err, ran

        other, _ = await f.add_host()
        status, body = await f.api.call("GET", f"/v1/apps/chatty/logs?host={other}")
        assert (status, body["code"]) == (409, "not_on_host"), body
        assert fl.hosts  # the app's own host answered all along


async def test_a_burst_of_output_arrives_whole_at_the_agents_rate(
    flotilla_sqlite: Flotilla, images: Images, docker_url: str
) -> None:
    f = flotilla_sqlite
    async with fleet(f, docker_url, size=1):
        script = "i=0; while [ $i -lt 3000 ]; do echo burst-$i; i=$((i+1)); done; sleep 3600"
        d = await f.api.deploy("burst", {"image": images.v1, "command": ["/bin/sh", "-c", script]})
        assert (await f.api.wait(d["id"]))["status"] == "succeeded"

        async def printed() -> bool | None:
            ran = await cli(f, "logs", "burst", "--tail", "1")
            return True if "burst-2999" in ran.out else None

        await eventually(printed, timeout=30)
        started = time.monotonic()
        ran = await cli(f, "logs", "burst", "-o", "json")
        took = time.monotonic() - started
        assert ran.code == 0, ran.err
        lines = [json.loads(line)["line"] for line in ran.out.splitlines()]
        assert lines == [f"burst-{i}" for i in range(3000)]  # whole, in order
        # 30 chunks of 100 lines, at most LOG_CHUNKS_PER_SECOND (10) a second
        assert took >= 2.9, took

        # `flotilla logs APP | head -n 1`: the reader leaves early, and that is no error
        server = ("--server", f.url, "--token", f.api.token)
        logs = ("logs", "burst", "--tail", "all", *server)
        flotilla = shlex.join([sys.executable, "-m", "server.cli.main", *logs])
        piped = await asyncio.create_subprocess_exec(
            "bash", "-o", "pipefail", "-c", f"{flotilla} | head -n 1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(piped.communicate(), 60)
        assert piped.returncode == 0, err.decode()
        assert out.decode().count("\n") == 1 and "burst-" in out.decode(), out
        assert b"Traceback" not in err and b"broke off" not in err, err.decode()
