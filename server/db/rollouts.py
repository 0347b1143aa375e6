"""Reads and writes of the rollout controller and the push: assignments, targets,
desired-state rows, fleet snapshots (hosts' connections and statuses: server/db/hosts.py).

Over 400 lines because each of its hot statements (a fan-out to 10,000 hosts) is written for
its cost, with the measurement that chose it beside it; splitting it by caller would scatter
the shared IN-list and bulk-write helpers they all use."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, delete, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import purges, store
from server.db.models import (
    App,
    Assignment,
    Deployment,
    DeploymentHost,
    Host,
    HostStatus,
    Release,
    VolumePurge,
    utcnow,
)
from server.states import ACTIVE, DeploymentStatus, Outcome

_TARGETS = cast(Table, DeploymentHost.__table__)
_ASSIGNMENTS = cast(Table, Assignment.__table__)
_HOSTS = cast(Table, Host.__table__)
_STATUSES = cast(Table, HostStatus.__table__)
_APPS = cast(Table, App.__table__)
_RELEASES = cast(Table, Release.__table__)
_DEPLOYMENTS = cast(Table, Deployment.__table__)
_PURGES = cast(Table, VolumePurge.__table__)


async def active_deployments(session: AsyncSession) -> Sequence[tuple[Deployment, App]]:
    """Every active deployment, oldest first, with its app, locked for this transaction."""
    query = (
        select(Deployment, App)
        .join(App, App.id == Deployment.app_id)
        .where(Deployment.status.in_(ACTIVE))
        .order_by(Deployment.id)
    )
    rows = await session.execute(
        query.with_for_update(of=Deployment)
    )  # not the apps: POSTs lock them
    return [(deployment, app) for deployment, app in rows]


def selects(name: str, labels: dict[str, Any], selector: dict[str, Any]) -> bool:
    """Does a deployment's host selector (names and/or labels) pick this host?"""
    names = selector.get("names")
    if names is not None and name not in names:
        return False
    wanted = selector.get("labels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


async def save_targets(
    session: AsyncSession, deployment_id: int, changes: dict[int, dict[str, Any]]
) -> None:
    """Write changed columns of a deployment's target rows (host id -> the columns). A row
    is named by (deployment, host), its unique key: the first pass never reads back the ids
    of the rows it inserted (a statement of its own, before a fan-out's first push)."""
    scope = _TARGETS.c.deployment_id == deployment_id
    await update_rows(session, _TARGETS, _TARGETS.c.host_id, changes, scope)


async def update_rows(
    session: AsyncSession,
    table: Table,
    key: Any,
    rows: dict[Any, dict[str, Any]],
    scope: Any = None,
) -> None:
    """UPDATE rows by a unique `key` column (key value -> the columns to set), within `scope`
    (a WHERE clause) if given. Rows that get the same values (10,000 targets turning healthy
    in one pass) share one UPDATE per IN list of keys; the others are one Core executemany per
    set of columns, whose per-row parameter processing was a sixth of a 10,000-host deploy's
    server CPU (py-spy). The ORM's bulk update by primary key cost three times as much again."""
    alike: dict[tuple[tuple[str, Any], ...], list[Any]] = {}
    shapes: dict[tuple[str, ...], list[tuple[Any, dict[str, Any]]]] = {}
    for k, row in rows.items():
        values = tuple(sorted(row.items()))
        try:
            alike.setdefault(values, []).append(k)
        except TypeError:  # a JSON value (a dict) is not hashable: updated on its own
            shapes.setdefault(tuple(sorted(row)), []).append((k, row))
    for values, keys in alike.items():
        if len(keys) == 1:
            shapes.setdefault(tuple(k for k, _ in values), []).append((keys[0], dict(values)))
            continue
        for chunk in _chunks(keys):
            statement = update(table).where(key.in_(chunk))
            if scope is not None:
                statement = statement.where(scope)
            await session.execute(statement.values(dict(values)))
    for columns, group in shapes.items():
        statement = update(table).where(key == bindparam("row_key"))
        if scope is not None:
            statement = statement.where(scope)
        params = [{"row_key": k, **{c: row[c] for c in columns}} for k, row in group]
        await session.execute(statement, params)


async def target_hosts(
    session: AsyncSession, deployment: Deployment
) -> tuple[list[tuple[int, str, int | None, Any]], set[int]]:
    """The hosts the deployment's selector picks, in name order, but no cordoned one, each
    with its release of the app (None if it has none) and when it was last seen: (host id,
    name, previous release, last seen); and the ids of those that have an assignment of
    the app."""
    selector = deployment.selector
    wanted = selector.get("labels")
    columns = [_HOSTS.c.id, _HOSTS.c.name, _HOSTS.c.last_seen]
    columns += [_HOSTS.c.labels] if wanted else []
    query = select(*columns).where(_HOSTS.c.cordoned.is_(False)).order_by(_HOSTS.c.name)
    hosts = await session.execute(query)
    query = select(_ASSIGNMENTS.c.host_id, _ASSIGNMENTS.c.release).where(
        _ASSIGNMENTS.c.app_id == deployment.app_id
    )
    current = {host_id: release for host_id, release in (await session.execute(query)).all()}
    if selector.get("names") is None and not wanted:  # every host: no test per host
        picked = [(host_id, name, current.get(host_id), seen) for host_id, name, seen in hosts]
    else:
        picked = [
            (row[0], row[1], current.get(row[0]), row[2])
            for row in hosts
            if selects(row[1], (row[3] or {}) if wanted else {}, selector)
        ]
    return picked, set(current)


async def insert_targets(
    session: AsyncSession, deployment_id: int, rows: Sequence[store.Target]
) -> None:
    """Insert a new deployment's target rows as the first pass left them (planned in memory:
    no UPDATE of 10,000 rows after it); bump the hosts' generations
    (their desired state now lists the release's image to pre-pull).

    Rows alike but for their host (a fan-out's: pending, or assigned at the same moment,
    with the same previous release) are copied from the hosts table by INSERT ... SELECT,
    a statement per IN list: per-row parameter processing of an executemany was 110-130 ms
    of the first pass of a 10,000-host deployment, before any agent hears of it."""
    if not rows:
        return
    alike: dict[tuple[Any, ...], list[int]] = {}
    for r in rows:
        if not r.evidence:
            key = (r.state, r.previous_release, r.error, r.assigned_at, r.updated_at)
            alike.setdefault(key, []).append(r.host_id)
    copied = {h for host_ids in alike.values() if len(host_ids) >= BULK_ROWS for h in host_ids}
    for key, host_ids in alike.items():
        if len(host_ids) < BULK_ROWS:
            continue
        constants = [literal(v, _TARGETS.c[name].type) for name, v in zip(_ALIKE, key, strict=True)]
        empty = literal({}, _TARGETS.c.evidence.type)
        for chunk in _chunks(host_ids):
            source = select(
                literal(deployment_id), _HOSTS.c.id, _HOSTS.c.name, *constants, empty
            ).where(_HOSTS.c.id.in_(chunk))
            await session.execute(insert(_TARGETS).from_select(_COPIED, source))
    rest = [
        {
            "deployment_id": deployment_id,
            "host_id": r.host_id,
            "host_name": r.host_name,
            "state": r.state,
            "previous_release": r.previous_release,
            "error": r.error,
            "evidence": r.evidence,
            "assigned_at": r.assigned_at,
            "updated_at": r.updated_at,
        }
        for r in rows
        if r.host_id not in copied
    ]
    if rest:  # the table, not the entity: a Core executemany skips the ORM's bookkeeping
        await session.execute(insert(_TARGETS), rest)
    await purges.withdraw(session, deployment_id)  # its volumes are the new release's now
    await _bump_generations_of_targets(session, deployment_id)


BULK_ROWS = 50  # fewer rows alike are inserted with their values
_ALIKE = ("state", "previous_release", "error", "assigned_at", "updated_at")
_COPIED = ("deployment_id", "host_id", "host_name", *_ALIKE, "evidence")


async def _bump_generations(session: AsyncSession, host_ids: Sequence[int]) -> None:
    for chunk in _chunks(list(host_ids)):
        await session.execute(
            update(_HOSTS).where(_HOSTS.c.id.in_(chunk)).values(generation=_HOSTS.c.generation + 1)
        )


async def _bump_generations_of_targets(session: AsyncSession, deployment_id: int) -> None:
    """Bump the generation of each of a deployment's target hosts: picked by a subquery on
    its target rows, not by IN lists of their ids (binding 10,000 ids cost SQLAlchemy about
    2.5 us each, a tenth of the pass before a 10,000-host fan-out's first push)."""
    await session.execute(
        update(_HOSTS)
        .where(_HOSTS.c.id.in_(_target_hosts_of(deployment_id)))
        .values(generation=_HOSTS.c.generation + 1)
    )


def _target_hosts_of(deployment_id: int) -> Select[tuple[int]]:
    """The ids of a deployment's target hosts, as a subquery."""
    return select(_TARGETS.c.host_id).where(_TARGETS.c.deployment_id == deployment_id)


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
        for chunk in _chunks(list(host_ids)):
            query = select(_ASSIGNMENTS.c.host_id).where(
                _ASSIGNMENTS.c.app_id == deployment.app_id, _ASSIGNMENTS.c.host_id.in_(chunk)
            )
            existing.update((await session.scalars(query)).all())
    at = utcnow()
    values = {"release": deployment.release, "deployment_id": deployment.id, "updated_at": at}
    for chunk in _chunks([h for h in host_ids if h in existing]):
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
        for chunk in _chunks(host_ids):
            where = (of_app, _ASSIGNMENTS.c.host_id.in_(chunk))
            if release is None:
                await session.execute(delete(_ASSIGNMENTS).where(*where))
            else:
                values = {"release": release, "updated_at": utcnow()}
                await session.execute(update(_ASSIGNMENTS).where(*where).values(values))
    await _bump_generations(session, [host_id for host_id, _ in releases])


async def _assign_every_target(session: AsyncSession, deployment: Deployment, bump: bool) -> None:
    at = utcnow()
    values = {"release": deployment.release, "deployment_id": deployment.id, "updated_at": at}
    targets = _target_hosts_of(deployment.id)
    of_app = _ASSIGNMENTS.c.app_id == deployment.app_id
    await session.execute(
        update(_ASSIGNMENTS).where(of_app, _ASSIGNMENTS.c.host_id.in_(targets)).values(values)
    )
    unassigned = select(
        _TARGETS.c.host_id,
        literal(deployment.app_id),
        literal(deployment.release),
        literal(deployment.id),
        literal(at, _ASSIGNMENTS.c.updated_at.type),
    ).where(
        _TARGETS.c.deployment_id == deployment.id,
        _TARGETS.c.host_id.not_in(select(_ASSIGNMENTS.c.host_id).where(of_app)),
    )
    columns = ("host_id", "app_id", "release", "deployment_id", "updated_at")
    await session.execute(insert(_ASSIGNMENTS).from_select(columns, unassigned))
    if bump:
        await _bump_generations_of_targets(session, deployment.id)


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


async def unassign(
    session: AsyncSession, app_id: int, except_targets_of: int | None = None
) -> list[str]:
    """Remove the app's assignments: every one, or those of hosts that are not targets of
    deployment `except_targets_of` (a cordoned host is no target, but keeps what runs
    there); bump those hosts' generations (their agents then remove the app's containers).
    The names of the hosts, in name order."""
    query = (
        select(_ASSIGNMENTS.c.host_id, _HOSTS.c.name)
        .join(_HOSTS, _HOSTS.c.id == _ASSIGNMENTS.c.host_id)
        .where(_ASSIGNMENTS.c.app_id == app_id)
        .order_by(_HOSTS.c.name)
    )
    if except_targets_of is not None:
        query = query.where(
            _ASSIGNMENTS.c.host_id.not_in(_target_hosts_of(except_targets_of)),
            _HOSTS.c.cordoned.is_(False),
        )
    rows = (await session.execute(query)).all()
    ids = [host_id for host_id, _ in rows]
    for chunk in _chunks(ids):
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


async def lock_deployment(session: AsyncSession, deployment_id: int) -> Deployment | None:
    """The deployment, locked for this transaction (None if it does not exist)."""
    query = select(Deployment).where(Deployment.id == deployment_id).with_for_update()
    return await session.scalar(query)


@dataclass(frozen=True)
class FleetSnapshot:
    """Everything the fleet gauges need of the database, read in one go."""

    hosts: Sequence[Any]  # rows with .name, .last_seen, .connected
    current: dict[str, int | None]  # app -> current release
    assigned: dict[str, dict[str, int]]  # host -> app -> assigned release
    replicas: dict[tuple[str, int], int]  # (app, release) assigned somewhere -> its replicas


async def fleet_snapshot(session: AsyncSession) -> FleetSnapshot:
    """Everything the fleet gauges need, in three queries (no stored statuses: the live
    status of connected hosts is in the hub's memory)."""
    # plain rows, not ORM objects: building 10,000 of those every few seconds costs real CPU
    hosts_query = select(Host.name, Host.last_seen, Host.connected).order_by(Host.name)
    hosts = (await session.execute(hosts_query)).all()
    current = {
        name: release
        for name, release in await session.execute(select(App.name, App.current_release))
    }
    assigned: dict[str, dict[str, int]] = {}
    query = (
        select(Host.name, App.name, Assignment.release)
        .join(Host, Host.id == Assignment.host_id)
        .join(App, App.id == Assignment.app_id)
    )
    for host, app, release in await session.execute(query):
        assigned.setdefault(host, {})[app] = release
    releases = (
        select(App.name, Release.number, Release.spec)
        .join(App, App.id == Release.app_id)
        .where(
            select(Assignment.id)
            .where(Assignment.app_id == Release.app_id, Assignment.release == Release.number)
            .exists()
        )
    )
    replicas = {
        (app, number): int((spec or {}).get("replicas", 1))
        for app, number, spec in await session.execute(releases)
    }
    return FleetSnapshot(hosts, current, assigned, replicas)


# IN lists this long keep a push to 10,000 hosts to a few round trips (on an event loop busy
# with their statuses each await waits its turn), within the bind limits: 32,766 for SQLite
# since 3.32 and for asyncpg, 999 for an older SQLite
IN_LIST = 5000 if sqlite3.sqlite_version_info >= (3, 32, 0) else 900


def _chunks(items: Sequence[Any], size: int = IN_LIST) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


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


async def replicas_of(session: AsyncSession, app_id: int, numbers: set[int]) -> dict[int, int]:
    """The replicas of each of these releases of an app."""
    if not numbers:
        return {}
    query = select(Release.number, Release.spec).where(
        Release.app_id == app_id, Release.number.in_(numbers)
    )
    return {n: int((spec or {}).get("replicas", 1)) for n, spec in await session.execute(query)}
