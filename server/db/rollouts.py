"""Reads and writes of the rollout controller and the hub: assignments, targets, observed state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from agent.protocol import Assignment as WireAssignment
from agent.protocol import DesiredState, Prepull
from server.db.models import App, Assignment, Deployment, DeploymentHost, Host, Release, utcnow
from server.rollout.planner import ACTIVE
from server.wire import container_spec


async def active_deployments(session: AsyncSession) -> Sequence[Deployment]:
    query = select(Deployment).where(Deployment.status.in_(ACTIVE)).order_by(Deployment.id)
    return (await session.scalars(query.with_for_update())).all()


def selects(host: Host, selector: dict[str, Any]) -> bool:
    """Does a deployment's host selector (names and/or labels) pick this host?"""
    names = selector.get("names")
    if names is not None and host.name not in names:
        return False
    labels = selector.get("labels") or {}
    return all(host.labels.get(k) == v for k, v in labels.items())


async def create_targets(session: AsyncSession, deployment: Deployment) -> list[DeploymentHost]:
    """Resolve the selector to hosts, in name order, recording each host's previous release."""
    hosts = (await session.scalars(select(Host).order_by(Host.name))).all()
    query = select(Assignment.host_id, Assignment.release).where(
        Assignment.app_id == deployment.app_id
    )
    current = {host_id: release for host_id, release in (await session.execute(query)).all()}
    rows = []
    for host in hosts:
        if not selects(host, deployment.selector):
            continue
        row = DeploymentHost(
            deployment_id=deployment.id,
            host_id=host.id,
            host_name=host.name,
            state="pending",
            previous_release=current.get(host.id),
        )
        host.generation += 1  # its desired state now lists the release's image to pre-pull
        session.add(row)
        rows.append(row)
    await session.flush()
    return rows


async def hosts_by_id(session: AsyncSession, ids: set[int]) -> dict[int, Host]:
    """Hosts without their observed status (large; the hub holds it in memory)."""
    result: dict[int, Host] = {}
    for chunk in _chunks(list(ids)):
        query = select(Host).where(Host.id.in_(chunk)).options(defer(Host.observed, raiseload=True))
        result.update({h.id: h for h in (await session.scalars(query)).all()})
    return result


