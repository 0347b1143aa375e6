"""Every query and write of webhooks and their delivery outbox.

Deliveries are enqueued by `enqueue`, called from `store.add_event` in the transaction that
records the event, so an event and its deliveries commit (or vanish) together. The sender
claims a webhook with a short lease (on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so server
replicas never wait on each other), sends its oldest pending delivery, records the outcome and
moves to the next: one webhook's deliveries go out one at a time, in order.

Lock order: a transaction that writes a webhook row and its deliveries writes the webhook
first (`delete_webhook`; the sender's `set_lease` before `record`). Two transactions that
took them in opposite orders deadlocked on PostgreSQL, and one of them failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BindParameter,
    Integer,
    Select,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.db.models import Webhook, WebhookDelivery, utcnow
from server.db.session import Listener, wake_after
from server.states import DeliveryStatus, matches, public_name

ENQUEUED = "flotilla.webhook_enqueued"  # a session.info flag: wake the sender after commit
SUBSCRIBERS = "flotilla.webhook_subscribers"  # session.info: (transaction, webhooks) memo


@dataclass(frozen=True)
class Claim:
    """A webhook this process holds the lease of: it alone sends its deliveries."""

    id: int
    url: str
    secret: str


@dataclass(frozen=True)
class Due:
    """The oldest pending delivery of a webhook, due now."""

    id: int
    event: str
    payload: dict[str, Any]
    attempts: int
    created_at: dt.datetime


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def create_webhook(
    session: AsyncSession, url: str, events: list[str], secret: str, actor: str
) -> Webhook:
    """Add a webhook subscribing `url` to the events matching `events`."""
    hook = Webhook(url=url, events=events, secret=secret, created_by=actor)
    session.add(hook)
    await session.flush()
    return hook


async def list_webhooks(session: AsyncSession) -> Sequence[Webhook]:
    """Every webhook, oldest first."""
    return (await session.scalars(select(Webhook).order_by(Webhook.id))).all()


async def get_webhook(session: AsyncSession, webhook_id: int) -> Webhook | None:
    """The webhook of this id, if any."""
    return await session.get(Webhook, webhook_id)


async def delete_webhook(session: AsyncSession, webhook_id: int) -> bool:
    """Delete a webhook and its deliveries (in this order: see the lock order above)."""
    result = await session.execute(delete(Webhook).where(Webhook.id == webhook_id))
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
    return bool(getattr(result, "rowcount", 0))


async def list_deliveries(
    session: AsyncSession, webhook_id: int, limit: int, before: int | None = None
) -> Sequence[WebhookDelivery]:
    """The webhook's newest deliveries, at most `limit`, older than `before` if given."""
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return (await session.scalars(query)).all()


