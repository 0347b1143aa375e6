"""`GET /v1/apps/{app}/logs` through the agent's door, with a hand-driven (hostile) agent:
the server accepts log chunks only for a stream it opened to that very host, tells the agent
to stop when the client goes away, ends the stream with a note when the agent goes away,
and a frame past the protocol's caps closes the connection. The real agent and Docker
Engine are tests/e2e/test_logs.py's."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType

from agent.caps import MAX_LOG_LINE
from agent.codec import encode
from agent.log_protocol import LogChunk, LogEntry, LogsEnd
from tests.conftest import Flotilla
from tests.server.test_agent_door import VALID, connect


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next frame of this type the server sends the agent (desired states skipped)."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == WSMsgType.TEXT, msg
        body = orjson.loads(msg.data)
        if body["type"] == kind:
            return dict(body)


async def assigned(flotilla: Flotilla) -> tuple[str, aiohttp.ClientWebSocketResponse]:
    """A host with app `web` assigned, and its (hand-driven) agent's socket."""
    name, token = await flotilla.add_host()
    assert (await flotilla.api.call("POST", "/v1/apps/web/deployments", VALID))[0] == 202
    ws = await connect(flotilla, name, token)
    while True:
        desired = await next_of(ws, "desired")
        if desired["assignments"]:
            return name, ws


def chunk(host: str, stream: int, *lines: str) -> str:
    entries = tuple(LogEntry("web-1", 1, 1, "2026-12-06T14:00:00Z", line) for line in lines)
    return encode(LogChunk(host, stream, entries))


async def refused_for_stream(flotilla: Flotilla) -> float:
    response = await flotilla.api.session.get(flotilla.url + "/metrics")
    for line in (await response.text()).splitlines():
        if line.startswith('flotilla_agent_reports_refused_total{reason="stream"}'):
            return float(line.split()[-1])
    return 0.0


async def test_chunks_only_for_opened_streams_and_stop_when_the_client_leaves(
    flotilla_sqlite: Flotilla,
) -> None:
    f = flotilla_sqlite
    host, ws = await assigned(f)
    await ws.send_str(chunk(host, 999, "made up before anything was opened"))
    headers = {"Authorization": f"Bearer {f.api.token}"}
    async with f.api.session.get(
        f.url + "/v1/apps/web/logs?follow=true&tail=5", headers=headers
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        opened = await next_of(ws, "logs_open")
        assert (opened["app"], opened["tail"], opened["follow"]) == ("web", 5, True)
        stream = opened["stream"]
        await ws.send_str(chunk(host, stream + 1000, "a stream nobody opened"))
        await ws.send_str(chunk(host, stream, "hello from web"))
        line = json.loads(await asyncio.wait_for(response.content.readline(), 10))
        assert line == {
            "host": host,
            "app": "web",
            "container": "web-1",
            "replica": 1,
            "release": 1,
            "time": "2026-12-06T14:00:00Z",
            "line": "hello from web",
        }
    # the client went away: the agent is told to stop that stream
    stop = await next_of(ws, "logs_stop")
    assert stop["stream"] == stream
    await ws.send_str(chunk(host, stream, "too late: the stream is closed"))
    await ws.send_str(encode(LogsEnd(host, stream)))
    for _ in range(100):
        if await refused_for_stream(f) >= 4:
            break
        await asyncio.sleep(0.05)
    assert await refused_for_stream(f) == 4  # 999, stream+1000, and both after the stop
    assert not ws.closed  # refused, not fatal: a chunk may cross a stop on the way
    await ws.close()


async def test_the_end_and_a_lost_agent_end_the_answer(flotilla_sqlite: Flotilla) -> None:
    f = flotilla_sqlite
    host, ws = await assigned(f)
    headers = {"Authorization": f"Bearer {f.api.token}"}
    async with f.api.session.get(f.url + "/v1/apps/web/logs", headers=headers) as response:
        stream = (await next_of(ws, "logs_open"))["stream"]
        await ws.send_str(chunk(host, stream, "one", "two"))
        await ws.send_str(encode(LogsEnd(host, stream, "no container of app web")))
        text = await asyncio.wait_for(response.text(), 10)
    records = [json.loads(line) for line in text.splitlines() if line]
    assert [r.get("line") for r in records] == ["one", "two", None]
    assert records[-1] == {"host": host, "note": "no container of app web"}

    async with f.api.session.get(f.url + "/v1/apps/web/logs?follow=1", headers=headers) as response:
        await next_of(ws, "logs_open")
        await ws.close()
        text = await asyncio.wait_for(response.text(), 10)
    assert json.loads(text) == {
        "host": host,
        "note": "the agent disconnected; this host's stream ended",
    }


async def test_a_line_past_the_cap_closes_the_connection(flotilla_sqlite: Flotilla) -> None:
    f = flotilla_sqlite
    host, ws = await assigned(f)
    headers = {"Authorization": f"Bearer {f.api.token}"}
    async with f.api.session.get(
        f.url + "/v1/apps/web/logs?follow=true", headers=headers
    ) as response:
        stream = (await next_of(ws, "logs_open"))["stream"]
        frame = orjson.loads(chunk(host, stream, "x"))
        frame["lines"][0]["line"] = "x" * (MAX_LOG_LINE + 1)
        await ws.send_str(orjson.dumps(frame).decode())
        closing = await asyncio.wait_for(ws.receive(), 10)
        while closing.type == WSMsgType.TEXT:
            closing = await asyncio.wait_for(ws.receive(), 10)
        assert ws.close_code == 1007
        text = await asyncio.wait_for(response.text(), 10)
    assert "x" * 10 not in text
    assert json.loads(text)["note"].startswith("the agent disconnected")


async def test_a_head_opens_no_stream(flotilla_sqlite: Flotilla) -> None:
    """A HEAD of a streaming route is refused (405): answering it would open a stream (a log
    stream to every agent of the app) only to send nothing of it."""
    f = flotilla_sqlite
    _, ws = await assigned(f)
    auth = {"Authorization": f"Bearer {f.api.token}"}
    try:
        for path in ("/v1/apps/web/logs?tail=7", "/v1/events/stream", "/v1/agent/connect"):
            async with f.api.session.head(f.url + path, headers=auth) as response:
                assert response.status == 405, path
        # the first log request the agent gets is the GET's, not the HEAD's
        async with f.api.session.get(f.url + "/v1/apps/web/logs?tail=1", headers=auth) as got:
            assert got.status == 200
            assert (await next_of(ws, "logs_open"))["tail"] == 1
    finally:
        await ws.close()
