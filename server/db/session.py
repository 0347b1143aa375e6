"""Engine and session factory; SQLite gets WAL and a busy timeout so readers never block."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

Sessions = async_sessionmaker[AsyncSession]


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url` (sqlite+aiosqlite or postgresql+asyncpg)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def create_sessions(engine: AsyncEngine, on_commit: Callable[[], None] | None = None) -> Sessions:
    """A session factory; `on_commit` runs after every committed transaction (cache bust)."""
    if on_commit is None:
        return async_sessionmaker(engine, expire_on_commit=False)

    class CommitAwareSession(Session):
        pass

    event.listen(CommitAwareSession, "after_commit", lambda _session: on_commit())
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=CommitAwareSession)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
