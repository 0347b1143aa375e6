"""A deployment's target rows: the hosts its selector picks, the rows' first insert (which
bumps those hosts' generations: their desired state now lists the release's image to
pre-pull), their reads (`deployment_hosts`, as plain `Target`s) and the writes of later
passes. SQL only. (Other statements join the table: a push's pre-pulls, the purges and
assignments a deployment's targets pick, a removed host's rows.)"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypedDict, cast

from sqlalchemy import Integer, Select, Table, bindparam, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import purges
from server.db.bulk import chunks, update_rows
from server.db.models import Assignment, Deployment, DeploymentHost, Host
from server.db.session import deferred

_TARGETS = cast(Table, DeploymentHost.__table__)
_ASSIGNMENTS = cast(Table, Assignment.__table__)
_HOSTS = cast(Table, Host.__table__)


class Target(NamedTuple):
    """One row of deployment_hosts as plain, read-only data: the controller reads thousands
    of these on every pass, and ORM objects cost ten times as much to build (profiled at
    1,000 hosts). The controller keeps a deployment's rows between passes
    (`rollout.targets.Targets`), so a row cannot be changed in place: a changed row is a new
    one (`rollout.targets.replaced`), which shares the old one's `evidence` dict (nothing
    changes one: a failed host's evidence is a new dict)."""

    host_id: int  # with the deployment, the row's key
    host_name: str
    state: str
    previous_release: int | None
    error: str | None
    evidence: dict[str, Any]
    assigned_at: dt.datetime | None
    updated_at: dt.datetime


class Changes(TypedDict, total=False):
    """The columns of a target row a pass changes (the others stay as they were)."""

    state: str
    error: str | None
    evidence: dict[str, Any]
    assigned_at: dt.datetime | None
    updated_at: dt.datetime


# table columns, not the entity's: the ORM's row loading doubled the cost of reading 10,000
_DH = cast(Table, DeploymentHost.__table__).c
_TARGET_COLUMNS = (_DH.host_id, _DH.host_name, _DH.state, _DH.previous_release, _DH.error)
_TARGET_TIMES = (_DH.assigned_at, _DH.updated_at)


def _target_rows(evidence: bool) -> Select[Any]:
    """The target rows of deployment `of_deployment`, in name order (evidence: or None)."""
    columns = [*_TARGET_COLUMNS, _DH.evidence if evidence else literal(None)]
    return (
        select(*columns, *_TARGET_TIMES)
        .where(_DH.deployment_id == bindparam("of_deployment", type_=Integer()))
        .order_by(_DH.host_name)
    )


# built once: every GET of a deployment reads one, and a pass whose copy is stale the other
_TARGET_ROWS = _target_rows(evidence=True)
_TARGET_ROWS_WITHOUT_EVIDENCE = _target_rows(evidence=False)


async def deployment_hosts(
    session: AsyncSession, deployment_id: int, evidence: bool = True
) -> list[Target]:
    """A deployment's target hosts, in name order; without `evidence` its JSON is not read
    (decoding it for every host on every controller pass was a tenth of a busy server)."""
    query = _TARGET_ROWS if evidence else _TARGET_ROWS_WITHOUT_EVIDENCE
    # typed by hand: the column list varies
    rows: Any = await session.execute(query, {"of_deployment": deployment_id})
    return [
        Target(host_id, name, state, previous, error, found or {}, assigned, updated)
        for host_id, name, state, previous, error, found, assigned, updated in rows
    ]


