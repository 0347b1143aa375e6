"""Run Alembic migrations from code: at server start, from `flotilla db upgrade`, in tests."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url

import migrations
from server.errors import DatabaseProblem

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(url: str) -> Config:
    """An Alembic config for the migrations folder and this database, without its logging."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Blocking: call it before the event loop starts, or through a thread."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Undo migrations down to `revision`; blocking, like upgrade (the stairway test uses it)."""
    command.downgrade(alembic_config(url), revision)


def upgrade_or_explain(url: str) -> None:
    """`upgrade`, but a database the server cannot start on (corrupt, locked, newer than
    this flotilla, unreachable, refused) raises DatabaseProblem with one line saying what
    is wrong and what to do, instead of a traceback."""
    try:
        upgrade(url)
    except Exception as exc:
        why = explain(url, exc)
        if why is None:
            raise
        raise DatabaseProblem(why) from exc


def explain(url: str, exc: BaseException) -> str | None:
    """One line for a failure to open or migrate the database at `url`; None if unknown."""
    where = _where(url)
    if isinstance(exc, CommandError) and "Can't locate revision" in str(exc):
        return (
            f"the database {where} has a schema newer than this flotilla knows ({exc}); "
            "run the flotilla version that wrote it, or restore a backup"
        )
    for cause in _causes(exc):
        code = getattr(cause, "sqlite_errorcode", None)
        if isinstance(cause, sqlite3.Error) and isinstance(code, int):
            primary = code & 0xFF
            if primary in (11, 26):  # SQLITE_CORRUPT, SQLITE_NOTADB
                return (
                    f"{where} is not a SQLite database or is corrupt ({cause}); move it away "
                    "or restore it from a backup"
                )
            if primary in (5, 6):  # SQLITE_BUSY, SQLITE_LOCKED
                return (
                    f"{where} is locked by another process ({cause}); is another flotilla "
                    "server using this data dir? Stop it and start again"
                )
            if primary in (8, 14):  # SQLITE_READONLY, SQLITE_CANTOPEN
                return f"cannot open {where} for writing ({cause}); check the data dir's owner"
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            if state in ("28P01", "28000"):
                return f"PostgreSQL at {where} refused the login ({cause}); check --database-url"
            if state == "3D000":
                return f"the PostgreSQL database {where} does not exist; create it first"
            if state[:2] in ("08", "57", "53"):
                return f"PostgreSQL at {where} does not answer ({cause}); is it running?"
        if isinstance(cause, ConnectionError | TimeoutError | socket.gaierror):
            return (
                f"cannot reach the database at {where} ({cause}); check --database-url and "
                "that the database is running"
            )
    return None


def _where(url: str) -> str:
    """The database's location without its password."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return str(parsed.database)
    return parsed.render_as_string(hide_password=True).split("://", 1)[-1]


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from (SQLAlchemy's `orig`, `__cause__`, `__context__`)."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        cause = todo.pop()
        if cause is None or any(cause is f for f in found):
            continue
        found.append(cause)
        todo += [getattr(cause, "orig", None), cause.__cause__, cause.__context__]
    return found
