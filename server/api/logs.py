"""`GET /v1/apps/{app}/logs`: the output of an app's containers, streamed through the agents.

The answer is newline-delimited JSON (`application/x-ndjson`), one object a line:
- a line of output: `{"host", "app", "container", "replica", "release", "time", "line"}`
  (`time`: RFC 3339 as the Engine stamped it; the line masked of the app's secrets);
- a note: `{"host", "note"}`: a host's stream ended early (not connected, no container,
  the agent disconnected), or lines were dropped because this client read too slowly.
An empty line is a keep-alive (every KEEPALIVE_SECONDS while following). The answer ends when
every host's stream has ended: at once for a host not connected, at the end of the output
without `follow`, when the containers stop with it.

Parameters: `host` (only that host, which must run the app and have its agent connected:
else 409), `tail` (lines per container, 0-10000, or `all`), `since` (as `docker logs
--since`: a duration such as `10m` or `1h30m`, an RFC 3339 time, or seconds since the
epoch), `follow` (true/false). The streams and their bounds are
`server/log_streams.LogStreams`'s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from agent.log_protocol import MAX_LOG_TAIL
from server.api.auth import require
from server.api.params import app_name, flag
from server.api.schemas.fields import DNS_LABEL
from server.db import assignments, store
from server.errors import Conflict, FieldError, Invalid
from server.keys import HUB, SESSIONS
from server.loops import wait_set

KEEPALIVE_SECONDS = 15.0
CHECK_SECONDS = 1.0  # how often an idle stream looks whether its client went away
WRITE_SECONDS = 2 * KEEPALIVE_SECONDS  # a client that reads nothing this long is let go
MAX_SINCE = 64  # characters of `since`

_HOST = re.compile(DNS_LABEL)
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class LogsQuery:
    """The validated parameters of a logs call."""

    host: str | None
    tail: int | None
    since: float | None
    follow: bool


def since_of(text: str, now: float) -> float:
    """Seconds since the epoch from a `since` as `docker logs --since` takes it: a duration
    before `now` (`10m`, `1h30m`, `2.5s`), an RFC 3339 time (without a zone: UTC), or
    seconds since the epoch. ValueError if it is none of these."""
    text = text.strip()
    if _DURATION.fullmatch(text):
        return now - sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    when = dt.datetime.fromisoformat(text.replace("z", "Z"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def logs_query(request: web.Request, now: float) -> LogsQuery:
    """The call's parameters, each refused (422) naming it."""
    query = request.query
    host = query.get("host")
    if host is not None and (len(host) > 63 or not _HOST.fullmatch(host)):
        raise Invalid("host must be a host's name", [FieldError("host", "not a host name")])
    tail: int | None = None
    raw_tail = query.get("tail", "all")
    if raw_tail != "all":
        try:
            tail = int(raw_tail)
        except ValueError:
            tail = -1
        if not 0 <= tail <= MAX_LOG_TAIL:
            raise Invalid(
                f"tail must be a number of lines from 0 to {MAX_LOG_TAIL}, or all",
                [FieldError("tail", f"must be 0-{MAX_LOG_TAIL} or all")],
            )
    since: float | None = None
    raw_since = query.get("since")
    if raw_since is not None:
        try:
            if len(raw_since) > MAX_SINCE:
                raise ValueError("too long")
            since = since_of(raw_since, now)
        except (ValueError, OverflowError, OSError):
            raise Invalid(
                "since must be a duration (10m, 1h30m), an RFC 3339 time or seconds since "
                "the epoch",
                [FieldError("since", "not a duration, an RFC 3339 time or a timestamp")],
            ) from None
        if since <= 0:
            since = None  # before the epoch: everything (the Engine takes only positive ones)
    return LogsQuery(host, tail, since, flag(request, "follow"))


async def stream_logs(request: web.Request) -> web.StreamResponse:
    """GET /v1/apps/{app}/logs[?host=&tail=&since=&follow=]: see the module docstring."""
    name = app_name(request)
    await require(request, "read", name)
    query = logs_query(request, time.time())
    async with request.app[SESSIONS]() as session:
        app = await store.get_app(session, name)  # 404 for an unknown app
        assigned = await assignments.assigned_hosts(session, app.id)
    hub = request.app[HUB]
    if query.host is not None:
        if query.host not in assigned:
            raise Conflict(
                "not_on_host",
                f"app {name} does not run on host {query.host}",
                [FieldError("host", f"app {name} has no assignment there")],
            )
        if not hub.is_connected(query.host):
            raise Conflict(
                "host_not_connected",
                f"the agent of host {query.host} is not connected to this server",
                [FieldError("host", "its agent is not connected")],
            )
        assigned = [query.host]
    connected = [h for h in assigned if hub.is_connected(h)]
    tap = hub.logs.reserve(name, connected)  # 409 too_many_log_streams: nothing held
    try:
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await hub.logs.start(tap, query.tail, query.since, query.follow)
        notes = [
            {"host": h, "note": "the agent is not connected to this server"}
            for h in assigned
            if h not in connected
        ]
        await _write(response, notes)
        quiet = 0.0
        while not tap.ended:
            if not tap.wake.is_set():
                await wait_set(tap.wake, CHECK_SECONDS)
            if not tap.wake.is_set():
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away
                quiet += CHECK_SECONDS
                if quiet >= KEEPALIVE_SECONDS:
                    quiet = 0.0
                    await _write(response, (), keepalive=True)
                continue
            quiet = 0.0
            await _write(response, tap.take())
    except (ConnectionError, TimeoutError):
        pass  # the client went away, or stopped reading (WRITE_SECONDS)
    finally:
        await hub.logs.close(tap)
    return response


async def _write(
    response: web.StreamResponse, records: Sequence[Mapping[str, object]], keepalive: bool = False
) -> None:
    """Send records (or a keep-alive's empty line); TimeoutError if the client has read
    nothing for WRITE_SECONDS: a stream it stopped reading must not hold the host's slots."""
    if records or keepalive:
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records) or "\n"
        async with asyncio.timeout(WRITE_SECONDS):
            await response.write(text.encode())
