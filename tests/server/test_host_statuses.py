"""What the hub writes of agents' reports, on SQLite and PostgreSQL: each host's newest status
in host_statuses (inserted at its first report, replaced at the next), and its host row
marked connected and seen."""

from __future__ import annotations

from sqlalchemy import select

from server.db import rollouts, store
from server.db.models import Host
from server.db.session import Sessions


async def test_a_hosts_newest_status_is_kept(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        for name in ("h1", "h2"):
            await store.add_host(session, name, {})
    async with sessions() as session:
        ids = dict((await session.execute(select(Host.name, Host.id))).all())
    for generation in (1, 2):  # the first report inserts the row, the second replaces it
        status = {"type": "status", "host": "h1", "generation": generation, "instances": []}
        async with sessions.begin() as session:
            await rollouts.record_reports(
                session, observed={ids["h1"]: status}, connections={}, touch=[]
            )
    async with sessions() as session:
        stored = await rollouts.observed_by_id(session, [ids["h1"], ids["h2"]])
        marks = dict((await session.execute(select(Host.name, Host.connected))).all())
        seen = (await session.execute(select(Host.last_seen).where(Host.name == "h1"))).scalar()

    assert stored == {ids["h1"]: status}  # h2 never reported: no status
    assert marks == {"h1": True, "h2": False}
    assert seen is not None
