"""What the status store writes of agents' statuses, on SQLite and PostgreSQL: each host's
newest status in host_statuses (inserted at its first report, replaced at the next), its host
row seen; read back as the typed status, and a host that never reported has none."""

from __future__ import annotations

from sqlalchemy import select

from agent.protocol import Status
from server.db import store
from server.db.models import Host
from server.db.session import Sessions
from server.statuses import StatusStore
from server.turns import Turns


async def test_a_hosts_newest_status_is_kept(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        for name in ("h1", "h2"):
            await store.add_host(session, name, {})
    async with sessions() as session:
        ids = dict((await session.execute(select(Host.name, Host.id))).all())
    writer = StatusStore(sessions, Turns())
    for generation in (1, 2):  # the first report inserts the row, the second replaces it
        status = Status(host="h1", generation=generation)
        writer.record(ids["h1"], "h1", status)
        await writer.write()
    reader = StatusStore(sessions, Turns())  # another process: reads the database
    async with sessions() as session:
        stored = await reader.read(session, [(ids["h1"], "h1"), (ids["h2"], "h2")])
        seen = (await session.execute(select(Host.last_seen).where(Host.name == "h1"))).scalar()

    assert stored["h1"].status == status
    assert stored["h2"].status is None  # never reported
    assert stored["h1"].seq != stored["h2"].seq
    assert seen is not None
