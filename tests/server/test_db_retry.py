"""Which database errors a write retries, on SQLite and PostgreSQL: serialization failures,
deadlocks and SQLite's busy only; a constraint violation surfaces at once. Sets of one
secret, which number its versions themselves, wait for each other instead of racing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server import secrets
from server.db import deploys, store
from server.db import secrets as secret_rows
from server.db.models import App, Release
from server.db.session import Sessions
from server.keys import SESSIONS
from server.secret_box import SecretBox
from tests.conftest import Flotilla

SPEC = {"image": "flotilla-test/web:v1"}


async def deploy(sessions: Sessions, app: str, actor: Any = "t", key: str | None = None) -> Any:
    """A deploy as the API writes it, without the API's retries."""
    return await deploys.deploy(
        sessions,
        app,
        SPEC,
        actor=actor,
        message=None,
        strategy={},
        selector={},
        idempotency_key=key,
        body_hash="h",
    )


def engine_of(sessions: Sessions) -> AsyncEngine:
    return cast(AsyncEngine, sessions.kw["bind"])


def take_number(app: str) -> Any:
    return update(App).where(App.name == app).values(last_release=App.last_release + 1)


async def provoke_retryable(sessions: Sessions) -> DBAPIError:
    """A real serialization failure (PostgreSQL) or stale-snapshot busy (SQLite, WAL): a
    transaction read the app's row, another changed it, then the first tries to write it."""
    await deploy(sessions, "contended")
    engine = engine_of(sessions)
    async with engine.connect() as first:
        if engine.dialect.name == "postgresql":
            await first.execution_options(isolation_level="REPEATABLE READ")
        else:
            await first.exec_driver_sql("BEGIN")  # the driver would begin only at the write
        await first.execute(select(App.last_release).where(App.name == "contended"))
        async with engine.begin() as second:
            await second.execute(take_number("contended"))
        with pytest.raises(DBAPIError) as caught:
            await first.execute(take_number("contended"))
        await first.rollback()
    return caught.value


async def test_a_not_null_violation_surfaces_and_is_not_retryable(sessions: Sessions) -> None:
    with pytest.raises(IntegrityError) as caught:
        await deploy(sessions, "web", actor=None)  # releases.created_by is NOT NULL
    assert not store.retryable(caught.value)


async def test_a_foreign_key_violation_surfaces_and_is_not_retryable(sessions: Sessions) -> None:
    row = {"app_id": 12345, "number": 1, "image": "i", "spec": {}, "created_by": "t"}
    with pytest.raises(IntegrityError) as caught:
        async with sessions.begin() as session:
            await session.execute(insert(Release), row)
    assert not store.retryable(caught.value)


