"""The audit trail: the middleware that records calls, and GET /v1/audit (scope admin).

Recorded: every mutating call (POST, PUT, PATCH, DELETE) that succeeded, and every call
refused for who made it (401, 403, 429), whatever its method, the agents' socket included.
A call refused for its content (400, 404, 409, 422) changed nothing and is not recorded.
Each entry has the actor (the token's name; none if the token was unknown), the action
(the route's name, such as `token.create`), the target (the URL's parts, such as `app=web`,
or what the handler names), the source address, the user agent, the request id (the
client's `X-Request-Id` if it is sane, else a new one; answered in `X-Request-Id`) and the
outcome (the HTTP status).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from server.api.answers import AuditListOut, AuditOut
from server.api.auth import ACTOR, require
from server.api.pages import next_cursor, page_int
from server.audit import Entry
from server.db import audit as db
from server.db.store import as_utc
from server.errors import FieldError, Invalid
from server.keys import AUDIT, SESSIONS

TARGET = web.RequestKey("audit_target", str)  # a handler's own name for what it acted on
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REFUSED = frozenset({401, 403, 429})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _action(request: web.Request) -> str:
    route = request.match_info.route
    name = route.name
    if name:
        return name
    resource = route.resource
    return f"{request.method} {resource.canonical if resource is not None else request.path}"


def _target(request: web.Request) -> str | None:
    if TARGET in request:
        return request[TARGET][:300]
    parts = ",".join(f"{k}={v}" for k, v in request.match_info.items())
    return parts[:300] or None


def _detail(response: web.StreamResponse) -> str | None:
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes):
        return None
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return None
    return str(detail)[:1000] if detail is not None else None


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record mutating and refused calls (outside the problems middleware: it sees the
    status each call was answered with)."""
    request_id = _request_id(request)
    response = await handler(request)
    if not response.prepared:  # a WebSocket's headers are gone by now
        response.headers["X-Request-Id"] = request_id
    status = response.status
    if (request.method in MUTATING and status < 400) or status in REFUSED:
        request.app[AUDIT].record(
            Entry(
                at=dt.datetime.now(dt.UTC),
                actor=request.get(ACTOR),
                action=_action(request)[:100],
                target=_target(request),
                source=(request.remote or None),
                user_agent=request.headers.get("User-Agent", "")[:300] or None,
                request_id=request_id,
                outcome=status,
                detail=_detail(response) if status >= 400 else None,
            )
        )
    return response


def _time(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        message = "an ISO 8601 time, such as 2026-12-06T10:00:00Z"
        raise Invalid(f"{name} must be {message}", [FieldError(name, message)]) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


async def list_audit(request: web.Request) -> web.Response:
    """GET /v1/audit[?actor=&action=&since=&until=&limit=&cursor=]: newest first, a page
    at a time."""
    await require(request, "admin")
    page = page_int(request, 100)
    limit = page.limit or 100
    since, until = _time(request, "since"), _time(request, "until")
    await request.app[AUDIT].write()  # what this process recorded so far, readable now
    async with request.app[SESSIONS]() as session:
        rows = await db.read(
            session,
            actor=request.query.get("actor"),
            action=request.query.get("action"),
            since=since,
            until=until,
            limit=limit,
            before=page.after,
        )
    out = AuditListOut(
        audit=[
            AuditOut(
                id=r.id,
                at=as_utc(r.at) or r.at,
                actor=r.actor,
                action=r.action,
                target=r.target,
                source=r.source,
                user_agent=r.user_agent,
                request_id=r.request_id,
                outcome=r.outcome,
                detail=r.detail,
            )
            for r in rows
        ],
        next_cursor=next_cursor(rows, limit, lambda r: r.id),
    )
    return web.json_response(out.model_dump(mode="json"))
