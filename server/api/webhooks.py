"""Webhooks: register, list and delete them, and see their recent deliveries (scope admin)."""

from __future__ import annotations

from aiohttp import web

from server.api.audit import TARGET
from server.api.auth import require
from server.api.body import read_body
from server.api.deployments import MAX_ID
from server.api.pages import next_cursor, page_int
from server.api.schemas.webhooks import WebhookDeliveryOut, WebhookIn, WebhookOut
from server.db import webhooks as db
from server.db.models import Webhook, WebhookDelivery
from server.db.store import as_utc
from server.errors import FieldError, Invalid, NotFound
from server.keys import SESSIONS, SETTINGS
from server.states import DeliveryStatus
from server.webhooks import internal_target


def webhook_out(hook: Webhook) -> WebhookOut:
    """A webhook as the API shows it, without its secret."""
    return WebhookOut(
        id=hook.id,
        url=hook.url,
        events=list(hook.events),
        created_by=hook.created_by,
        created_at=as_utc(hook.created_at) or hook.created_at,
    )


def delivery_out(row: WebhookDelivery) -> WebhookDeliveryOut:
    """One delivery attempt record; `next_attempt_at` only while it is still pending."""
    pending = row.status == DeliveryStatus.PENDING
    return WebhookDeliveryOut(
        id=row.id,
        event=row.event,
        status=row.status,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=as_utc(row.created_at) or row.created_at,
        next_attempt_at=as_utc(row.next_attempt_at) if pending else None,
        delivered_at=as_utc(row.delivered_at),
    )


def _id(request: web.Request) -> int:
    try:
        number = int(request.match_info["id"])
    except ValueError:
        raise Invalid("id must be an integer", [FieldError("id", "not an integer")]) from None
    if not 0 <= number <= MAX_ID:  # a well-formed id that cannot exist
        raise NotFound(f"webhook {number} does not exist", "id")
    return number


async def create_webhook(request: web.Request) -> web.Response:
    """POST /v1/webhooks: subscribe a URL to events; answers without the secret."""
    caller = await require(request, "admin")
    body = await read_body(request, WebhookIn)
    internal = internal_target(body.url)
    if internal is not None and not request.app[SETTINGS].allow_internal_webhooks:
        raise Invalid(
            f"refused webhook URL: {internal} (start the server with --allow-internal-webhooks "
            "to allow it)",
            [FieldError("url", internal)],
        )
    async with request.app[SESSIONS].begin() as session:
        hook = await db.create_webhook(
            session, body.url, list(dict.fromkeys(body.events)), body.secret, caller.name
        )
    request[TARGET] = f"webhook={hook.id}"
    return web.json_response(
        webhook_out(hook).model_dump(mode="json"),
        status=201,
        headers={"Location": f"/v1/webhooks/{hook.id}"},
    )


async def list_webhooks(request: web.Request) -> web.Response:
    """GET /v1/webhooks."""
    await require(request, "admin")
    async with request.app[SESSIONS]() as session:
        hooks = await db.list_webhooks(session)
    return web.json_response({"webhooks": [webhook_out(h).model_dump(mode="json") for h in hooks]})


async def delete_webhook(request: web.Request) -> web.Response:
    """DELETE /v1/webhooks/{id}: stop sending; its pending deliveries are dropped."""
    await require(request, "admin")
    webhook_id = _id(request)
    async with request.app[SESSIONS].begin() as session:
        if not await db.delete_webhook(session, webhook_id):
            raise NotFound(f"webhook {webhook_id} does not exist", "id")
    return web.Response(status=204)


async def list_deliveries(request: web.Request) -> web.Response:
    """GET /v1/webhooks/{id}/deliveries[?limit=N&cursor=C]: newest first, a page at a time."""
    await require(request, "admin")
    webhook_id = _id(request)
    page = page_int(request, 100)
    limit = page.limit or 100
    async with request.app[SESSIONS]() as session:
        if await db.get_webhook(session, webhook_id) is None:
            raise NotFound(f"webhook {webhook_id} does not exist", "id")
        rows = await db.list_deliveries(session, webhook_id, limit, page.after)
    return web.json_response(
        {
            "deliveries": [delivery_out(r).model_dump(mode="json") for r in rows],
            "next_cursor": next_cursor(rows, limit, lambda r: r.id),
        }
    )
