"""Reading the event log in order, for streams, and noticing that events were written.

`store.add_event` marks its session (`ADDED`); `commit_listener` calls back after every
commit of a session that added an event, so a stream's reader wakes when there is news
instead of asking the database on a clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Event
from server.db.session import Listener, wake_after

ADDED = "flotilla.events_added"  # session.info key: this transaction appended an event


async def newest_id(session: AsyncSession) -> int:
    """The id of the newest event, 0 if there is none."""
    return int(await session.scalar(select(func.max(Event.id))) or 0)


async def list_events(
    session: AsyncSession,
    app: str | None,
    deployment_id: int | None,
    limit: int,
    apps: Collection[str] | None = None,
    before: int | None = None,
) -> Sequence[Event]:
    """The newest events (at most `limit`), of an app and/or a deployment if given, of
    `apps` only if given, older than the event `before` if given."""
    query = select(Event).order_by(Event.id.desc()).limit(limit)
    if before is not None:
        query = query.where(Event.id < before)
    if apps is not None:
        query = query.where(Event.app.in_(apps))
    if app is not None:
        query = query.where(Event.app == app)
    if deployment_id is not None:
        query = query.where(Event.deployment_id == deployment_id)
    return (await session.scalars(query)).all()


async def read_after(
    session: AsyncSession,
    after: int,
    limit: int,
    app: str | None = None,
    apps: Collection[str] | None = None,
) -> Sequence[Event]:
    """Events with an id past `after`, oldest first, at most `limit`; of `app` only, and of
    `apps` only, when given."""
    query = select(Event).where(Event.id > after).order_by(Event.id).limit(limit)
    if apps is not None:
        query = query.where(Event.app.in_(apps))
    if app is not None:
        query = query.where(Event.app == app)
    return (await session.scalars(query)).all()


async def read_range(
    session: AsyncSession, above: int, upto: int, since: dt.datetime
) -> Sequence[Event]:
    """Events with an id in (above, upto] written at or after `since`, oldest first."""
    query = (
        select(Event)
        .where(Event.id > above, Event.id <= upto, Event.at >= since)
        .order_by(Event.id)
    )
    return (await session.scalars(query)).all()


def commit_listener(wake: Callable[[], None]) -> Listener:
    """A listener (`create_sessions`) that calls `wake` after every commit of a session that
    added an event."""
    return wake_after(ADDED, wake)
