"""Queries and writes behind the REST API and the CLI. Only server/db knows SQLAlchemy."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any, cast

from sqlalchemy import Integer, Table, bindparam, func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from server.db import events, webhooks
from server.db.models import (
    App,
    Assignment,
    Deployment,
    Event,
    Host,
    Release,
    Token,
    utcnow,
)
from server.db.session import deferred
from server.errors import Conflict, NotFound
from server.states import DeploymentStatus, EventKind

TOKEN_PREFIX = "flt_"
# What a database write can fail with; `retryable` says which of these a fresh transaction
# can get past.
DatabaseError = DBAPIError
# PostgreSQL: serialization failure, deadlock detected (the transaction was rolled back)
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
# SQLite's primary result codes (the low byte of an extended code): SQLITE_BUSY (another
# connection writes; also SQLITE_BUSY_SNAPSHOT, a WAL write whose read snapshot went stale)
# and SQLITE_LOCKED
RETRYABLE_SQLITE_CODES = frozenset({5, 6})


def retryable(exc: BaseException) -> bool:
    """Is this database error one that a fresh transaction can get past?

    Only serialization failures, deadlocks and SQLite's busy or locked: a constraint
    violation (unique, NOT NULL, foreign key) fails the same way again, and surfaces at once.
    The drivers' codes decide, not their message text."""
    if not isinstance(exc, DBAPIError):
        return False
    seen: set[int] = set()
    cause: BaseException | None = exc.orig
    while cause is not None and id(cause) not in seen:  # asyncpg's error is the adapter's cause
        seen.add(id(cause))
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            return state in RETRYABLE_SQLSTATES
        if isinstance(cause, sqlite3.Error):
            code = getattr(cause, "sqlite_errorcode", None)
            if isinstance(code, int):
                return code & 0xFF in RETRYABLE_SQLITE_CODES
            # no code: an error raised by the driver itself, not by SQLite
            return False
        cause = cause.__cause__
    return False


# PostgreSQL SQLSTATE classes and codes of a server that is not there for us: connection
# exceptions (08), operator intervention (57: shutdown, cannot connect now), insufficient
# resources (53: too many connections), a database not accepting connections (55000) or gone
# (3D000)
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "57", "53"})
UNAVAILABLE_SQLSTATES = frozenset({"55000", "3D000"})
# SQLite: busy, locked, I/O error, corrupt, cannot open, full, read-only (primary codes)
UNAVAILABLE_SQLITE_CODES = frozenset({5, 6, 10, 11, 13, 14, 8})


