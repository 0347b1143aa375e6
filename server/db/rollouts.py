"""The deployment and release reads of the rollout controller's passes and of the actions
on a rollout (rollback, pause, promote): active deployments, locked; releases that served
or succeeded. A deployment's target rows: server/db/target_rows.py; hosts' assignments:
server/db/assignments.py; the rows of hosts' desired states: server/db/desired_rows.py."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import App, Deployment, Release
from server.states import ACTIVE, DeploymentStatus, Outcome

# built once (with its joins, about 0.3 ms to build): a controller pass starts with it
_ACTIVE = (
    select(Deployment, App, Release)
    .join(App, App.id == Deployment.app_id)
    .outerjoin(
        Release, (Release.app_id == Deployment.app_id) & (Release.number == Deployment.release)
    )
    .where(Deployment.status.in_(ACTIVE))
    .order_by(Deployment.id)
    .with_for_update(of=Deployment)  # not the apps: POSTs lock them
)


async def active_deployments(
    session: AsyncSession,
) -> Sequence[tuple[Deployment, App, Release | None]]:
    """Every active deployment, oldest first, with its app and its release (read here: no
    statement of its own in a pass), locked for this transaction."""
    rows = await session.execute(_ACTIVE)
    return [(deployment, app, release) for deployment, app, release in rows]


async def release_row(session: AsyncSession, app_id: int, number: int) -> Release | None:
    """Release `number` of an app, if it exists."""
    return await session.scalar(
        select(Release).where(Release.app_id == app_id, Release.number == number)
    )


async def last_good_release(
    session: AsyncSession, app_id: int, exclude: int, before: int | None = None
) -> int | None:
    """The newest release that succeeded (other than `exclude`, older than `before`)."""
    query = select(Release.number).where(
        Release.app_id == app_id, Release.outcome == Outcome.SUCCEEDED, Release.number != exclude
    )
    if before is not None:
        query = query.where(Release.number < before)
    return await session.scalar(query.order_by(Release.number.desc()).limit(1))


async def served_before(session: AsyncSession, app_id: int, current: int) -> int | None:
    """The release that served before `current`: that of the newest deployment (a deploy or a
    rollback) that succeeded with another release. After a rollback from 5 to 4 it is 5, so
    two rollbacks toggle, as `kubectl rollout undo` does."""
    query = (
        select(Deployment.release)
        .where(Deployment.app_id == app_id, Deployment.status == DeploymentStatus.SUCCEEDED)
        .where(Deployment.release != current)
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    return await session.scalar(query)


async def newest_active_release(session: AsyncSession, app_id: int) -> int | None:
    """The release of the app's newest deployment under way (pending, running or paused)."""
    query = (
        select(Deployment.release)
        .where(Deployment.app_id == app_id, Deployment.status.in_(ACTIVE))
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    return await session.scalar(query)


async def lock_deployment(session: AsyncSession, deployment_id: int) -> Deployment | None:
    """The deployment, locked for this transaction (None if it does not exist)."""
    query = select(Deployment).where(Deployment.id == deployment_id).with_for_update()
    return await session.scalar(query)


async def replicas_of(session: AsyncSession, app_id: int, numbers: set[int]) -> dict[int, int]:
    """The replicas of each of these releases of an app."""
    if not numbers:
        return {}
    query = select(Release.number, Release.spec).where(
        Release.app_id == app_id, Release.number.in_(numbers)
    )
    return {n: int((spec or {}).get("replicas", 1)) for n, spec in await session.execute(query)}
