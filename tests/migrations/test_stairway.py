"""Every migration goes up, down and up again, and the models match the migrated schema."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from server.db import migrate
from server.db.models import Base
from server.db.session import create_engine

TABLES = {t for t in Base.metadata.tables}


def revisions(url: str) -> list[Script]:
    """All revisions from the first to head."""
    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    return list(reversed(list(script.walk_revisions("base", "heads"))))


async def upgrade(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(migrate.upgrade, url, revision)


async def downgrade(url: str, revision: str = "base") -> None:
    await asyncio.to_thread(migrate.downgrade, url, revision)


async def on_connection(url: str, fn: Any) -> Any:
    """Run a blocking inspection `fn(connection)` on a fresh connection to `url`."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _version(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_stairway(database_url: str) -> None:
    steps = revisions(database_url)
    assert steps, "no migrations found"
    for step in steps:
        down = step.down_revision
        assert down is None or isinstance(down, str), f"{step.revision}: merges are not expected"
        await upgrade(database_url, step.revision)
        assert await on_connection(database_url, _version) == step.revision
        await downgrade(database_url, down or "base")
        assert await on_connection(database_url, _version) == down
        await upgrade(database_url, step.revision)
        assert await on_connection(database_url, _version) == step.revision

    head = steps[-1].revision
    await upgrade(database_url)
    assert await on_connection(database_url, _version) == head
    assert await on_connection(database_url, _tables) == TABLES | {"alembic_version"}

    await downgrade(database_url)
    assert await on_connection(database_url, _tables) == {"alembic_version"}
    assert await on_connection(database_url, _version) is None

    await upgrade(database_url)
    assert await on_connection(database_url, _tables) == TABLES | {"alembic_version"}
    assert await on_connection(database_url, _version) == head


async def test_models_match_migrations(database_url: str) -> None:
    await upgrade(database_url)
    diff = await on_connection(database_url, _diff)
    assert diff == [], "the models and the migrations differ; write a migration:\n" + "\n".join(
        map(repr, diff)
    )


async def test_statuses_move_to_their_own_table_and_back(database_url: str) -> None:
    """0005 moves each host's last status out of the hosts table; its downgrade moves it
    back. A host that reported keeps its status both ways."""
    status = {"type": "status", "host": "web-1", "instances": [{"app": "shop", "release": 3}]}

    def add_host(conn: Connection) -> None:
        conn.execute(
            text(
                "INSERT INTO hosts (name, labels, token_hash, generation, connected, observed,"
                " created_at) VALUES ('web-1', '{}', 'x', 0, false, :observed, :at)"
            ),
            {"observed": json.dumps(status), "at": dt.datetime(2026, 11, 30, tzinfo=dt.UTC)},
        )
        conn.commit()

    def statuses(conn: Connection) -> list[tuple[int, Any]]:
        rows = conn.execute(text("SELECT host_id, observed FROM host_statuses")).all()
        return [(host_id, _json(observed)) for host_id, observed in rows]

    def observed(conn: Connection) -> Any:
        return _json(conn.execute(text("SELECT observed FROM hosts")).scalar_one())

    await upgrade(database_url, "0004")
    await on_connection(database_url, add_host)
    await upgrade(database_url, "0005")
    assert await on_connection(database_url, statuses) == [(1, status)]
    await downgrade(database_url, "0004")
    assert await on_connection(database_url, observed) == status


def _json(value: Any) -> Any:
    """A JSON column's value: SQLite's driver gives the text, asyncpg's too (json, not jsonb)."""
    return json.loads(value) if isinstance(value, str) else value
