"""SQLite's driver (server/db/sqlite_driver.py): through the engine the server uses, every
kind of statement answers as SQLAlchemy's own aiosqlite adapter does."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import column, select, table, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db import session as db_session
from server.db import sqlite_driver


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = db_session.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INT)"))
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_the_engine_uses_the_one_trip_driver(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.dbapi_connection, sqlite_driver.OneTripConnection)


async def test_rows_counts_and_keys(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        inserted = await conn.execute(text("INSERT INTO t (name, n) VALUES ('a', 1)"))
        assert inserted.lastrowid == 1 and inserted.rowcount == 1
        many = await conn.execute(
            text("INSERT INTO t (name, n) VALUES (:name, :n)"),
            [{"name": "b", "n": 2}, {"name": "c", "n": 3}, {"name": "d", "n": 4}],
        )
        assert many.rowcount == 3
        returned = await conn.execute(
            text("INSERT INTO t (name, n) VALUES ('e', 5) RETURNING id, name")
        )
        assert returned.all() == [(5, "e")]
        updated = await conn.execute(text("UPDATE t SET n = n + 10 WHERE n >= 3"))
        assert updated.rowcount == 3
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT name, n FROM t ORDER BY id"))).all() == [
            ("a", 1),
            ("b", 2),
            ("c", 13),
            ("d", 14),
            ("e", 15),
        ]
        assert (await conn.execute(text("SELECT n FROM t WHERE id = 99"))).all() == []
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 5
        result = await conn.execute(text("SELECT id FROM t ORDER BY id"))
        assert result.fetchone() == (1,)
        assert result.fetchmany(2) == [(2,), (3,)]
        assert result.fetchall() == [(4,), (5,)]
        assert [row.n async for row in await conn.stream(text("SELECT n FROM t ORDER BY id"))] == [
            1,
            2,
            13,
            14,
            15,
        ]


async def test_a_constraint_violation_surfaces_and_the_connection_goes_on(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (name, n) VALUES ('a', 1)"))
    async with engine.connect() as conn:
        with pytest.raises(IntegrityError) as caught:
            await conn.execute(text("INSERT INTO t (name, n) VALUES ('a', 2)"))
        assert isinstance(caught.value.orig, sqlite3.IntegrityError)
        await conn.rollback()
        assert (await conn.execute(text("SELECT n FROM t"))).all() == [(1,)]


async def test_a_rolled_back_transaction_leaves_nothing(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("INSERT INTO t (name, n) VALUES ('a', 1)"))
        await conn.rollback()
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0


async def test_a_connection_given_back_mid_transaction_is_rolled_back(tmp_path: Path) -> None:
    """The pool's rollback at check-in still undoes what was not committed, and frees the
    write lock (only a commit or rollback with no transaction open is skipped)."""
    engine = db_session.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'lock.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, n INT)"))
        async with engine.connect() as conn:  # a read first: no transaction to end
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
        async with engine.connect() as conn:  # closed without a commit: the pool rolls back
            await conn.execute(text("INSERT INTO t (n) VALUES (1)"))
        other = db_session.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'lock.db'}")

        async def write() -> None:
            async with other.begin() as conn:
                await conn.execute(text("INSERT INTO t (n) VALUES (2)"))

        try:  # another writer is not held up by a lock left behind (busy timeout: 30 s)
            await asyncio.wait_for(write(), 5)
            async with other.connect() as conn:
                assert (await conn.execute(text("SELECT n FROM t"))).all() == [(2,)]
        finally:
            await other.dispose()
    finally:
        await engine.dispose()


# A deferred write (session.deferred) waits for its connection's next trip: these show that
# what it writes is the same as at once, in the same order, and that its error is not lost.
INSERT = db_session.deferred(text("INSERT INTO t (name, n) VALUES (:name, :n)"))


async def test_a_deferred_write_is_seen_by_the_next_statement_and_committed(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(INSERT, {"name": "a", "n": 1})
        await conn.execute(INSERT, [{"name": "b", "n": 2}, {"name": "c", "n": 3}])
        bumped = db_session.deferred(text("UPDATE t SET n = n * 10 WHERE name != 'c'"))
        await conn.execute(bumped)  # in order: after the inserts, before the read
        rows = await conn.execute(text("SELECT name, n FROM t ORDER BY id"))
        assert rows.all() == [("a", 10), ("b", 20), ("c", 3)]
        await conn.execute(INSERT, {"name": "d", "n": 4})  # the last: it goes with the commit
    async with engine.connect() as conn:
        names = (await conn.execute(text("SELECT name FROM t ORDER BY id"))).scalars().all()
        assert names == ["a", "b", "c", "d"]
        streamed = await conn.execute(INSERT, {"name": "e", "n": 5})  # before a streamed read
        assert [r[0] async for r in await conn.stream(text("SELECT name FROM t"))][-1] == "e"
        assert streamed.rowcount == -1  # a deferred write's count is not known
        await conn.rollback()


async def test_a_rolled_back_deferred_write_is_never_written(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(INSERT, {"name": "a", "n": 1})
        await conn.rollback()
        async with conn.begin():
            await conn.execute(INSERT, {"name": "b", "n": 2})
            await conn.execute(text("SELECT 1"))  # b is written here, then rolled back
            await conn.execute(INSERT, {"name": "c", "n": 3})  # waiting when it rolls back
            await conn.rollback()
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0


async def test_a_deferred_write_that_fails_fails_the_next_call_and_says_which(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(INSERT, {"name": "a", "n": 1})
    async with engine.connect() as conn:
        await conn.execute(INSERT, {"name": "a", "n": 2})  # a duplicate name: it waits
        with pytest.raises(IntegrityError) as failed:
            await conn.execute(text("SELECT 1"))
        notes = getattr(failed.value.orig, "__notes__", [])
        assert any("in a deferred write: INSERT INTO t" in note for note in notes)
        await conn.rollback()
        await conn.execute(INSERT, {"name": "a", "n": 3})
        with pytest.raises(IntegrityError):  # or the commit that carries it
            await conn.commit()
        await conn.rollback()
        assert (await conn.execute(text("SELECT n FROM t"))).scalars().all() == [1]


# SQLite has no SELECT ... FOR UPDATE: a locking read takes its write lock instead, so that
# no other connection writes what the transaction read before the transaction ends.
T = table("t", column("id"), column("name"), column("n"))


async def _write_at_once(engine: AsyncEngine) -> None:
    """A write on another connection that does not wait for a lock: it fails if one is held.
    The connection is closed after, not pooled: its busy timeout stays at 0."""
    async with engine.connect() as other:
        try:
            await other.execute(text("PRAGMA busy_timeout = 0"))
            await other.execute(text("UPDATE t SET n = n + 1"))
            await other.commit()
        finally:
            await other.invalidate()


async def test_a_locking_read_holds_off_other_writers_until_its_transaction_ends(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (name, n) VALUES ('a', 1)"))
    async with engine.connect() as conn:
        async with conn.begin():
            read = await conn.execute(select(T.c.n).where(T.c.name == "a").with_for_update())
            assert read.scalar() == 1
            with pytest.raises(OperationalError, match="database is locked"):
                await _write_at_once(engine)
            await conn.execute(text("UPDATE t SET n = 10 WHERE name = 'a'"))
        await _write_at_once(engine)  # committed: the lock is gone
        assert (await conn.execute(select(T.c.n))).scalar() == 11
        await conn.rollback()


async def test_a_plain_read_takes_no_lock(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (name, n) VALUES ('a', 1)"))
    async with engine.begin() as conn:
        assert (await conn.execute(select(T.c.n))).scalar() == 1
        await _write_at_once(engine)
        assert (await conn.execute(select(T.c.n))).scalar() == 2
