"""`flotilla deploy --wait`: one long poll is capped by the server (600 s), so the CLI polls
again until its own --timeout has passed, and its exit code says how the deployment ended.

The real command line (`flotilla`'s entry, `main`) runs against a small scripted HTTP server
on 127.0.0.1: it accepts the deploy and answers each poll from a list of answers. What is
tested is the CLI's loop, not the server (whose long poll the end-to-end tests use; the exit
codes against the real server and engine are in tests/e2e/test_cli_exits.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from server.api.deployments import MAX_WAIT_SECONDS
from server.cli import client, wait
from server.cli.main import main

TOKEN = "t0ken"
STARTED = {"id": 7, "kind": "deploy", "app": "web", "release": 3, "status": "pending"}
RUNNING = (200, {"id": 7, "status": "running"})


@dataclass
class Scripted:
    """What the scripted server answers to each poll, and what the CLI asked of it."""

    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    started: dict[str, Any] = field(default_factory=lambda: dict(STARTED))
    deploys: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)
    polls: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each poll came (monotonic)
    tokens: set[str] = field(default_factory=set)

    @property
    def waits(self) -> list[float]:
        """The `wait=` of each poll, in seconds."""
        return [float(p.split("wait=")[1].split("&")[0]) for p in self.polls]


@pytest.fixture(autouse=True)
def root_logging() -> Iterator[None]:
    """`main` configures the root logger, as an entry point does; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def scripted(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Scripted]:
    """A server speaking the two calls of `deploy --wait`; FLOTILLA_SERVER/TOKEN point at it."""
    script = Scripted()

    async def deploy(request: web.Request) -> web.Response:
        script.tokens.add(request.headers["Authorization"])
        script.deploys.append({"app": request.match_info["app"], **await request.json()})
        script.keys.append(request.headers.get("Idempotency-Key"))
        return web.json_response(script.started, status=202)

    async def poll(request: web.Request) -> web.Response:
        script.tokens.add(request.headers["Authorization"])
        script.polls.append(request.path_qs)
        script.times.append(time.monotonic())
        answers = script.answers
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        kind = "application/problem+json" if status >= 400 else "application/json"
        return web.json_response(body, status=status, content_type=kind)

    app = web.Application()
    app.router.add_post("/v1/apps/{app}/deployments", deploy)
    app.router.add_get("/v1/deployments/{id}", poll)
    async with TestServer(app, host="127.0.0.1") as server:
        monkeypatch.setenv("FLOTILLA_SERVER", str(server.make_url("")))
        monkeypatch.setenv("FLOTILLA_TOKEN", TOKEN)
        yield script


async def deploy_wait(
    scripted: Scripted, answers: list[tuple[int, dict[str, Any]]], timeout: float
) -> int:
    """Run `flotilla deploy web img:v3 --wait --timeout T`; the server answers polls in turn."""
    scripted.answers[:] = answers
    argv = ["deploy", "web", "img:v3", "--wait", "--timeout", str(timeout)]
    code = await asyncio.to_thread(main, argv)
    # a patch on the current release: only the image changes
    assert scripted.deploys == [{"app": "web", "base": "current", "image": "img:v3"}]
    assert len(scripted.keys) == 1 and scripted.keys[0]  # an Idempotency-Key, always
    assert scripted.tokens == {f"Bearer {TOKEN}"}
    return code