async def test_a_unique_violation_is_not_retryable(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        await session.execute(insert(App), {"name": "twice", "last_release": 0})
    with pytest.raises(IntegrityError) as caught:
        async with sessions.begin() as session:
            await session.execute(insert(App), {"name": "twice", "last_release": 0})
    assert not store.retryable(caught.value)


async def test_a_serialization_failure_or_stale_snapshot_is_retryable(sessions: Sessions) -> None:
    error = await provoke_retryable(sessions)
    assert store.retryable(error), repr(error.orig)
    if engine_of(sessions).dialect.name == "postgresql":
        assert getattr(error.orig, "sqlstate", None) == "40001"
    else:
        assert getattr(error.orig, "sqlite_errorname", None) == "SQLITE_BUSY_SNAPSHOT"


async def test_a_deadlock_or_busy_database_is_retryable(sessions: Sessions) -> None:
    """PostgreSQL: two transactions lock two rows in opposite orders (one is chosen to fail
    after deadlock_timeout, 1 s by default). SQLite: a write while another holds the lock."""
    await deploy(sessions, "left")
    await deploy(sessions, "right")
    engine = engine_of(sessions)
    if engine.dialect.name == "postgresql":
        async with engine.connect() as a, engine.connect() as b:
            await a.execute(take_number("left"))
            await b.execute(take_number("right"))

            async def then(conn: AsyncConnection, app: str) -> None:
                await conn.execute(take_number(app))

            results = await asyncio.gather(
                then(a, "right"), then(b, "left"), return_exceptions=True
            )
            await a.rollback()
            await b.rollback()
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results
        assert isinstance(errors[0], DBAPIError), errors
        assert getattr(errors[0].orig, "sqlstate", None) == "40P01"
        assert store.retryable(errors[0])
        return
    async with engine.connect() as holder, engine.connect() as other:
        await holder.exec_driver_sql("BEGIN IMMEDIATE")
        await other.exec_driver_sql("PRAGMA busy_timeout=0")  # fail now, not in 30 s
        try:
            with pytest.raises(DBAPIError) as caught:
                await other.execute(take_number("right"))
            await other.rollback()
        finally:
            await other.exec_driver_sql("PRAGMA busy_timeout=30000")
            await holder.rollback()
    assert getattr(caught.value.orig, "sqlite_errorname", None) == "SQLITE_BUSY"
    assert store.retryable(caught.value)


async def test_concurrent_first_deploys_of_a_new_app_get_distinct_releases(
    sessions: Sessions,
) -> None:
    """No unique violation to retry: the app's row is made with ON CONFLICT DO NOTHING, and
    numbers are taken under its lock. (No retries here at all; the API retries only what
    `store.retryable` accepts.)"""
    made = await asyncio.gather(*(deploy(sessions, "fresh") for _ in range(20)))
    assert sorted(d.release for d, _ in made) == list(range(1, 21))
    assert len({d.id for d, _ in made}) == 20
    async with sessions() as session:
        numbers = (await session.scalars(select(Release.number).order_by(Release.number))).all()
        apps = (await session.scalars(select(App.last_release).where(App.name == "fresh"))).all()
    assert list(numbers) == list(range(1, 21)) and list(apps) == [20]


async def test_concurrent_deploys_with_one_idempotency_key_make_one_deployment(
    sessions: Sessions,
) -> None:
    """All find none, one writes; the others' deployments break the unique key of app and
    Idempotency-Key, and each answers with the one that was made."""
    await deploy(sessions, "keyed")  # the app exists: the requests race on the key alone
    made = await asyncio.gather(*(deploy(sessions, "keyed", key="k") for _ in range(10)))
    assert len({d.id for d, _ in made}) == 1 and made[0][0].release == 2


async def test_the_api_does_not_retry_a_constraint_violation(
    flotilla: Flotilla, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = deploys.deploy

    async def broken(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real(*args, **{**kwargs, "actor": None})  # NOT NULL violated

    monkeypatch.setattr(deploys, "deploy", broken)
    status, body = await flotilla.api.call("POST", "/v1/apps/web/deployments", SPEC)
    assert (status, calls) == (500, 1), body
    assert body == {"type": "about:blank", "title": "Internal Server Error", "status": 500}


async def test_the_api_retries_a_serialization_failure_or_busy_database(
    flotilla: Flotilla, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = await provoke_retryable(flotilla.server.app[SESSIONS])
    calls = 0
    real = deploys.deploy

    async def once_refused(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise error
        return await real(*args, **kwargs)

    monkeypatch.setattr(deploys, "deploy", once_refused)
    status, body = await flotilla.api.call("POST", "/v1/apps/web/deployments", SPEC)
    assert (status, calls) == (202, 2), body
    assert body["release"] == 1


async def test_concurrent_sets_of_one_secret_each_get_a_version(
    sessions: Sessions, tmp_path: Path
) -> None:
    """Concurrent sets of one secret each get a version of their own, numbered in the order
    they commit, and the last one is live. (Before sets of a name waited for each other,
    one numbered its version from a read made before another committed, that other's prune
    deleted the number, and two sets answered version 1.)"""
    box = SecretBox(tmp_path)
    box.load()
    sets = [secrets.put(sessions, box, "web", "token", f"v{i}", "t") for i in range(6)]
    versions = await asyncio.gather(*sets)
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]
    async with sessions() as session:
        live = await secret_rows.live(session, "web")
        values = await secrets.open_values(session, box, {("web", "token", 6)})
    assert [(s.name, s.version) for s in live] == [("token", 6)]
    assert values[("web", "token", 6)] == f"v{versions.index(6)}"
