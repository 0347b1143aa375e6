"""`flotilla deploy --wait`: one long poll is capped by the server (600 s), so the CLI polls
again until its own --timeout has passed, and its exit code says how the deployment ended.

The REST call is replaced by a script of answers: what is tested is the CLI's loop, not the
server (whose long poll the end-to-end tests use)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from server.api.deployments import MAX_WAIT_SECONDS
from server.cli import client

STARTED = {"id": 7, "kind": "deploy", "app": "web", "release": 3, "status": "pending"}


def run(
    monkeypatch: pytest.MonkeyPatch, answers: list[tuple[int, dict[str, Any]]], timeout: float
) -> tuple[int, list[str]]:
    asked: list[str] = []

    def call(server: str, token: str, method: str, path: str, *_: Any, **__: Any) -> Any:
        asked.append(path)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    monkeypatch.setattr(client, "_call", call)
    args = argparse.Namespace(server="http://127.0.0.1:1", wait=True, timeout=timeout)
    return client._started(args, "token", 202, STARTED), asked


def test_waits_past_one_long_poll_until_the_deployment_ends(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    running = (200, {"id": 7, "status": "running"})
    code, asked = run(
        monkeypatch, [running, running, (200, {"id": 7, "status": "succeeded"})], 3600
    )
    assert code == 0
    assert len(asked) == 3  # a 3,600 s wait is several long polls, each within the server's cap
    assert all(float(p.split("wait=")[1]) <= client.LONG_POLL_SECONDS for p in asked)
    assert capsys.readouterr().out.endswith("deployment 7: succeeded\n")


def test_a_deployment_that_fails_exits_1_with_its_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = (200, {"id": 7, "status": "rolled_back", "error": "host h1: crashed"})
    code, _ = run(monkeypatch, [failed], 600)
    assert code == 1
    out = capsys.readouterr()
    assert "deployment 7: rolled_back" in out.out and "host h1: crashed" in out.err


def test_a_deployment_still_running_when_time_is_up_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, asked = run(monkeypatch, [(200, {"id": 7, "status": "running"})], 0)
    assert code == 1
    assert asked == ["/v1/deployments/7?wait=0.000"]
    assert capsys.readouterr().out.endswith("deployment 7: running\n")


def test_a_refused_poll_exits_1_with_the_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(monkeypatch, [(403, {"detail": "token lacks the read scope"})], 600)
    assert code == 1
    assert "token lacks the read scope" in capsys.readouterr().err


def test_each_long_poll_stays_within_what_the_server_accepts() -> None:
    """The CLI does not import the server's API module (aiohttp); its cap must not exceed it."""
    assert client.LONG_POLL_SECONDS <= MAX_WAIT_SECONDS
