"""Releases' pinned digests (server/pins.py decides which report pins a release). SQL only."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import App, Assignment, Host, Release


async def pin_digest(session: AsyncSession, app: str, number: int, digest: str) -> list[str]:
    """Pin release `number` of `app` to `digest` unless it has a pin: the first wins (one
    statement, so two hosts' reports cannot both). When this one did, the hosts assigned
    the release get a new generation (their desired state now carries the pin: one that
    pulled another image for it replaces it); their names, to push to."""
    app_id = select(App.id).where(App.name == app).scalar_subquery()
    result = await session.execute(
        update(Release)
        .where(Release.app_id == app_id, Release.number == number, Release.digest.is_(None))
        .values(digest=digest)
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        return []
    assigned = select(Assignment.host_id).where(
        Assignment.app_id == app_id, Assignment.release == number
    )
    await session.execute(
        update(Host)
        .where(Host.id.in_(assigned))
        .values(generation=Host.generation + 1)
        .execution_options(synchronize_session=False)
    )
    names = await session.scalars(select(Host.name).where(Host.id.in_(assigned)))
    return list(names.all())
