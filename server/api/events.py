"""The audit log: what happened, to what, and who did it."""

from __future__ import annotations

from aiohttp import web

from server.api.auth import confine, require
from server.api.deployments import MAX_ID
from server.api.params import app_query
from server.db import store
from server.errors import FieldError, Invalid
from server.keys import SESSIONS


async def list_events(request: web.Request) -> web.Response:
    """GET /v1/events[?app=NAME&deployment=ID&limit=N]: newest first (a token confined to
    some apps sees only their events)."""
    caller = await require(request, "read")
    try:
        limit = int(request.query.get("limit", "100"))
        deployment = int(request.query["deployment"]) if "deployment" in request.query else None
    except ValueError:
        raise Invalid(
            "limit and deployment must be integers",
            [
                FieldError("limit", "must be an integer"),
                FieldError("deployment", "must be an integer"),
            ],
        ) from None
    if not 1 <= limit <= 1000:
        raise Invalid("limit must be 1-1000", [FieldError("limit", "must be 1-1000")])
    if deployment is not None and not 0 <= deployment <= MAX_ID:
        raise Invalid(
            f"deployment must be from 0 to {MAX_ID}", [FieldError("deployment", "out of range")]
        )
    app = app_query(request)
    if app is not None:
        confine(caller, app)
    async with request.app[SESSIONS]() as session:
        rows = await store.list_events(session, app, deployment, limit, caller.apps)
    return web.json_response(
        {
            "events": [
                {
                    "id": e.id,
                    "at": (store.as_utc(e.at) or e.at).isoformat(),
                    "kind": e.kind,
                    "actor": e.actor,
                    "app": e.app,
                    "deployment": e.deployment_id,
                    "host": e.host,
                    "message": e.message,
                }
                for e in rows
            ]
        }
    )
