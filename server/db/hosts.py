"""Hosts' connections and last statuses as the database keeps them: the writes of the hub's
host log and the status store, and the reads behind them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Host, HostStatus, utcnow
from server.db.rollouts import _chunks, update_rows

_STATUSES = cast(Table, HostStatus.__table__)


async def stored_statuses(session: AsyncSession, ids: Sequence[int]) -> dict[int, Any]:
    """The last status stored for each of these hosts, as parsed JSON (none for a host that
    never reported)."""
    result: dict[int, Any] = {}
    statuses = _STATUSES.c
    for chunk in _chunks(list(ids)):
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
    for chunk in _chunks(list(touch)):
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
    for chunk in _chunks(list(statuses)):
        await session.execute(update(Host).where(Host.id.in_(chunk)).values(last_seen=at))
    bind = session.get_bind()
    upsert = (pg_insert if bind.dialect.name == "postgresql" else sqlite_insert)(_STATUSES)
    statement = upsert.on_conflict_do_update(
        index_elements=[_STATUSES.c.host_id],
        set_={"observed": upsert.excluded.observed, "reported_at": upsert.excluded.reported_at},
    )
    rows = [{"host_id": h, "observed": status, "reported_at": at} for h, status in statuses.items()]
    await session.execute(statement, rows)
