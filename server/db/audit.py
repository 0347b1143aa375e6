"""The audit table: append entries in batches, read them back filtered."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Audit

_AUDIT = cast(Table, Audit.__table__)


async def append(session: AsyncSession, rows: Iterable[dict[str, Any]]) -> None:
    """Insert audit entries (dicts of Audit's columns but id) in one executemany."""
    batch = list(rows)
    if batch:
        await session.execute(insert(_AUDIT), batch)


async def read(
    session: AsyncSession,
    *,
    actor: str | None,
    action: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int,
    before: int | None = None,
) -> Sequence[Audit]:
    """The newest entries (at most `limit`), by actor, action and time if given, older
    than the entry `before` if given."""
    query = select(Audit).order_by(Audit.id.desc()).limit(limit)
    if before is not None:
        query = query.where(Audit.id < before)
    if actor is not None:
        query = query.where(Audit.actor == actor)
    if action is not None:
        query = query.where(Audit.action == action)
    if since is not None:
        query = query.where(Audit.at >= since)
    if until is not None:
        query = query.where(Audit.at < until)
    return (await session.scalars(query)).all()
