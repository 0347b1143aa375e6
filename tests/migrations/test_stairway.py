"""Every migration goes up, down and up again, and the models match the migrated schema."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import inspect
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
