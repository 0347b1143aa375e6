"""What the fleet gauges read of the database, in one go: hosts' connections, apps' current
releases, assignments and their replicas. SQL only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import App, Assignment, Host, Release


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
