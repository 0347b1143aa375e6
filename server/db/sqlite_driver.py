"""SQLite's driver for the async engine: aiosqlite, with one trip to its thread per statement.

aiosqlite runs each connection's SQLite calls on a thread of its own. SQLAlchemy's adapter
for it makes three or four trips there for every statement (make a cursor, execute, fetch
the rows, close the cursor), and each trip is a hand-off to that thread and a wake-up of
the event loop. On a fan-out to 100 hosts a controller pass is about a dozen statements, and
those trips were about a third of its time (bench/RESULTS.md: the A/B of this module).

Here a statement runs whole in one trip: a function, run on the connection's thread through
aiosqlite, makes the cursor, executes, fetches every row and closes. It sits behind the
DBAPI that SQLAlchemy's aiosqlite dialect takes as its `module` (`create_engine` in
server/db/session.py), so nothing above the engine changes: results, errors (SQLite's own
exception classes, as before), commit and rollback (one trip each) and server-side cursors
(`stream()`, SQLAlchemy's own) are as they were.

A commit or rollback with no transaction open makes no trip: sqlite3's own would do nothing,
and SQLAlchemy's pool rolls back every connection it is given back, so each session (a token's
check, a read, or one that has just committed) paid a trip for nothing.

A write whose statement carries the execution option DEFER (`session.deferred`: no caller
reads its row count or rows) makes no trip of its own: it waits, in order, on its connection
and goes with the connection's next statement, commit or streamed read, in that one trip. A
pass's five writes of a new deployment's rows, assignments and generations were five trips
of their own. Its error (a constraint it broke) is raised by that next call, with a note
naming it; a rollback drops what waits. The writes queued after a failed one never ran, so
its transaction must end there (the server has no savepoints: a database error ends the
transaction, and a retry starts a fresh one). PostgreSQL has no such option: its writes go
at once.

A locking read (`SELECT ... FOR UPDATE`, which SQLite does not have: its dialect drops the
clause) that finds no transaction open begins one with BEGIN IMMEDIATE, in the read's own
trip: SQLite has no row locks, and its write lock, taken there, is what keeps another
writer from changing what the transaction read before it writes (sqlite3 begins a
transaction only at the first write, so the reads before it saw rows another connection
could then change under them, and a pass's UPDATE by id could write over a pause). Readers
are not held up (WAL); writers wait for the commit, as PostgreSQL's wait for the row locks.

It leans on private names of aiosqlite (`Connection._execute`, which queues a function
for the connection's thread; `Connection._conn` and `_connection`, the sqlite3 connection that
thread owns), on the connection class of SQLAlchemy's dialect and on a select's
`_for_update_arg` (its FOR UPDATE, read by `mark_statement`), so pyproject.toml bounds both
versions; tests/server/test_sqlite_driver.py checks what the engine relies on (a locking read
that stopped taking the lock fails its test).
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_

T = TypeVar("T")
# what a statement leaves: its description, its rows (None: it has none), rowcount, lastrowid
Outcome = tuple[Any, list[Any] | None, int, int | None]


DEFER = "flotilla_defer"  # the execution option of a write that waits for the next trip
# a write waiting on its connection: its operation, its parameters, whether an executemany
Deferred = tuple[str, Any, bool]


def _statement(
    db: sqlite3.Connection,
    waiting: list[Deferred],
    operation: str,
    parameters: Any,
    locking: bool = False,
) -> Outcome:
    """The writes waiting, then one statement, whole, on the connection's thread; a locking
    read first takes the write lock for its transaction, if none is open."""
    _run_deferred(db, waiting)
    if locking and not db.in_transaction:
        db.execute("BEGIN IMMEDIATE")
    cursor = db.cursor()
    try:
        cursor.execute(operation, () if parameters is None else parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _statements(
    db: sqlite3.Connection, waiting: list[Deferred], operation: str, rows: Sequence[Any]
) -> Outcome:
    """The writes waiting, then one statement for each row of parameters, on the
    connection's thread."""
    _run_deferred(db, waiting)
    cursor = db.cursor()
    try:
        cursor.executemany(operation, rows)
        return None, None, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _commit(db: sqlite3.Connection, waiting: list[Deferred]) -> None:
    """The writes waiting, then the commit, on the connection's thread."""
    _run_deferred(db, waiting)
    db.commit()


