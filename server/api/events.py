"""The event log: what happened, to what, and who did it; listed, or streamed live.

`GET /v1/events/stream` is Server-Sent Events (aiohttp-sse): each event is sent with its id
as the SSE `id` and its JSON (`EventOut`) as `data`, under the SSE event name `event`. A
client that reconnects with `Last-Event-ID` gets every event past that id first (from the
database), then the live ones (from the shared `server/event_feed.EventFeed`); without it,
only events from now on. A comment line keeps an idle connection alive every
KEEPALIVE_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from server.api.answers import EventOut, EventsOut
from server.api.auth import Caller, confine, require
from server.api.deployments import MAX_ID
from server.api.pages import next_cursor, page_int
from server.api.params import app_query
from server.api.schemas.fields import DNS_LABEL
from server.db import events, store
from server.db.models import Event
from server.errors import FieldError, Invalid
from server.event_feed import READ_LIMIT, Subscription
from server.keys import EVENT_FEED, SESSIONS

KEEPALIVE_SECONDS = 15.0


def event_out(e: Event) -> EventOut:
    """An event row as the API shows it."""
    return EventOut(
        id=e.id,
        at=store.as_utc(e.at) or e.at,
        kind=e.kind,
        actor=e.actor,
        app=e.app,
        deployment=e.deployment_id,
        host=e.host,
        message=e.message,
    )


async def list_events(request: web.Request) -> web.Response:
    """GET /v1/events[?app=NAME&deployment=ID&limit=N&cursor=C]: newest first, a page at a
    time (a token confined to some apps sees only their events)."""
    caller = await require(request, "read")
    page = page_int(request, 100)
    limit = page.limit or 100
    try:
        deployment = int(request.query["deployment"]) if "deployment" in request.query else None
    except ValueError:
        raise Invalid(
            "deployment must be an integer", [FieldError("deployment", "must be an integer")]
        ) from None
    if deployment is not None and not 0 <= deployment <= MAX_ID:
        raise Invalid(
            f"deployment must be from 0 to {MAX_ID}", [FieldError("deployment", "out of range")]
        )
    app = app_query(request)
    if app is not None:
        confine(caller, app)
    async with request.app[SESSIONS]() as session:
        rows = await events.list_events(session, app, deployment, limit, caller.apps, page.after)
    body = EventsOut(events=[event_out(e) for e in rows], next_cursor=next_cursor(rows, limit, _id))
    return web.Response(text=body.model_dump_json(), content_type="application/json")


async def stream_events(request: web.Request) -> web.StreamResponse:
    """GET /v1/events/stream[?app=NAME] (read; a confined token sees only its apps' events,
    as GET /v1/events): Server-Sent Events, resuming past the `Last-Event-ID` header."""
    caller = await require(request, "read")
    app = _app_filter(request, caller)
    last = _last_event_id(request)
    if last is None:
        async with request.app[SESSIONS]() as session:
            last = await events.newest_id(session)
    feed = request.app[EVENT_FEED]
    sub = feed.subscribe(last, app, caller.apps)
    try:
        async with sse_response(request, ping_interval=KEEPALIVE_SECONDS) as resp:
            # the client went away, or stalled past aiohttp-sse's send timeout: it is gone
            with contextlib.suppress(ConnectionResetError, TimeoutError):
                await _stream(request, resp, sub)
    finally:
        feed.unsubscribe(sub)
    return resp


async def _stream(request: web.Request, resp: EventSourceResponse, sub: Subscription) -> None:
    await _catch_up(request, resp, sub)  # what happened since Last-Event-ID
    while resp.is_connected():
        try:
            event = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_SECONDS)
        except TimeoutError:
            continue  # nothing new: has the client gone? (the keep-alive found out)
        if event is None:
            if sub.closed:
                return  # the server is stopping
            sub.behind = False  # the buffer overflowed: read what was dropped, then go on
            await _catch_up(request, resp, sub)
            continue
        if sub.wants(event):  # not sent already (by a catch-up, say)
            await _send(resp, sub, event)


async def _catch_up(request: web.Request, resp: EventSourceResponse, sub: Subscription) -> None:
    """Send every event past `sub.after` that the database holds, oldest first."""
    cursor = sub.after
    while True:
        async with request.app[SESSIONS]() as session:
            rows = await events.read_after(session, cursor, READ_LIMIT, sub.app, sub.apps)
        for row in rows:
            if sub.wants(row):
                await _send(resp, sub, row)
        if len(rows) < READ_LIMIT:
            return
        cursor = rows[-1].id


async def _send(resp: EventSourceResponse, sub: Subscription, event: Event) -> None:
    await resp.send(event_out(event).model_dump_json(), id=str(event.id), event="event")
    sub.mark_sent(event.id)


def _id(e: Event) -> int:
    return e.id


def _app_filter(request: web.Request, caller: Caller) -> str | None:
    app = request.query.get("app")
    if app is None:
        return None
    if len(app) > 63 or not re.fullmatch(DNS_LABEL, app):
        raise Invalid("app must be an app's name", [FieldError("app", "not a valid app name")])
    confine(caller, app)
    return app


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID")
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or not 0 <= int(raw) <= MAX_ID:
        raise Invalid(
            "Last-Event-ID must be an event id",
            [FieldError("Last-Event-ID", f"must be an integer from 0 to {MAX_ID}")],
        )
    return int(raw)
