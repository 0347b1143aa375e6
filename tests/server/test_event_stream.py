"""`GET /v1/events/stream` (Server-Sent Events) and `flotilla events --follow`, against a live
server: live events arrive, `Last-Event-ID` resumes without loss or repeats, a confined token
sees only its apps, and a client that reads slowly still gets every event in order."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.db import store
from server.keys import SESSIONS
from tests.conftest import (
    Flotilla,
    _drop_postgres_database,
    _flotilla,
    _postgres_database,
)
from tests.harness import Engine, finish, start_cli


@asynccontextmanager
async def stream(
    f: Flotilla, token: str, query: str = "", last: int | None = None
) -> AsyncIterator[aiohttp.ClientResponse]:
    headers = {"Authorization": f"Bearer {token}"}
    if last is not None:
        headers["Last-Event-ID"] = str(last)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{f.url}/v1/events/stream{query}", headers=headers) as response,
    ):
        yield response


async def take(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    """The next `count` events of a stream (its `data`), each checked against its `id`."""
    got: list[dict[str, Any]] = []
    event_id = None
    while len(got) < count:
        line = (await asyncio.wait_for(response.content.readline(), 20)).decode().rstrip("\r\n")
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            body = json.loads(line[6:])
            assert body["id"] == event_id
            got.append(body)
    return got


async def add_events(f: Flotilla, app: str, count: int) -> None:
    """`count` events of `app`, written in one transaction (as the controller writes)."""
    async with f.server.app[SESSIONS].begin() as session:
        for i in range(count):
            await store.add_event(session, "note", "test", f"event {i}", app=app)


async def test_live_events_and_resuming(flotilla: Flotilla) -> None:
    f = flotilla  # SQLite and PostgreSQL
    async with stream(f, f.api.token) as live:
        assert live.status == 200 and live.content_type == "text/event-stream"
        await f.api.deploy("web", {"image": "web:v1"})
        first = await take(live, 2)
        assert [e["kind"] for e in first] == ["deploy_requested", "deploy_started"], first
        assert first[0]["app"] == "web" and first[0]["deployment"] == 1
    await f.add_host()  # happens while nobody listens
    await add_events(f, "web", 2)
    _, listed = await f.api.call("GET", "/v1/events?limit=1000")
    expected = sorted(e["id"] for e in listed["events"] if e["id"] > first[0]["id"])
    async with stream(f, f.api.token, last=first[0]["id"]) as resumed:
        again = await take(resumed, len(expected))
    assert again[0] == first[1]  # nothing repeated, nothing missed, in order
    assert [e["id"] for e in again] == expected
    kinds = [e["kind"] for e in again]
    assert "host_added" in kinds and kinds[-2:] == ["note", "note"], kinds


async def test_a_confined_token_and_an_app_filter(flotilla_sqlite: Flotilla) -> None:
    f = flotilla_sqlite
    _, made = await f.api.call(
        "POST", "/v1/tokens", {"name": "web-only", "scopes": ["read"], "apps": ["web"]}
    )
    async with (
        stream(f, made["token"], last=0) as confined,
        stream(f, f.api.token, "?app=other", last=0) as other,
    ):
        await f.add_host()  # no app: not shown to a confined token
        await add_events(f, "other", 1)
        await add_events(f, "web", 1)
        (seen,) = await take(confined, 1)
        assert seen["app"] == "web"
        (seen,) = await take(other, 1)
        assert seen["app"] == "other"
    async with stream(f, made["token"], "?app=other") as refused:
        assert refused.status == 403
    async with stream(f, f.api.token, last=-1) as bad:
        assert bad.status == 422
        assert (await bad.json())["errors"][0]["field"] == "Last-Event-ID"
    async with stream(f, "flt_nope") as bad:
        assert bad.status == 401


async def test_a_slow_client_gets_every_event_in_order(flotilla: Flotilla) -> None:
    f = flotilla
    async with stream(f, f.api.token) as slow:
        await asyncio.sleep(0.2)  # subscribed
        await add_events(f, "web", 1500)  # far past a client's buffer, at once
        got = await take(slow, 1500)
    assert [e["message"] for e in got] == [f"event {i}" for i in range(1500)]


async def test_events_follow(flotilla_sqlite: Flotilla) -> None:
    f = flotilla_sqlite
    await add_events(f, "web", 3)
    proc = await start_cli(
        "events", "--follow", "--limit", "2", "--app", "web", "-o", "json",
        "--server", f.url, "--token", f.api.token,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 20)) for _ in "ab"]
        assert [e["message"] for e in lines] == ["event 1", "event 2"]
        await f.api.deploy("web", {"image": "web:v1"})
        await f.api.deploy("other", {"image": "web:v1"})  # not --app web
        nxt = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert nxt["kind"] == "deploy_requested" and nxt["app"] == "web"
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        ran = await finish(proc, 20)
    assert ran.code == 130, ran


@pytest.fixture
async def flotilla_postgres(tmp_path: Path, engine: Engine) -> AsyncIterator[Flotilla]:
    """A server on PostgreSQL alone (SQLite writes one transaction at a time)."""
    url, name = await _postgres_database()
    try:
        async for f in _flotilla(url, tmp_path, engine):
            yield f
    finally:
        await _drop_postgres_database(name)


async def test_an_event_committed_after_a_later_one_is_streamed(
    flotilla_postgres: Flotilla,
) -> None:
    """On PostgreSQL an id is taken at insert: a transaction that commits late makes an
    event with a lower id appear after a higher one was streamed."""
    f = flotilla_postgres
    sessions = f.server.app[SESSIONS]
    async with stream(f, f.api.token) as live:
        await asyncio.sleep(0.2)  # subscribed
        async with sessions.begin() as slow:
            await store.add_event(slow, "note", "test", "first written", app="web")
            await slow.flush()  # its id is taken now
            await add_events(f, "web", 1)  # written and committed meanwhile
            (seen,) = await take(live, 1)
            assert seen["message"] == "event 0"
        (late,) = await take(live, 1)
    assert late["message"] == "first written" and late["id"] < seen["id"]
