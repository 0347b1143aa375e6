"""The rows hosts' desired states are made of, read for many hosts at once (a fan-out pushes
to thousands); server/desired.py builds the wire messages from them. SQL only."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, literal, null, select, union_all
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
    session: AsyncSession, every: Any, some: Any, values: Sequence[Any], at: int
) -> list[Any]:
    """The rows of `every` whose item `at` is one of `values`: `some` (`every` with an IN
    list bound to `values`), or, for more values than one list holds, `every` filtered here
    (rendering IN lists of 10,000 parameters cost more than reading every row)."""
    if len(values) <= IN_LIST:
        return list((await session.execute(some, {"values": list(values)})).all())
    wanted = set(values)
    return [row for row in (await session.execute(every)).all() if row[at] in wanted]


def _in(column: Any) -> Any:
    """`column IN (:values)`, the list bound at each execution."""
    return column.in_(bindparam("values", expanding=True))


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


# The statements of a push, built once: building them (joins, IN lists) cost about 0.2 ms
# each, per push; only their parameters change. Rows of table columns, not entities': the
# ORM's row loading cost a fifth of a push to 10,000 hosts.
_apps, _releases, _deployments = _APPS.c, _RELEASES.c, _DEPLOYMENTS.c

# (id, name, generation, an app whose volumes it is to remove): the purges joined here, no
# statement of their own (the table is empty but for apps removed with their volumes)
_HOST_ROWS = select(_HOSTS.c.id, _HOSTS.c.name, _HOSTS.c.generation, _apps.name).select_from(
    _HOSTS.outerjoin(_PURGES, _PURGES.c.host_id == _HOSTS.c.id).outerjoin(
        _APPS, _apps.id == _PURGES.c.app_id
    )
)
_HOST_ROWS_NAMED = _HOST_ROWS.where(_in(_HOSTS.c.name))

_ASSIGNED = (
    select(
        _ASSIGNMENTS.c.host_id,
        _ASSIGNMENTS.c.app_id,
        _ASSIGNMENTS.c.release,
        _ASSIGNMENTS.c.deployment_id,
        _apps.name,
        _releases.id,
    )
    .join(_APPS, _apps.id == _ASSIGNMENTS.c.app_id)
    .join(
        _RELEASES,
        (_releases.app_id == _ASSIGNMENTS.c.app_id) & (_releases.number == _ASSIGNMENTS.c.release),
    )
    .join(_DEPLOYMENTS, _deployments.id == _ASSIGNMENTS.c.deployment_id)
    .order_by(_apps.name)
)
_ASSIGNED_TO = _ASSIGNED.where(_in(_ASSIGNMENTS.c.host_id))

# the assignments' releases (with each one's pinned digest) and deployments' strategies, in
# one statement: a row per release ("release", id, spec, digest) and per deployment
# ("deployment", id, strategy, NULL); one trip to the database fewer per push
_SPECS_AND_STRATEGIES = union_all(
    select(literal("release"), _releases.id, _releases.spec, _releases.digest).where(
        _releases.id.in_(bindparam("releases", expanding=True))
    ),
    select(
        literal("deployment"), _deployments.id, _deployments.strategy, null().label("digest")
    ).where(_deployments.id.in_(bindparam("deployments", expanding=True))),
)

_PREPULL = (
    select(_TARGETS.c.host_id, _apps.name, _deployments.release, _releases.image, _releases.digest)
    .join(_DEPLOYMENTS, _TARGETS.c.deployment_id == _deployments.id)
    .join(_APPS, _apps.id == _deployments.app_id)
    .join(
        _RELEASES,
        (_releases.app_id == _deployments.app_id) & (_releases.number == _deployments.release),
    )
    .where(_deployments.status.in_(ACTIVE))
)
_PREPULL_TO = _PREPULL.where(_in(_TARGETS.c.host_id))


async def desired_rows(session: AsyncSession, names: Sequence[str]) -> DesiredRows:
    """The rows of many hosts' desired states in a few queries (a fan-out pushes to
    thousands): each release's spec and each deployment's strategy read once, not once per
    host (decoding them was a third of a push to 10,000 hosts)."""
    host_rows = await _rows_in(session, _HOST_ROWS, _HOST_ROWS_NAMED, list(names), 1)
    hosts: dict[int, tuple[int, str, int]] = {}
    purged: dict[int, list[str]] = {}
    for host_id, name, generation, purge in host_rows:
        hosts[host_id] = (host_id, name, generation)
        if purge is not None:
            purged.setdefault(host_id, []).append(purge)
    host_ids = list(hosts)
    rows = await _rows_in(session, _ASSIGNED, _ASSIGNED_TO, host_ids, 0)
    specs: dict[int, dict[str, Any]] = {}
    pins: dict[int, str | None] = {}
    strategies: dict[int, dict[str, Any]] = {}
    if rows:
        wanted = {"releases": list({r[5] for r in rows}), "deployments": list({r[3] for r in rows})}
        for kind, key, document, digest in await session.execute(_SPECS_AND_STRATEGIES, wanted):
            if kind == "release":
                specs[key] = document
                pins[key] = digest
            else:
                strategies[key] = document
    prepull = await _rows_in(session, _PREPULL, _PREPULL_TO, host_ids, 0)
    return DesiredRows(
        hosts=list(hosts.values()),
        assignments=[tuple(r) for r in rows],
        specs=specs,
        strategies=strategies,
        good=await _good_releases(session, {r[1] for r in rows}),
        prepull=[tuple(p) for p in prepull],
        purges={h: tuple(sorted(apps)) for h, apps in purged.items()},
        pins=pins,
    )


KEEP_GOOD = 5  # the agent retains the newest of these (its --retain, 2 by default)


# each app's newest KEEP_GOOD releases that succeeded (or were rolled back to), of the apps
# bound as `apps` only: the table keeps every release ever made, and a push needs the
# apps it assigns, so reading every app's whole history grew with each deploy
_RANKED = (
    select(
        _releases.app_id,
        _releases.number,
        func.row_number()
        .over(partition_by=_releases.app_id, order_by=_releases.number.desc())
        .label("rank"),
    )
    .where(_releases.outcome.in_((Outcome.SUCCEEDED, Outcome.ROLLED_BACK)))
    .where(_releases.app_id.in_(bindparam("apps", expanding=True)))
    .subquery()
)
_GOOD = (
    select(_RANKED.c.app_id, _RANKED.c.number)
    .where(_RANKED.c.rank <= KEEP_GOOD)
    .order_by(_RANKED.c.app_id, _RANKED.c.number.desc())
)


async def _good_releases(
    session: AsyncSession, app_ids: Collection[int]
) -> dict[int, tuple[int, ...]]:
    """Per app of `app_ids`, its newest releases that succeeded: what an agent should keep
    for rollbacks."""
    if not app_ids:
        return {}
    good: dict[int, list[int]] = {}
    for app_id, number in (await session.execute(_GOOD, {"apps": list(app_ids)})).all():
        good.setdefault(app_id, []).append(number)
    return {app_id: tuple(numbers) for app_id, numbers in good.items()}
