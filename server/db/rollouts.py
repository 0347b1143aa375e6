"""Reads and writes of the rollout controller and the hub: assignments, targets, observed state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

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


async def assignment_of(session: AsyncSession, host_id: int, app_id: int) -> Assignment | None:
    return await session.scalar(
        select(Assignment).where(Assignment.host_id == host_id, Assignment.app_id == app_id)
    )


async def create_targets(session: AsyncSession, deployment: Deployment) -> list[DeploymentHost]:
    """Resolve the selector to hosts, in name order, recording each host's previous release."""
    hosts = (await session.scalars(select(Host).order_by(Host.name))).all()
    rows = []
    for host in hosts:
        if not selects(host, deployment.selector):
            continue
        current = await assignment_of(session, host.id, deployment.app_id)
        row = DeploymentHost(
            deployment_id=deployment.id,
            host_id=host.id,
            host_name=host.name,
            state="pending",
            previous_release=current.release if current else None,
        )
        host.generation += 1  # its desired state now lists the release's image to pre-pull
        session.add(row)
        rows.append(row)
    await session.flush()
    return rows


async def targets(session: AsyncSession, deployment_id: int) -> Sequence[DeploymentHost]:
    query = (
        select(DeploymentHost)
        .where(DeploymentHost.deployment_id == deployment_id)
        .order_by(DeploymentHost.host_name)
    )
    return (await session.scalars(query)).all()


async def hosts_by_id(session: AsyncSession, ids: set[int]) -> dict[int, Host]:
    rows = (await session.scalars(select(Host).where(Host.id.in_(ids)))).all()
    return {h.id: h for h in rows}


async def assign(session: AsyncSession, host: Host, deployment: Deployment) -> None:
    """Point the host's assignment for the app at the deployment's release; bump generation."""
    row = await assignment_of(session, host.id, deployment.app_id)
    if row is None:
        row = Assignment(host_id=host.id, app_id=deployment.app_id, release=0, deployment_id=0)
        session.add(row)
    row.release = deployment.release
    row.deployment_id = deployment.id
    row.updated_at = utcnow()
    host.generation += 1


async def desired_state(session: AsyncSession, host: Host) -> DesiredState:
    """The host's full desired state, as pushed to its agent."""
    query = (
        select(Assignment, App.name, Release.spec, Deployment.strategy)
        .join(App, App.id == Assignment.app_id)
        .join(
            Release, (Release.app_id == Assignment.app_id) & (Release.number == Assignment.release)
        )
        .join(Deployment, Deployment.id == Assignment.deployment_id)
        .where(Assignment.host_id == host.id)
        .order_by(App.name)
    )
    assignments = []
    for row, app_name, spec, strategy in (await session.execute(query)).all():
        assignments.append(
            WireAssignment(
                app=app_name,
                release=row.release,
                deployment=row.deployment_id,
                replicas=int(spec.get("replicas", 1)),
                spec=container_spec(spec, strategy),
            )
        )
    return DesiredState(
        host=host.name,
        generation=host.generation,
        assignments=tuple(assignments),
        prepull=tuple(await prepulls(session, host)),
    )


async def host_by_name(session: AsyncSession, name: str) -> Host | None:
    return await session.scalar(select(Host).where(Host.name == name))


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


async def prepulls(session: AsyncSession, host: Host) -> list[Prepull]:
    """Images of active deployments that target the host: pulled before any batch starts."""
    query = (
        select(App.name, Deployment.release, Release.image)
        .join(DeploymentHost, DeploymentHost.deployment_id == Deployment.id)
        .join(App, App.id == Deployment.app_id)
        .join(
            Release,
            (Release.app_id == Deployment.app_id) & (Release.number == Deployment.release),
        )
        .where(DeploymentHost.host_id == host.id, Deployment.status.in_(ACTIVE))
    )
    return [Prepull(name, number, image) for name, number, image in await session.execute(query)]


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
    hosts: Sequence[Host]
    current: dict[str, int | None]  # app -> current release
    assigned: dict[str, dict[str, int]]  # host -> app -> assigned release


async def fleet_snapshot(session: AsyncSession) -> FleetSnapshot:
    """Everything the fleet gauges need, in three queries."""
    hosts = (await session.scalars(select(Host).order_by(Host.name))).all()
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