def _run_deferred(db: sqlite3.Connection, waiting: list[Deferred]) -> None:
    """Run the writes that waited for this trip, in order; one that fails says which it was
    (the error surfaces at the statement that carried it)."""
    for operation, parameters, many in waiting:
        cursor = db.cursor()
        try:
            if many:
                cursor.executemany(operation, parameters)
            else:
                cursor.execute(operation, () if parameters is None else parameters)
        except Exception as exc:
            exc.add_note(f"in a deferred write: {' '.join(operation.split())[:300]}")
            raise
        finally:
            cursor.close()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's adapted aiosqlite connection, whose cursors make one trip a statement."""

    __slots__ = ("waiting",)

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.waiting: list[Deferred] = []  # deferred writes, for the next trip

    def cursor(self, server_side: bool = False) -> Any:
        """A cursor: ours, or SQLAlchemy's own for a server-side (streamed) result (the
        writes waiting go first, in a trip of their own)."""
        if server_side:
            if self.waiting:
                self._take_waiting_with(_run_deferred)
            return super().cursor(server_side=True)
        return OneTripCursor(self)

    def commit(self) -> None:
        """The writes waiting and the commit, in one trip; nothing if no transaction is open
        and nothing waits."""
        if self.waiting:
            self._take_waiting_with(_commit)
        elif self._in_transaction():
            super().commit()

    def rollback(self) -> None:
        """Drop the writes waiting; roll back, if a transaction is open (one trip)."""
        self.waiting.clear()
        if self._in_transaction():
            super().rollback()

    def close(self) -> None:
        """Drop the writes waiting (never committed), and close."""
        self.waiting.clear()
        super().close()

    def take_waiting(self) -> list[Deferred]:
        """The writes waiting, for the trip about to go (and none after it)."""
        waiting, self.waiting = self.waiting, []
        return waiting

    def _take_waiting_with(self, fn: Callable[[sqlite3.Connection, list[Deferred]], None]) -> None:
        try:
            await_(self.on_thread(fn, self.take_waiting()))
        except Exception as error:
            self._handle_exception(error)  # SQLAlchemy's translation

    def _in_transaction(self) -> bool:
        """Whether SQLite has a transaction open on this connection (sqlite3's flag, read
        from SQLite itself, so it is exact however the transaction began). Read here, off
        the connection's thread: no statement is running, as SQLAlchemy's greenlet waits on
        each. A closed connection answers True, so that the call goes on as it did before."""
        db: sqlite3.Connection | None = self._connection._connection  # None once closed
        if db is None:
            return True
        try:
            return db.in_transaction
        except sqlite3.ProgrammingError:  # closed
            return True

    async def on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(sqlite3 connection, *args)`, run on this connection's thread."""
        connection = self._connection  # the aiosqlite.Connection
        async with self._execute_mutex:
            result: T = await connection._execute(fn, connection._conn, *args)
        return result


class OneTripCursor:
    """A DBAPI cursor whose every statement is one trip to the connection's thread; the rows
    are fetched in that trip and served from memory."""

    server_side = False
    arraysize = 1

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1  # and so it stays for a deferred write
        self.lastrowid: int | None = None
        self.defer = False  # set by `mark_statement` for a statement that carries DEFER
        self.locking = False  # set by `mark_statement` for a SELECT ... FOR UPDATE

    def execute(self, operation: str, parameters: Any = None) -> None:
        """Run one statement (inside SQLAlchemy's greenlet, as its own cursor does), with the
        writes waiting; or, `defer` set, wait for the next trip."""
        if self.defer:
            self._connection.waiting.append((operation, parameters, False))
            await_(_nothing())  # SQLAlchemy's async layer requires an await of every execute
            return
        self._take(_statement, operation, parameters, self.locking)

    def executemany(self, operation: str, rows: Sequence[Any]) -> None:
        """Run one statement for each row of parameters, in one trip (or wait, as above)."""
        if self.defer:
            self._connection.waiting.append((operation, rows, True))
            await_(_nothing())
            return
        self._take(_statements, operation, rows)

    def _take(self, fn: Callable[..., Outcome], operation: str, *args: Any) -> None:
        connection = self._connection
        try:
            outcome = await_(connection.on_thread(fn, connection.take_waiting(), operation, *args))
        except Exception as error:
            connection._handle_exception(error)  # SQLAlchemy's translation
        self.description, rows, self.rowcount, self.lastrowid = outcome
        self._rows = deque(rows) if rows else deque()

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        """The next `size` rows (arraysize by default)."""
        rows = self._rows
        return [rows.popleft() for _ in range(min(size or self.arraysize, len(rows)))]

    def fetchall(self) -> list[Any]:
        """The rows not fetched yet."""
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Iterator[Any]:
        while self._rows:
            yield self._rows.popleft()

    def close(self) -> None:
        """Drop what was not fetched (the SQLite cursor was closed in its trip)."""
        self._rows.clear()

    async def _async_soft_close(self) -> None:
        """What SQLAlchemy's async results call on an adapted cursor: nothing is left open."""


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module SQLAlchemy's aiosqlite dialect is given: its connections are ours."""

    def connect(self, *args: Any, **kwargs: Any) -> OneTripConnection:
        """A connection as the dialect makes one, with one-trip cursors."""
        adapted = super().connect(*args, **kwargs)
        return OneTripConnection(self, adapted._connection)


async def _nothing() -> None:
    """An await that goes nowhere: no trip, and the event loop is not yielded to."""


def mark_statement(
    _conn: Any,
    cursor: Any,
    _statement: str,
    _parameters: Any,
    context: Any,
    _executemany: bool,
) -> None:
    """The engine's `before_cursor_execute` listener (create_engine in server/db/session.py
    listens with it): a statement that carries DEFER waits for the next trip; a SELECT ...
    FOR UPDATE (the clause SQLite's dialect does not render) takes the write lock."""
    if context is None or cursor.__class__ is not OneTripCursor:
        return
    if context.execution_options.get(DEFER):
        cursor.defer = True
    compiled = context.compiled
    if compiled is not None and getattr(compiled.statement, "_for_update_arg", None) is not None:
        cursor.locking = True


def dbapi() -> OneTripDBAPI:
    """The module to pass to `create_async_engine(..., module=)` for a sqlite+aiosqlite URL."""
    return OneTripDBAPI(aiosqlite, sqlite3)
