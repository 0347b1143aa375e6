"""The rows hosts' desired states are made of, read for many hosts at once (a fan-out pushes
to thousands); server/desired.py builds the wire messages from them. SQL only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.bulk import IN_LIST
from server.db.models import (
    App,
    Assignment,
    Deployment,
    DeploymentHost,
    Host,
    Release,
    VolumePurge,
)
from server.states import ACTIVE, Outcome

_TARGETS = cast(Table, DeploymentHost.__table__)
_ASSIGNMENTS = cast(Table, Assignment.__table__)
_HOSTS = cast(Table, Host.__table__)
_APPS = cast(Table, App.__table__)
_RELEASES = cast(Table, Release.__table__)
_DEPLOYMENTS = cast(Table, Deployment.__table__)
_PURGES = cast(Table, VolumePurge.__table__)


async def _rows_in(
    session: AsyncSession, query: Any, column: Any, values: Sequence[Any], at: int
) -> list[Any]:
    """The rows of `query` whose `column` (the row's item `at`) is one of `values`: through
    IN lists, or, for more values than one list holds, the whole query filtered here
    (rendering IN lists of 10,000 parameters cost more than reading every row)."""
    if len(values) <= IN_LIST:
        return list((await session.execute(query.where(column.in_(values)))).all())
    wanted = set(values)
    return [row for row in (await session.execute(query)).all() if row[at] in wanted]


@dataclass(frozen=True)
class DesiredRows:
    """What hosts' desired states are made of, as plain rows (server.desired builds them)."""

    hosts: list[tuple[int, str, int]]  # (host id, name, generation)
    # (host id, app id, release number, deployment id, app name, release id), by app name
    assignments: list[tuple[int, int, int, int, str, int]]
    specs: dict[int, dict[str, Any]]  # release id -> its spec
    strategies: dict[int, dict[str, Any]]  # deployment id -> its strategy
    good: dict[int, tuple[int, ...]]  # app id -> its newest releases that succeeded
    # (host id, app name, release, image, its pinned digest)
    prepull: list[tuple[int, str, int, str, str | None]]
    pins: dict[int, str | None] = field(default_factory=dict)  # release id -> pinned digest
    # host id -> the apps whose volumes it is to remove (db/purges.py)
    purges: dict[int, tuple[str, ...]] = field(default_factory=dict)


async def desired_rows(session: AsyncSession, names: Sequence[str]) -> DesiredRows:
    """The rows of many hosts' desired states in a few queries (a fan-out pushes to
    thousands): each release's spec and each deployment's strategy read once, not once per
    host (decoding them was a third of a push to 10,000 hosts)."""
    # rows of (id, name, generation): table columns, not the entities': the ORM's row
    # loading cost a fifth of a push to 10,000 hosts
    # with the apps whose volumes a host is to remove, joined here: no statement of its own
    # (the table is empty but for apps removed with their volumes)
    hosts_query = select(_HOSTS.c.id, _HOSTS.c.name, _HOSTS.c.generation, _APPS.c.name).select_from(
        _HOSTS.outerjoin(_PURGES, _PURGES.c.host_id == _HOSTS.c.id).outerjoin(
            _APPS, _APPS.c.id == _PURGES.c.app_id
        )
    )
    host_rows = await _rows_in(session, hosts_query, _HOSTS.c.name, list(names), 1)
    hosts: dict[int, tuple[int, str, int]] = {}
    purged: dict[int, list[str]] = {}
    for host_id, name, generation, purge in host_rows:
        hosts[host_id] = (host_id, name, generation)
        if purge is not None:
            purged.setdefault(host_id, []).append(purge)
    host_ids = list(hosts)
    apps, releases, deployments = _APPS.c, _RELEASES.c, _DEPLOYMENTS.c
    query = (
        select(
            _ASSIGNMENTS.c.host_id,
            _ASSIGNMENTS.c.app_id,
            _ASSIGNMENTS.c.release,
            _ASSIGNMENTS.c.deployment_id,
            apps.name,
            releases.id,
        )
        .join(_APPS, apps.id == _ASSIGNMENTS.c.app_id)
        .join(
            _RELEASES,
            (releases.app_id == _ASSIGNMENTS.c.app_id)
            & (releases.number == _ASSIGNMENTS.c.release),
        )
        .join(_DEPLOYMENTS, deployments.id == _ASSIGNMENTS.c.deployment_id)
        .order_by(apps.name)
    )
    rows = await _rows_in(session, query, _ASSIGNMENTS.c.host_id, host_ids, 0)
    specs: dict[int, dict[str, Any]] = {}
    pins: dict[int, str | None] = {}
    strategies: dict[int, dict[str, Any]] = {}
    if rows:
        release_ids = {r[5] for r in rows}
        # each release's pinned digest with its spec: no statement of its own
        spec_query = select(Release.id, Release.spec, Release.digest).where(
            Release.id.in_(release_ids)
        )
        for release_id, spec, digest in await session.execute(spec_query):
            specs[release_id] = spec
            pins[release_id] = digest
        strategy_query = select(Deployment.id, Deployment.strategy).where(
            Deployment.id.in_({r[3] for r in rows})
        )
        strategies = {d: strategy for d, strategy in await session.execute(strategy_query)}
    prepull_query = (
        select(_TARGETS.c.host_id, apps.name, deployments.release, releases.image, releases.digest)
        .join(_DEPLOYMENTS, _TARGETS.c.deployment_id == deployments.id)
        .join(_APPS, apps.id == deployments.app_id)
        .join(
            _RELEASES,
            (releases.app_id == deployments.app_id) & (releases.number == deployments.release),
        )
        .where(deployments.status.in_(ACTIVE))
    )
    prepull = await _rows_in(session, prepull_query, _TARGETS.c.host_id, host_ids, 0)
    return DesiredRows(
        hosts=list(hosts.values()),
        assignments=[tuple(r) for r in rows],
        specs=specs,
        strategies=strategies,
        good=await _good_releases(session),
        prepull=[tuple(p) for p in prepull],
        purges={h: tuple(sorted(apps)) for h, apps in purged.items()},
        pins=pins,
    )


KEEP_GOOD = 5  # the agent retains the newest of these (its --retain, 2 by default)


async def _good_releases(session: AsyncSession) -> dict[int, tuple[int, ...]]:
    """Per app, its newest releases that succeeded: what an agent should keep for rollbacks."""
    query = (
        select(Release.app_id, Release.number)
        .where(Release.outcome.in_((Outcome.SUCCEEDED, Outcome.ROLLED_BACK)))
        .order_by(Release.app_id, Release.number.desc())
    )
    good: dict[int, list[int]] = {}
    for app_id, number in (await session.execute(query)).all():
        numbers = good.setdefault(app_id, [])
        if len(numbers) < KEEP_GOOD:
            numbers.append(number)
    return {app_id: tuple(numbers) for app_id, numbers in good.items()}
