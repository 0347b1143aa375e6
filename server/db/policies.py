"""Apps' security policies: which of server/policy.py's rules an admin allowed for an app."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import AppPolicy, utcnow


async def allowed(session: AsyncSession, app: str) -> frozenset[str]:
    """The rules allowed for `app` (none if no policy was set)."""
    policy = await session.get(AppPolicy, app)
    return frozenset(policy.allow) if policy is not None else frozenset()


async def set_allowed(session: AsyncSession, app: str, allow: list[str], actor: str) -> None:
    """Replace the rules allowed for `app`."""
    policy = await session.get(AppPolicy, app)
    if policy is None:
        session.add(AppPolicy(app=app, allow=sorted(allow), updated_by=actor, updated_at=utcnow()))
        return
    policy.allow = sorted(allow)
    policy.updated_by = actor
    policy.updated_at = utcnow()
