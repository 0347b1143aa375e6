"""Hosts' assignments: which release of each app a host is to run, pointed at a deployment's
release, back at the one before, or removed; each write bumps the hosts' generations, so
that their agents hear of it. SQL only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Integer, Table, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.bulk import chunks
from server.db.models import Assignment, Deployment, DeploymentHost, Host, utcnow
from server.db.session import deferred
from server.db.target_rows import TARGET_IDS, bump_generations_of_targets

_TARGETS = cast(Table, DeploymentHost.__table__)
_ASSIGNMENTS = cast(Table, Assignment.__table__)
_HOSTS = cast(Table, Host.__table__)


async def assign(
    session: AsyncSession,
    host_ids: Sequence[int],
    deployment: Deployment,
    bump: bool = True,
    existing: set[int] | None = None,
    every_target: bool = False,
) -> None:
    """Point the hosts' assignments for the app at the deployment's release; bump generations
    (unless this transaction already did: agents see only what it commits). `existing`: the
    hosts that have an assignment of the app, if this transaction already read them.
    `every_target`: the hosts are all of the deployment's targets (a fan-out's single batch),
    whose rows this transaction has written: picked by subqueries, not by IN lists."""
    if every_target:
        await _assign_every_target(session, deployment, bump)
        return
    if existing is None:
        existing = set()
        for chunk in chunks(list(host_ids)):
            query = select(_ASSIGNMENTS.c.host_id).where(
                _ASSIGNMENTS.c.app_id == deployment.app_id, _ASSIGNMENTS.c.host_id.in_(chunk)
            )
            existing.update((await session.scalars(query)).all())
    at = utcnow()
    values = {"release": deployment.release, "deployment_id": deployment.id, "updated_at": at}
    for chunk in chunks([h for h in host_ids if h in existing]):
        await session.execute(
            update(Assignment)
            .where(Assignment.app_id == deployment.app_id, Assignment.host_id.in_(chunk))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    new = [
        {"host_id": h, "app_id": deployment.app_id, **values} for h in host_ids if h not in existing
    ]
    if new:
        await session.execute(insert(_ASSIGNMENTS), new)
    if bump:
        await _bump_generations(session, host_ids)


async def reassign(
    session: AsyncSession, app_id: int, releases: Sequence[tuple[int, int | None]]
) -> None:
    """Point hosts' assignments of the app back at a release each ((host id, release); None:
    the host had none, its assignment goes); bump their generations. One statement per
    release and IN list."""
    by_release: dict[int | None, list[int]] = {}
    for host_id, release in releases:
        by_release.setdefault(release, []).append(host_id)
    of_app = _ASSIGNMENTS.c.app_id == app_id
    for release, host_ids in by_release.items():
        for chunk in chunks(host_ids):
            where = (of_app, _ASSIGNMENTS.c.host_id.in_(chunk))
            if release is None:
                await session.execute(delete(_ASSIGNMENTS).where(*where))
            else:
                values = {"release": release, "updated_at": utcnow()}
                await session.execute(update(_ASSIGNMENTS).where(*where).values(values))
    await _bump_generations(session, [host_id for host_id, _ in releases])


# a fan-out's single batch (every target of deployment `of_deployment`), built once: the
# assignments of app `of_app` its targets have point at it, the others are added
_AT_TARGETS = dict(
    release=bindparam("new_release", type_=Integer()),
    deployment_id=bindparam("new_deployment", type_=Integer()),
    updated_at=bindparam("at", type_=_ASSIGNMENTS.c.updated_at.type),
)
_OF_APP = _ASSIGNMENTS.c.app_id == bindparam("of_app", type_=Integer())
_REPOINT_TARGETS = deferred(  # both wait for the pass's next trip (session.deferred)
    update(_ASSIGNMENTS).where(_OF_APP, _ASSIGNMENTS.c.host_id.in_(TARGET_IDS)).values(_AT_TARGETS)
)
_ADD_TARGETS = deferred(
    insert(_ASSIGNMENTS).from_select(
        ("host_id", "app_id", "release", "deployment_id", "updated_at"),
        select(
            _TARGETS.c.host_id, bindparam("of_app", type_=Integer()), *_AT_TARGETS.values()
        ).where(
            _TARGETS.c.deployment_id == bindparam("of_deployment", type_=Integer()),
            _TARGETS.c.host_id.not_in(select(_ASSIGNMENTS.c.host_id).where(_OF_APP)),
        ),
    )
)


async def _assign_every_target(session: AsyncSession, deployment: Deployment, bump: bool) -> None:
    values = {
        "of_app": deployment.app_id,
        "of_deployment": deployment.id,
        "new_release": deployment.release,
        "new_deployment": deployment.id,
        "at": utcnow(),
    }
    await session.execute(_REPOINT_TARGETS, values)
    await session.execute(_ADD_TARGETS, values)
    if bump:
        await bump_generations_of_targets(session, deployment.id)


# the hosts that have an assignment of app `of_app`, in name order; and those of them that
# are not cordoned nor targets of deployment `of_deployment` (built once: a deploy's last
# pass asks)
_ASSIGNED = (
    select(_ASSIGNMENTS.c.host_id, _HOSTS.c.name)
    .join(_HOSTS, _HOSTS.c.id == _ASSIGNMENTS.c.host_id)
    .where(_OF_APP)
    .order_by(_HOSTS.c.name)
)
_ASSIGNED_OUTSIDE = _ASSIGNED.where(
    _ASSIGNMENTS.c.host_id.not_in(TARGET_IDS), _HOSTS.c.cordoned.is_(False)
)


async def unassign(
    session: AsyncSession, app_id: int, except_targets_of: int | None = None
) -> list[str]:
    """Remove the app's assignments: every one, or those of hosts that are not targets of
    deployment `except_targets_of` (a cordoned host is no target, but keeps what runs
    there); bump those hosts' generations (their agents then remove the app's containers).
    The names of the hosts, in name order."""
    if except_targets_of is None:
        rows = (await session.execute(_ASSIGNED, {"of_app": app_id})).all()
    else:
        values = {"of_app": app_id, "of_deployment": except_targets_of}
        rows = (await session.execute(_ASSIGNED_OUTSIDE, values)).all()
    ids = [host_id for host_id, _ in rows]
    for chunk in chunks(ids):
        await session.execute(
            delete(_ASSIGNMENTS).where(
                _ASSIGNMENTS.c.app_id == app_id, _ASSIGNMENTS.c.host_id.in_(chunk)
            )
        )
    await _bump_generations(session, ids)
    return [name for _, name in rows]


async def assigned_hosts(session: AsyncSession, app_id: int) -> list[str]:
    """Names of the hosts that have an assignment of the app."""
    query = (
        select(Host.name)
        .join(Assignment, Assignment.host_id == Host.id)
        .where(Assignment.app_id == app_id)
        .order_by(Host.name)
    )
    return list((await session.scalars(query)).all())


async def _bump_generations(session: AsyncSession, host_ids: Sequence[int]) -> None:
    for chunk in chunks(list(host_ids)):
        await session.execute(
            update(_HOSTS).where(_HOSTS.c.id.in_(chunk)).values(generation=_HOSTS.c.generation + 1)
        )
