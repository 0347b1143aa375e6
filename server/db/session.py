"""Engine and session factory; SQLite gets WAL and a busy timeout so readers never block, and
its driver makes one trip to aiosqlite's thread per statement (server/db/sqlite_driver.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Executable, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from agent.codec import dumps_json, loads_json
from server.db import sqlite_driver

E = TypeVar("E", bound=Executable)
WROTE = "flotilla.wrote"  # a session.info flag: this transaction wrote something

Sessions = async_sessionmaker[AsyncSession]
IDLE_PING_SECONDS = 10.0
IDLE_SINCE = "flotilla.idle_since"  # a pool record's info key: when it was checked in


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url` (sqlite+aiosqlite or postgresql+asyncpg).

    JSON columns go through orjson: every status a host sends is stored as JSON, and at
    10,000 hosts the stdlib's encoding of them was a twentieth of a busy server's time."""
    codec: dict[str, Any] = {"json_serializer": dumps_json, "json_deserializer": loads_json}
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, module=sqlite_driver.dbapi(), connect_args={"timeout": 30}, **codec
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "before_cursor_execute", sqlite_driver.mark_statement)
        return engine
    # the same ceiling of 30 connections as before (10 + 20 overflow), all kept: overflow
    # connections were closed at checkin and reopened (TLS attempt, auth) at the next
    # checkout whenever more than 10 requests used the database at once
    engine = create_async_engine(url, pool_size=30, max_overflow=0, **codec)
    _ping_after_idle(engine, IDLE_PING_SECONDS)
    return engine


def deferred(statement: E) -> E:
    """`statement` (a write whose row count and rows no caller reads) marked to wait for its
    connection's next trip on SQLite (server/db/sqlite_driver.py): it goes, in order, with
    the next statement or the commit of its transaction, and an error of its own is raised
    there. On PostgreSQL it runs at once, as any statement."""
    return statement.execution_options(**{sqlite_driver.DEFER: True})


def mark_written(session: AsyncSession) -> None:
    """Count this transaction as a write where `create_sessions` cannot see it: a SELECT
    whose CTEs insert or update is a SELECT to SQLAlchemy."""
    session.info[WROTE] = True


def _ping_after_idle(engine: AsyncEngine, idle: float) -> None:
    """Ping a pooled connection at checkout only if it sat unused for `idle` seconds.

    `pool_pre_ping` pinged at every checkout, and on asyncpg a ping is three round trips
    (BEGIN, an empty query, ROLLBACK): a quarter of the statements of a POST. A connection in
    steady use has just proven itself; one that slept (through a database restart, say) is
    checked, and a dead one is replaced. A connection that died since its last use fails
    its request once, and SQLAlchemy then discards the whole pool (disconnect handling).
    """

    def checkin(_dbapi: Any, record: Any) -> None:
        record.info[IDLE_SINCE] = time.monotonic()

    def checkout(dbapi: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(IDLE_SINCE)
        if since is None or time.monotonic() - since < idle:
            return  # new, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:  # the pool discards it and checks out another (or connects)
            raise DisconnectionError("pooled connection failed its ping") from exc

    event.listen(engine.sync_engine.pool, "checkin", checkin)
    event.listen(engine.sync_engine.pool, "checkout", checkout)


# attaches its listeners to a factory's own Session class (`create_sessions`): a module's
# wake-up after the commits that wrote what it watches (events, webhook deliveries)
Listener = Callable[[type[Session]], None]


def create_sessions(
    engine: AsyncEngine,
    on_commit: Callable[[], None] | None = None,
    listeners: Sequence[Listener] = (),
) -> Sessions:
    """A session factory; `on_commit` runs after every committed transaction that wrote
    something (cache bust). Read-only transactions (a controller or webhook pass that found
    nothing to do, once a second each) do not count: they emptied the read cache for nothing.
    Each of `listeners` attaches its own to the factory's Session class, made here for this
    factory alone (several apps share a test process), before the factory exists: nothing
    is configured on it afterwards."""
    if on_commit is None and not listeners:
        return async_sessionmaker(engine, expire_on_commit=False)

    class CommitAwareSession(Session):
        pass

    if on_commit is not None:
        _count_writes(CommitAwareSession, on_commit)
    for listen in listeners:
        listen(CommitAwareSession)
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=CommitAwareSession)


def wake_after(flag: str, wake: Callable[[], None]) -> Listener:
    """A listener that calls `wake` after every commit of a transaction whose session.info
    holds `flag` (set by what wrote the rows a loop watches), and forgets the flag when the
    transaction ends without a commit."""

    def listen(session_class: type[Session]) -> None:
        def committed(session: Session) -> None:
            if session.info.pop(flag, False):
                wake()

        def ended(session: Session, transaction: SessionTransaction) -> None:
            if transaction.parent is None:  # rolled back: nothing was written
                session.info.pop(flag, None)

        event.listen(session_class, "after_commit", committed)
        event.listen(session_class, "after_transaction_end", ended)

    return listen


def _count_writes(session_class: type[Session], on_commit: Callable[[], None]) -> None:
    """Mark each transaction that writes something (WROTE), and call `on_commit` after its
    commit (`wake_after`)."""

    def flushed(session: Session, _context: Any) -> None:
        session.info[WROTE] = True  # a flush that had nothing to write fires no event

    def executed(state: ORMExecuteState) -> None:
        if not state.is_select:  # Core insert/update/delete, or text: assume it writes
            state.session.info[WROTE] = True

    event.listen(session_class, "after_flush", flushed)
    event.listen(session_class, "do_orm_execute", executed)
    wake_after(WROTE, on_commit)(session_class)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