def unavailable(exc: BaseException) -> bool:
    """Is this error the database being unreachable, gone away or unusable (an outage, not a
    bad statement)? The API answers 503 to these."""
    if isinstance(exc, PoolTimeout | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    seen: set[int] = set()
    cause: BaseException | None = exc.orig if isinstance(exc, DBAPIError) else exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            return state[:2] in UNAVAILABLE_SQLSTATE_CLASSES or state in UNAVAILABLE_SQLSTATES
        if isinstance(cause, sqlite3.Error):
            code = getattr(cause, "sqlite_errorcode", None)
            return isinstance(code, int) and code & 0xFF in UNAVAILABLE_SQLITE_CODES
        if isinstance(cause, ConnectionError | TimeoutError):
            return True
        cause = cause.__cause__
    return False


def new_token() -> str:
    """A new token: the prefix and 32 random bytes, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token (SHA-256): tokens are kept only as hashes."""
    return hashlib.sha256(token.encode()).hexdigest()


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


async def count_tokens(session: AsyncSession) -> int:
    """How many API tokens exist."""
    return int(await session.scalar(select(func.count(Token.id))) or 0)


async def add_host(
    session: AsyncSession, name: str, labels: dict[str, str], actor: str = "cli"
) -> str:
    """Register a host and return its token (shown once; only its hash is stored)."""
    if await session.scalar(select(Host.id).where(Host.name == name)) is not None:
        raise Conflict("host_exists", f"host {name!r} is already registered")
    token = new_token()
    session.add(Host(name=name, labels=labels, token_hash=hash_token(token)))
    await session.flush()
    await add_event(session, EventKind.HOST_ADDED, actor, f"host {name} registered", host=name)
    return token


async def host_by_token(session: AsyncSession, token: str) -> Host | None:
    """The host this agent token belongs to, if any."""
    return await session.scalar(select(Host).where(Host.token_hash == hash_token(token)))


async def list_hosts(
    session: AsyncSession, limit: int | None = None, after: str | None = None
) -> Sequence[Host]:
    """Every host, by name (at most `limit`, named after `after`, when given)."""
    query = select(Host).order_by(Host.name)
    if after is not None:
        query = query.where(Host.name > after)
    if limit is not None:
        query = query.limit(limit)
    return (await session.scalars(query)).all()


# the table's INSERT, not the ORM's: nothing reads an event's id back, and the unit of work's
# INSERT ... RETURNING (SQLite gets no batched RETURNING from the ORM) cost about 0.15 ms
# more per event (a deploy's two passes add three). It waits for the transaction's next trip
# (session.deferred)
_ADD_EVENT = deferred(insert(cast(Table, Event.__table__)))


async def add_event(
    session: AsyncSession,
    kind: str,
    actor: str,
    message: str,
    *,
    app: str | None = None,
    deployment_id: int | None = None,
    host: str | None = None,
) -> None:
    """Append an event to the audit log, and queue its webhook deliveries (if published and subscribed)."""
    session.info[events.ADDED] = True  # streams wake after the commit
    await session.execute(
        _ADD_EVENT,
        {
            "kind": kind,
            "actor": actor,
            "message": message,
            "app": app,
            "deployment_id": deployment_id,
            "host": host,
        },
    )
    await webhooks.enqueue(session, kind, message, app=app, deployment_id=deployment_id, host=host)


def request_hash(body: dict[str, Any]) -> str:
    """A stable hash of a request body (an Idempotency-Key's retry must repeat it)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


async def find_idempotent(
    session: AsyncSession, app_name: str, key: str, body_hash: str
) -> Deployment | None:
    """The deployment an earlier request with this Idempotency-Key created, if any."""
    found = await session.scalar(
        select(Deployment)
        .join(App, App.id == Deployment.app_id)
        .where(App.name == app_name, Deployment.idempotency_key == key)
    )
    if found is not None and found.request_hash != body_hash:
        raise Conflict(
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        )
    return found


async def lock_app(session: AsyncSession, name: str) -> App | None:
    """The app row, locked for this transaction."""
    return await session.scalar(select(App).where(App.name == name).with_for_update())


async def create_deployment(
    session: AsyncSession,
    app: App,
    release: int,
    *,
    kind: str,
    trigger: str,
    strategy: dict[str, Any],
    selector: dict[str, Any],
    reason: str | None = None,
    rollback_of: int | None = None,
    idempotency_key: str | None = None,
    body_hash: str | None = None,
) -> Deployment:
    """Add a pending deployment of release `release` of the app, and its `<kind>_requested` event."""
    deployment = Deployment(
        app_id=app.id,
        release=release,
        kind=kind,
        trigger=trigger,
        status=DeploymentStatus.PENDING,
        strategy=strategy,
        selector=selector,
        reason=reason,
        rollback_of=rollback_of,
        idempotency_key=idempotency_key,
        request_hash=body_hash,
    )
    session.add(deployment)
    await session.flush()
    await add_event(
        session,
        EventKind(f"{kind}_requested"),
        trigger,
        f"{kind} of release {release} requested" + (f": {reason}" if reason else ""),
        app=app.name,
        deployment_id=deployment.id,
    )
    return deployment


async def get_app(session: AsyncSession, name: str) -> App:
    """The app of this name; NotFound if there is none."""
    app = await session.scalar(select(App).where(App.name == name))
    if app is None:
        raise NotFound(f"app {name!r} does not exist", "app")
    return app


async def list_apps(session: AsyncSession) -> Sequence[App]:
    """Every app, by name."""
    return (await session.scalars(select(App).order_by(App.name))).all()


async def get_release(session: AsyncSession, app: App, number: int) -> Release | None:
    """Release `number` of the app, if it exists."""
    return await session.scalar(
        select(Release).where(Release.app_id == app.id, Release.number == number)
    )


async def list_releases(
    session: AsyncSession, app: App, limit: int | None = None, before: int | None = None
) -> Sequence[Release]:
    """The app's releases, newest first (at most `limit`, older than `before`, if given)."""
    query = select(Release).where(Release.app_id == app.id).order_by(Release.number.desc())
    if before is not None:
        query = query.where(Release.number < before)
    if limit is not None:
        query = query.limit(limit)
    return (await session.scalars(query)).all()


# a deployment with its app's name, built once (a waiting client's every read)
_DEPLOYMENT_AND_APP = (
    select(Deployment, App.name)
    .join(App, App.id == Deployment.app_id)
    .where(Deployment.id == bindparam("deployment_id", type_=Integer()))
)


async def deployment_and_app(session: AsyncSession, deployment_id: int) -> tuple[Deployment, str]:
    """The deployment of this id and its app's name, in one statement; NotFound if there is
    no such deployment."""
    found = (await session.execute(_DEPLOYMENT_AND_APP, {"deployment_id": deployment_id})).first()
    if found is None:
        raise NotFound(f"deployment {deployment_id} does not exist", "id")
    deployment, app = found
    return deployment, app


async def host_count(session: AsyncSession) -> int:
    """How many hosts are registered."""
    return int(await session.scalar(select(func.count(Host.id))) or 0)


async def app_names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    """The names of these apps, by id."""
    rows = await session.execute(select(App.id, App.name).where(App.id.in_(ids)))
    return {row.id: row.name for row in rows}


async def list_deployments(
    session: AsyncSession,
    app: App | None,
    limit: int,
    apps: Collection[str] | None = None,
    before: int | None = None,
) -> Sequence[Deployment]:
    """The newest deployments (at most `limit`), of one app or of all (of `apps` if given),
    older than the deployment `before` if given."""
    query = select(Deployment).order_by(Deployment.id.desc()).limit(limit)
    if before is not None:
        query = query.where(Deployment.id < before)
    if app is not None:
        query = query.where(Deployment.app_id == app.id)
    if apps is not None:
        query = query.where(Deployment.app_id.in_(select(App.id).where(App.name.in_(apps))))
    return (await session.scalars(query)).all()


def now() -> dt.datetime:
    """The current time, in UTC, as stored."""
    return utcnow()


async def ping(engine: AsyncEngine) -> None:
    """Raise unless the database answers a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def assignments_of_app(session: AsyncSession, app: App) -> Sequence[Assignment]:
    """Every host's assignment of the app."""
    return (await session.scalars(select(Assignment).where(Assignment.app_id == app.id))).all()


async def set_host_token(session: AsyncSession, name: str, labels: dict[str, str]) -> str:
    """Register `name` or, if it exists, give it a new token; return the token."""
    host = await session.scalar(select(Host).where(Host.name == name))
    if host is None:
        return await add_host(session, name, labels)
    token = new_token()
    host.token_hash = hash_token(token)
    await add_event(
        session, EventKind.HOST_TOKEN_ROTATED, "cli", f"host {name} got a new token", host=name
    )
    return token