async def observed_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The last status the database holds for hosts this process has no live status of."""
    result: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(list(ids)):
        query = select(Host.id, Host.observed).where(Host.id.in_(chunk))
        result.update(
            {host_id: observed or {} for host_id, observed in await session.execute(query)}
        )
    return result


async def assign(session: AsyncSession, hosts: Sequence[Host], deployment: Deployment) -> None:
    """Point the hosts' assignments for the app at the deployment's release; bump generations."""
    existing: dict[int, Assignment] = {}
    for chunk in _chunks([h.id for h in hosts]):
        query = select(Assignment).where(
            Assignment.app_id == deployment.app_id, Assignment.host_id.in_(chunk)
        )
        existing.update({a.host_id: a for a in (await session.scalars(query)).all()})
    at = utcnow()
    for host in hosts:
        row = existing.get(host.id)
        if row is None:
            row = Assignment(host_id=host.id, app_id=deployment.app_id, release=0, deployment_id=0)
            session.add(row)
        row.release = deployment.release
        row.deployment_id = deployment.id
        row.updated_at = at
        host.generation += 1


async def release_row(session: AsyncSession, app_id: int, number: int) -> Release | None:
    return await session.scalar(
        select(Release).where(Release.app_id == app_id, Release.number == number)
    )


async def last_good_release(
    session: AsyncSession, app_id: int, exclude: int, before: int | None = None
) -> int | None:
    """The newest release that succeeded (other than `exclude`, older than `before`)."""
    query = select(Release.number).where(
        Release.app_id == app_id, Release.outcome == "succeeded", Release.number != exclude
    )
    if before is not None:
        query = query.where(Release.number < before)
    return await session.scalar(query.order_by(Release.number.desc()).limit(1))


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
    query = select(Deployment).where(Deployment.id == deployment_id).with_for_update()
    return await session.scalar(query)


@dataclass(frozen=True)
class FleetSnapshot:
    hosts: Sequence[Any]  # rows with .name, .last_seen, .connected
    current: dict[str, int | None]  # app -> current release
    assigned: dict[str, dict[str, int]]  # host -> app -> assigned release


async def fleet_snapshot(session: AsyncSession) -> FleetSnapshot:
    """Everything the fleet gauges need, in three queries (hosts without their status JSON:
    the live status of connected hosts is in the hub's memory)."""
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
    return FleetSnapshot(hosts, current, assigned)


def _chunks(items: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def record_reports(
    session: AsyncSession,
    observed: dict[int, dict[str, Any]],
    connections: dict[int, tuple[bool, str | None, str | None]],
    touch: Sequence[int],
) -> None:
    """Write what agents reported, by host id, in a few statements."""
    at = utcnow()
    rows: dict[int, dict[str, Any]] = {}
    for host_id, status in observed.items():
        rows[host_id] = {"id": host_id, "observed": status, "last_seen": at, "connected": True}
    for host_id, (up, agent_version, docker_version) in connections.items():
        row = rows.setdefault(host_id, {"id": host_id, "last_seen": at})
        row["connected"] = up
        if agent_version is not None:
            row["agent_version"] = agent_version[:50]
            row["docker_version"] = (docker_version or "")[:50]
    # group rows by their set of columns: one executemany per shape
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows.values():
        shapes.setdefault(tuple(sorted(row)), []).append(row)
    for group in shapes.values():
        await session.execute(update(Host), group)
    for chunk in _chunks(list(touch)):
        await session.execute(update(Host).where(Host.id.in_(chunk)).values(last_seen=at))


async def desired_states(session: AsyncSession, names: Sequence[str]) -> dict[str, DesiredState]:
    """Full desired state of many hosts in a few queries (a fan-out pushes to thousands)."""
    hosts: list[Host] = []
    for chunk in _chunks(list(names)):
        hosts += (await session.scalars(select(Host).where(Host.name.in_(chunk)))).all()
    by_id = {h.id: h for h in hosts}
    assignments: dict[int, list[WireAssignment]] = {h.id: [] for h in hosts}
    prepull: dict[int, list[Prepull]] = {h.id: [] for h in hosts}
    specs: dict[tuple[int, int], Any] = {}
    good = await _good_releases(session)
    for chunk in _chunks(list(by_id)):
        query = (
            select(Assignment, App.name, Release.spec, Deployment.strategy)
            .join(App, App.id == Assignment.app_id)
            .join(
                Release,
                (Release.app_id == Assignment.app_id) & (Release.number == Assignment.release),
            )
            .join(Deployment, Deployment.id == Assignment.deployment_id)
            .where(Assignment.host_id.in_(chunk))
            .order_by(App.name)
        )
        for row, app_name, spec, strategy in (await session.execute(query)).all():
            key = (row.app_id, row.deployment_id)
            if key not in specs:  # one ContainerSpec per release and deployment, shared
                specs[key] = container_spec(spec, strategy)
            assignments[row.host_id].append(
                WireAssignment(
                    app=app_name,
                    release=row.release,
                    deployment=row.deployment_id,
                    replicas=int(spec.get("replicas", 1)),
                    spec=specs[key],
                    keep=good.get(row.app_id, ()),
                )
            )
        query2 = (
            select(DeploymentHost.host_id, App.name, Deployment.release, Release.image)
            .join(Deployment, DeploymentHost.deployment_id == Deployment.id)
            .join(App, App.id == Deployment.app_id)
            .join(
                Release,
                (Release.app_id == Deployment.app_id) & (Release.number == Deployment.release),
            )
            .where(DeploymentHost.host_id.in_(chunk), Deployment.status.in_(ACTIVE))
        )
        for host_id, app_name, number, image in (await session.execute(query2)).all():
            prepull[host_id].append(Prepull(app_name, number, image))
    return {
        h.name: DesiredState(
            host=h.name,
            generation=h.generation,
            assignments=tuple(assignments[h.id]),
            prepull=tuple(prepull[h.id]),
        )
        for h in hosts
    }


KEEP_GOOD = 5  # the agent retains the newest of these (its --retain, 2 by default)


async def _good_releases(session: AsyncSession) -> dict[int, tuple[int, ...]]:
    """Per app, its newest releases that succeeded: what an agent should keep for rollbacks."""
    query = (
        select(Release.app_id, Release.number)
        .where(Release.outcome.in_(("succeeded", "rolled_back")))
        .order_by(Release.app_id, Release.number.desc())
    )
    good: dict[int, list[int]] = {}
    for app_id, number in (await session.execute(query)).all():
        numbers = good.setdefault(app_id, [])
        if len(numbers) < KEEP_GOOD:
            numbers.append(number)
    return {app_id: tuple(numbers) for app_id, numbers in good.items()}
