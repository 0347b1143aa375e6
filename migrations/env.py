"""Alembic environment: async engine, same naming convention as the models."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from server.db.models import Base
from server.db.session import create_engine

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # batch mode changes a table by copying it, dropping it and renaming the copy; with
        # foreign keys on, dropping a table that another one refers to fails. They are off
        # while migrations run (first: SQLite ignores this pragma inside a transaction) and
        # checked before the commit; the engine, and so this connection, is disposed after.
        # (Python's sqlite3 begins its transaction at the first write: DDL before it, such
        # as a CREATE TABLE, is not undone if the check fails.)
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    context.configure(
        connection=connection, target_metadata=target_metadata, render_as_batch=sqlite
    )
    with context.begin_transaction():
        context.run_migrations()
        if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()):
            raise RuntimeError(f"migrations left rows whose foreign keys point nowhere: {broken}")


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set by server.db.migrate"
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `flotilla db upgrade`")
run_migrations_online()