def selects(name: str, labels: dict[str, Any], selector: dict[str, Any]) -> bool:
    """Does a deployment's host selector (names and/or labels) pick this host?"""
    names = selector.get("names")
    if names is not None and name not in names:
        return False
    wanted = selector.get("labels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


async def save_targets(
    session: AsyncSession, deployment_id: int, changes: Mapping[int, Changes]
) -> None:
    """Write changed columns of a deployment's target rows (host id -> the columns). A row
    is named by (deployment, host), its unique key: the first pass never reads back the ids
    of the rows it inserted (a statement of its own, before a fan-out's first push)."""
    scope = (_TARGETS.c.deployment_id, deployment_id)
    await update_rows(session, _TARGETS, _TARGETS.c.host_id, changes, scope)


def _hosts_with_release(labels: bool) -> Select[Any]:
    """Hosts that are not cordoned, in name order, with their release of the app bound as
    `app_id` (None if they have none) and when they were last seen (and their labels)."""
    of_host = (_ASSIGNMENTS.c.host_id == _HOSTS.c.id) & (
        _ASSIGNMENTS.c.app_id == bindparam("app_id")
    )
    columns = [_HOSTS.c.id, _HOSTS.c.name, _ASSIGNMENTS.c.release, _HOSTS.c.last_seen]
    columns += [_HOSTS.c.labels] if labels else []
    return (
        select(*columns)
        .select_from(_HOSTS.outerjoin(_ASSIGNMENTS, of_host))
        .where(_HOSTS.c.cordoned.is_(False))
        .order_by(_HOSTS.c.name)
    )


# built once: a deployment's first pass reads its targets with one of these
_HOSTS_WITH_RELEASE = _hosts_with_release(labels=False)
_HOSTS_WITH_RELEASE_AND_LABELS = _hosts_with_release(labels=True)


async def target_hosts(
    session: AsyncSession, deployment: Deployment
) -> list[tuple[int, str, int | None, Any]]:
    """The hosts the deployment's selector picks, in name order, but no cordoned one, each
    with its release of the app (None if it has none) and when it was last seen: (host id,
    name, previous release, last seen). One statement: the hosts with their assignment of
    the app joined."""
    selector = deployment.selector
    wanted = selector.get("labels")
    query = _HOSTS_WITH_RELEASE_AND_LABELS if wanted else _HOSTS_WITH_RELEASE
    hosts = await session.execute(query, {"app_id": deployment.app_id})
    if selector.get("names") is None and not wanted:  # every host: no test per host
        return [tuple(row) for row in hosts]
    return [
        (row[0], row[1], row[2], row[3])
        for row in hosts
        if selects(row[1], (row[4] or {}) if wanted else {}, selector)
    ]


async def insert_targets(session: AsyncSession, deployment_id: int, rows: Sequence[Target]) -> None:
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
        constants = {f"v_{name}": v for name, v in zip(_ALIKE, key, strict=True)}
        for chunk in chunks(host_ids):
            values = {"of_deployment": deployment_id, "values": list(chunk), **constants}
            await session.execute(_COPY_TARGETS, values)
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
        await session.execute(_INSERT_TARGETS, rest)
    await purges.withdraw(session, deployment_id)  # its volumes are the new release's now
    await bump_generations_of_targets(session, deployment_id)


BULK_ROWS = 50  # fewer rows alike are inserted with their values
_ALIKE = ("state", "previous_release", "error", "assigned_at", "updated_at")
_COPIED = ("deployment_id", "host_id", "host_name", *_ALIKE, "evidence")
# rows alike copied from the hosts bound as `values`: built once (about 0.3 ms to build).
# This module's writes wait for the pass's next trip (session.deferred): nothing reads
# their row counts
_COPY_TARGETS = deferred(
    insert(_TARGETS).from_select(
        _COPIED,
        select(
            bindparam("of_deployment", type_=Integer()),
            _HOSTS.c.id,
            _HOSTS.c.name,
            *(bindparam(f"v_{name}", type_=_TARGETS.c[name].type) for name in _ALIKE),
            literal({}, _TARGETS.c.evidence.type),
        ).where(_HOSTS.c.id.in_(bindparam("values", expanding=True))),
    )
)
_INSERT_TARGETS = deferred(insert(_TARGETS))


# a deployment's target hosts (bound as `of_deployment`), as a subquery
TARGET_IDS = select(_TARGETS.c.host_id).where(
    _TARGETS.c.deployment_id == bindparam("of_deployment", type_=Integer())
)
_BUMP_TARGETS = deferred(
    update(_HOSTS).where(_HOSTS.c.id.in_(TARGET_IDS)).values(generation=_HOSTS.c.generation + 1)
)


async def bump_generations_of_targets(session: AsyncSession, deployment_id: int) -> None:
    """Bump the generation of each of a deployment's target hosts: picked by a subquery on
    its target rows, not by IN lists of their ids (binding 10,000 ids cost SQLAlchemy about
    2.5 us each, a tenth of the pass before a 10,000-host fan-out's first push)."""
    await session.execute(_BUMP_TARGETS, {"of_deployment": deployment_id})