async def enqueue(
    session: AsyncSession,
    kind: str,
    message: str,
    *,
    app: str | None,
    deployment_id: int | None,
    host: str | None,
) -> None:
    """Queue one delivery per webhook that subscribes to this event (none if unpublished)."""
    name = public_name(kind)
    if name is None:  # not published: no query
        return
    wanted = await subscribed(session, kind)
    if not wanted:
        return
    now = utcnow()
    payload = {
        "at": now.isoformat(),
        "app": app,
        "deployment": deployment_id,
        "host": host,
        "message": message,
    }
    for webhook_id in wanted:
        session.add(
            WebhookDelivery(
                webhook_id=webhook_id,
                event=name,
                payload=payload,
                status=DeliveryStatus.PENDING,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )
    session.info[ENQUEUED] = True


_SUBSCRIBERS = select(Webhook.id, Webhook.events)  # built once: every pass that records an event


async def subscribers(session: AsyncSession) -> list[tuple[int, list[str]]]:
    """Every webhook's id and patterns, read once per transaction (a controller pass records
    many events; a deploy reads them before it locks the app row)."""
    transaction = session.sync_session.get_transaction()
    memo = session.info.get(SUBSCRIBERS)
    if memo is not None and transaction is not None and memo[0] is transaction:
        return list(memo[1])
    rows = (await session.execute(_SUBSCRIBERS)).all()
    hooks = [(hook_id, list(events)) for hook_id, events in rows]
    session.info[SUBSCRIBERS] = (session.sync_session.get_transaction(), hooks)
    return hooks


async def subscribed(session: AsyncSession, kind: str) -> list[int]:
    """Ids of the webhooks that want an event of this internal kind (none if unpublished)."""
    name = public_name(kind)
    if name is None:
        return []
    return [hook_id for hook_id, events in await subscribers(session) if matches(events, name)]


def commit_listener(wake: Callable[[], None]) -> Listener:
    """A listener (`create_sessions`) that calls `wake` after every commit of a session that
    enqueued a delivery."""
    return wake_after(ENQUEUED, wake)


def _claimable() -> Select[Webhook]:
    """Webhooks whose oldest pending delivery is due (`now`) and that no one holds, oldest
    due first, at most `limit`: built once (the sender asks every second, and building the
    two aliases and the subquery cost more than running it)."""
    d = aliased(WebhookDelivery)
    older = aliased(WebhookDelivery)
    now: BindParameter[dt.datetime] = bindparam("now")
    head = (
        select(func.min(older.id))
        .where(older.webhook_id == d.webhook_id, older.status == DeliveryStatus.PENDING)
        .scalar_subquery()
    )
    return (
        select(Webhook)
        .join(d, d.webhook_id == Webhook.id)
        .where(
            d.status == DeliveryStatus.PENDING,
            d.next_attempt_at <= now,
            d.id == head,
            or_(Webhook.lease_until.is_(None), Webhook.lease_until < now),
        )
        .order_by(d.next_attempt_at, d.id)
        .limit(bindparam("limit", type_=Integer))
    )


_CLAIMABLE = _claimable()
# PostgreSQL: replicas skip the webhooks another one is claiming instead of waiting on them
_CLAIMABLE_SKIP_LOCKED = _CLAIMABLE.with_for_update(of=Webhook, skip_locked=True)


async def claim(
    session: AsyncSession, now: dt.datetime, limit: int, lease_until: dt.datetime
) -> list[Claim]:
    """Lease up to `limit` webhooks whose oldest pending delivery is due and that no one holds."""
    if limit <= 0:
        return []
    query = _CLAIMABLE_SKIP_LOCKED if _postgres(session) else _CLAIMABLE
    hooks = (await session.scalars(query, {"now": now, "limit": limit})).unique().all()
    if not hooks:
        return []
    # a conditional write, not the ORM's: on SQLite nothing locks the rows read above, and a
    # webhook deleted (or leased by another process) since then must be skipped, not fail the
    # pass with a StaleDataError
    free = or_(Webhook.lease_until.is_(None), Webhook.lease_until < now)
    leased = await session.scalars(
        update(Webhook)
        .where(Webhook.id.in_([h.id for h in hooks]), free)
        .values(lease_until=lease_until)
        .returning(Webhook.id)
        .execution_options(synchronize_session=False)
    )
    won = set(leased.all())
    return [Claim(h.id, h.url, h.secret) for h in hooks if h.id in won]


async def next_due(session: AsyncSession, webhook_id: int, now: dt.datetime) -> Due | None:
    """The webhook's oldest pending delivery if it is due; None if none or it must wait."""
    row = await session.scalar(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.webhook_id == webhook_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .order_by(WebhookDelivery.id)
        .limit(1)
    )
    if row is None or _utc(row.next_attempt_at) > now:
        return None
    return Due(row.id, row.event, dict(row.payload), row.attempts, _utc(row.created_at))


async def record(
    session: AsyncSession,
    delivery_id: int,
    *,
    status: DeliveryStatus,
    attempts: int,
    status_code: int | None,
    error: str | None,
    next_attempt_at: dt.datetime,
    delivered_at: dt.datetime | None,
) -> None:
    """Write the outcome of one attempt (only while the delivery is still pending)."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == DeliveryStatus.PENDING)
        .values(
            status=status,
            attempts=attempts,
            last_status_code=status_code,
            last_error=error,
            next_attempt_at=next_attempt_at,
            delivered_at=delivered_at,
        )
    )


async def set_lease(session: AsyncSession, webhook_id: int, until: dt.datetime | None) -> None:
    """Extend (or, with None, release) this process's lease on a webhook."""
    await session.execute(update(Webhook).where(Webhook.id == webhook_id).values(lease_until=until))


async def prune(session: AsyncSession, finished_before: dt.datetime) -> int:
    """Forget finished deliveries older than the retention, and those of deleted webhooks."""
    old = await session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.status != DeliveryStatus.PENDING,
            WebhookDelivery.created_at < finished_before,
        )
    )
    orphans = await session.execute(
        delete(WebhookDelivery).where(WebhookDelivery.webhook_id.not_in(select(Webhook.id)))
    )
    return int(getattr(old, "rowcount", 0) or 0) + int(getattr(orphans, "rowcount", 0) or 0)
