"""Hosts' connections and last statuses as the database keeps them: the writes of the hub's
host log and the status store, and the reads behind them; a host's token rotated; its
lifecycle: cordoned (no target of new deployments), drained (cordoned, and its assignments
removed: its agent stops Flotilla's containers), uncordoned, removed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.bulk import chunks, update_rows
from server.db.models import (
    App,
    Assignment,
    Deployment,
    DeploymentHost,
    Host,
    HostStatus,
    VolumePurge,
    utcnow,
)
from server.db.store import add_event, hash_token, new_token
from server.errors import Conflict, FieldError, NotFound
from server.states import ACTIVE, EventKind

_STATUSES = cast(Table, HostStatus.__table__)


async def stored_statuses(session: AsyncSession, ids: Sequence[int]) -> dict[int, Any]:
    """The last status stored for each of these hosts, as parsed JSON (none for a host that
    never reported)."""
    result: dict[int, Any] = {}
    statuses = _STATUSES.c
    for chunk in chunks(list(ids)):
        query = select(statuses.host_id, statuses.observed).where(statuses.host_id.in_(chunk))
        result.update({host_id: observed for host_id, observed in await session.execute(query)})
    return result


async def record_connections(
    session: AsyncSession,
    connections: dict[int, tuple[bool, str | None, str | None]],
    touch: Sequence[int],
) -> None:
    """Write agents' connections and departures (host id -> up, agent and Docker versions)
    and touch `last_seen` of the hosts in `touch`, in a few statements."""
    at = utcnow()
    rows: dict[int, dict[str, Any]] = {}
    for host_id, (up, agent_version, docker_version) in connections.items():
        row: dict[str, Any] = {"last_seen": at, "connected": up}
        if agent_version is not None:
            row["agent_version"] = agent_version[:50]
            row["docker_version"] = (docker_version or "")[:50]
        rows[host_id] = row
    hosts = cast(Table, Host.__table__)
    await update_rows(session, hosts, hosts.c.id, rows)
    for chunk in chunks(list(touch)):
        await session.execute(update(Host).where(Host.id.in_(chunk)).values(last_seen=at))


async def forget_connections(session: AsyncSession) -> int:
    """Mark every host disconnected (a server starting holds no agent connection yet); how
    many were marked connected."""
    result = await session.execute(update(Host).where(Host.connected).values(connected=False))
    return int(getattr(result, "rowcount", 0) or 0)


async def save_statuses(session: AsyncSession, statuses: Mapping[int, object]) -> None:
    """Insert or replace each host's status row (host id -> status, anything the JSON
    column writes) and touch the hosts' `last_seen`: one executemany of an upsert, which
    SQLite (3.24 and later) and PostgreSQL both write as INSERT ... ON CONFLICT DO UPDATE."""
    at = utcnow()
    for chunk in chunks(list(statuses)):
        await session.execute(update(Host).where(Host.id.in_(chunk)).values(last_seen=at))
    bind = session.get_bind()
    upsert = (pg_insert if bind.dialect.name == "postgresql" else sqlite_insert)(_STATUSES)
    statement = upsert.on_conflict_do_update(
        index_elements=[_STATUSES.c.host_id],
        set_={"observed": upsert.excluded.observed, "reported_at": upsert.excluded.reported_at},
    )
    rows = [{"host_id": h, "observed": status, "reported_at": at} for h, status in statuses.items()]
    await session.execute(statement, rows)


async def _locked(session: AsyncSession, name: str) -> Host:
    host = await session.scalar(select(Host).where(Host.name == name).with_for_update())
    if host is None:
        raise NotFound(f"host {name!r} does not exist", "name")
    return host


async def new_host_token(session: AsyncSession, name: str, actor: str) -> tuple[Host, str]:
    """Give a registered host a new token (the old one stops working); return the host
    and the token, shown once."""
    host = await _locked(session, name)
    token = new_token()
    host.token_hash = hash_token(token)
    await add_event(
        session, EventKind.HOST_TOKEN_ROTATED, actor, f"host {name} got a new token", host=name
    )
    return host, token


async def _refuse_if_targeted(session: AsyncSession, host: Host, doing: str) -> None:
    """Raise 409 `host_in_use` while the host is a target of an active deployment."""
    active = (
        await session.scalars(
            select(DeploymentHost.deployment_id)
            .join(Deployment, Deployment.id == DeploymentHost.deployment_id)
            .where(DeploymentHost.host_id == host.id, Deployment.status.in_(ACTIVE))
            .order_by(DeploymentHost.deployment_id)
        )
    ).all()
    if active:
        ids = ", ".join(str(i) for i in active)
        raise Conflict(
            "host_in_use",
            f"host {host.name!r} is a target of active deployment(s) {ids}: cancel them or "
            f"wait until they end before you {doing} it",
            [FieldError("name", "a target of an active deployment")],
        )


async def assigned_apps(session: AsyncSession, host_id: int) -> list[str]:
    """Names of the apps assigned to a host, by name."""
    query = (
        select(App.name)
        .join(Assignment, Assignment.app_id == App.id)
        .where(Assignment.host_id == host_id)
        .order_by(App.name)
    )
    return list((await session.scalars(query)).all())


async def cordon(session: AsyncSession, name: str, actor: str, on: bool = True) -> Host:
    """Cordon a host (no target of new deployments; what runs there stays), or uncordon it
    (`on=False`); an event when that changes it."""
    host = await _locked(session, name)
    if host.cordoned != on:
        host.cordoned = on
        kind = EventKind.HOST_CORDONED if on else EventKind.HOST_UNCORDONED
        what = "cordoned" if on else "uncordoned"
        await add_event(session, kind, actor, f"host {name} {what}", host=name)
    return host


async def drain(session: AsyncSession, name: str, actor: str) -> tuple[Host, list[str]]:
    """Cordon a host and remove every assignment it has (its agent then stops and removes
    Flotilla's containers there), with an event for the host and one per app; return the
    host and the apps it lost. Refused (409 `host_in_use`) while it is a target of an
    active deployment: that deployment would assign it again."""
    host = await _locked(session, name)
    await _refuse_if_targeted(session, host, "drain")
    await cordon(session, name, actor)
    apps = await assigned_apps(session, host.id)
    await session.execute(delete(Assignment).where(Assignment.host_id == host.id))
    host.generation += 1  # its desired state changed: no app
    for app in apps:
        await add_event(
            session,
            EventKind.APP_REMOVED,
            actor,
            f"{app} removed from {name}: host drained",
            app=app,
            host=name,
        )
    listed = ", ".join(apps) if apps else "no app"
    await add_event(
        session, EventKind.HOST_DRAINED, actor, f"host {name} drained: removed {listed}", host=name
    )
    return host, apps


async def remove_host(session: AsyncSession, name: str, actor: str, force: bool = False) -> int:
    """Remove a host with its assignments, its last status and its rows in finished
    deployments (the deployments and the events stay); return its id. Refused (409
    `host_in_use`) while it is a target of an active deployment, and (409
    `host_not_drained`) while an app is assigned to it, unless `force`."""
    host = await _locked(session, name)
    await _refuse_if_targeted(session, host, "remove")
    apps = await assigned_apps(session, host.id)
    if apps and not force:
        raise Conflict(
            "host_not_drained",
            f"host {name!r} still runs {', '.join(apps)}: drain it first "
            "(POST /v1/hosts/{name}/drain), or remove it anyway with ?force=true "
            "(its containers keep running)",
            [FieldError("name", "not drained")],
        )
    for table in (Assignment, HostStatus, DeploymentHost, VolumePurge):
        await session.execute(delete(table).where(table.host_id == host.id))
    await session.execute(delete(Host).where(Host.id == host.id))
    await add_event(session, EventKind.HOST_REMOVED, actor, f"host {name} removed", host=name)
    return host.id
