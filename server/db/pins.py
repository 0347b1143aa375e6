"""Releases' pinned digests (server/pins.py decides which report pins a release). SQL only."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import App, Host, Release


async def pin_digest(session: AsyncSession, app: str, number: int, digest: str) -> str:
    """Pin release `number` of `app` to `digest` unless it has a pin: the first wins (one
    statement, so that two reports, or two server replicas, cannot both). The pin."""
    app_id = select(App.id).where(App.name == app).scalar_subquery()
    of_release = (Release.app_id == app_id, Release.number == number)
    await session.execute(
        update(Release)
        .where(*of_release, Release.digest.is_(None))
        .values(digest=digest)
        .execution_options(synchronize_session=False)
    )
    pin = await session.scalar(select(Release.digest).where(*of_release))
    return pin or digest


async def bump(session: AsyncSession, hosts: list[str]) -> None:
    """New generations for these hosts: their desired state changed (a pin)."""
    if hosts:
        await session.execute(
            update(Host)
            .where(Host.name.in_(hosts))
            .values(generation=Host.generation + 1)
            .execution_options(synchronize_session=False)
        )