async def test_waits_past_one_long_poll_until_the_deployment_ends(
    scripted: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    succeeded = (200, {"id": 7, "status": "succeeded"})
    code = await deploy_wait(scripted, [RUNNING, RUNNING, succeeded], 3600)
    assert code == 0
    # a 3,600 s wait is several long polls, each within the server's cap
    assert len(scripted.polls) == 3
    assert all(p.startswith("/v1/deployments/7?wait=") for p in scripted.polls)
    assert all(0 < w <= min(client.LONG_POLL_SECONDS, MAX_WAIT_SECONDS) for w in scripted.waits)
    out = capsys.readouterr()
    assert out.out == (
        "deployment 7: deploy of web to release 3 pending\n"
        "deployment 7: running\n"  # a change: said once, not at each poll
        "deployment 7: succeeded\n"
    )
    assert out.err == ""


async def test_each_poll_waits_past_the_version_it_has_and_each_change_is_a_line(
    scripted: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server answers a poll with `version=V` as soon as the deployment is no longer at
    V: the CLI asks past the version of its last answer, and prints a line per change."""
    scripted.started["version"] = "0.pending"
    strategy = {"max_parallel": 1, "canary": 0}

    def at(version: str, status: str, *states: str) -> tuple[int, dict[str, Any]]:
        hosts = [
            {"name": f"h{n}", "state": state, "previous_release": 2, "error": None}
            for n, state in enumerate(states, 1)
        ]
        body = {**STARTED, "status": status, "strategy": strategy, "hosts": hosts}
        return 200, {**body, "version": version}

    answers = [
        at("1.running", "running", "updating", "pending"),
        at("2.running", "running", "healthy", "updating"),
        at("3.succeeded", "succeeded", "healthy", "healthy"),
    ]
    code = await deploy_wait(scripted, answers, 600)
    assert code == 0
    versions = [p.split("&version=")[1] for p in scripted.polls]
    assert versions == ["0.pending", "1.running", "2.running"]
    assert capsys.readouterr().out.splitlines() == [
        "deployment 7: deploy of web to release 3 pending",
        "deployment 7: running: 2 host(s), batch 1/2",
        "host h1: updating to release 3",
        "host h1: healthy on release 3",
        "host h2: updating to release 3",
        "host h2: healthy on release 3",
        "deployment 7: succeeded",
    ]


async def test_a_deployment_that_fails_exits_1_with_its_evidence(
    scripted: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    host = {
        "name": "h1",
        "state": "failed",
        "error": "crashed",
        "evidence": {
            "problems": [
                {
                    "reason": "exited",
                    "message": "container web-3 exited with code 3",
                    "exit_code": 3,
                    "logs": [f"line {n}" for n in range(30)],
                }
            ]
        },
    }
    failed = (200, {"id": 7, "status": "failed", "error": "host h1: crashed", "hosts": [host]})
    code = await deploy_wait(scripted, [RUNNING, failed], 600)
    assert code == 1
    assert len(scripted.polls) == 2
    out = capsys.readouterr()
    assert out.out.endswith("deployment 7: failed\n")
    assert "host h1: crashed" in out.err
    assert "exited: container web-3 exited with code 3 (exit code 3)" in out.err
    assert "| line 29" in out.err and "| line 20" in out.err and "| line 19" not in out.err


@pytest.mark.parametrize("ended", ["cancelled", "superseded"])
async def test_a_deployment_cancelled_or_superseded_exits_4(
    scripted: Scripted, capsys: pytest.CaptureFixture[str], ended: str
) -> None:
    code = await deploy_wait(scripted, [RUNNING, (200, {"id": 7, "status": ended})], 600)
    assert code == 4
    assert capsys.readouterr().out.endswith(f"deployment 7: {ended}\n")


async def test_a_deployment_still_running_when_time_is_up_exits_3(
    scripted: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await deploy_wait(scripted, [RUNNING], 0)
    assert code == 3
    # no time left: one poll that does not wait
    assert scripted.polls == ["/v1/deployments/7?wait=0.000"]
    out = capsys.readouterr().out
    assert "timed out" in out and "still running" in out and "goes on" in out


async def test_a_server_restarting_during_the_wait_is_waited_for(
    scripted: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    stopping = (503, {"code": "stopping", "detail": "the server is shutting down"})
    succeeded = (200, {"id": 7, "status": "succeeded"})
    code = await deploy_wait(scripted, [RUNNING, stopping, stopping, succeeded], 600)
    assert code == 0
    out = capsys.readouterr()
    assert out.out.endswith("deployment 7: succeeded\n")
    assert out.err.count("waiting for the server") == 1


async def test_a_refused_poll_exits_5_with_the_problem(
    scripted: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = (403, {"code": "forbidden", "detail": "token lacks the read scope"})
    code = await deploy_wait(scripted, [refused], 600)
    assert code == 5
    assert len(scripted.polls) == 1
    assert "token lacks the read scope" in capsys.readouterr().err


async def test_a_large_deployment_is_asked_at_most_every_few_seconds(
    scripted: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each answer carries every host: 2,000 of them are asked for at most once a second,
    however often they change."""
    scripted.started["version"] = "0.pending"
    hosts = [{"name": f"h{n}", "state": "updating"} for n in range(2000)]
    answers = [
        (200, {**STARTED, "status": "running", "hosts": hosts, "version": f"{n}.running"})
        for n in range(1, 4)
    ]
    answers.append((200, {**STARTED, "status": "succeeded", "hosts": [], "version": "9"}))
    code = await deploy_wait(scripted, answers, 600)
    assert code == 0
    gaps = [b - a for a, b in zip(scripted.times, scripted.times[1:], strict=False)]
    assert len(gaps) == 3 and min(gaps) >= 0.9, gaps
    capsys.readouterr()


def test_each_long_poll_stays_within_what_the_server_accepts() -> None:
    """The CLI does not import the server's API module (aiohttp); its cap must not exceed it."""
    assert client.LONG_POLL_SECONDS <= MAX_WAIT_SECONDS


def test_evidence_never_sends_a_containers_escape_sequences_to_the_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    failed = {
        "error": "health check failed\x1b[2J",
        "hosts": [
            {
                "name": "web-1",
                "state": "failed",
                "error": "unhealthy",
                "evidence": {
                    "problems": [
                        {
                            "reason": "exited",
                            "message": "bye\x1b]0;pwned\x07",
                            "logs": ["\x1b[31mred"],
                        }
                    ]
                },
            }
        ],
    }
    wait.evidence(failed)
    printed = capsys.readouterr().err
    assert "\x1b" not in printed and "\x07" not in printed
    assert "?[31mred" in printed and "bye?]0;pwned?" in printed
