"""The GET read cache: one build per version under concurrency, busted only by real writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select, update

from server.db import migrate, store
from server.db.models import App
from server.db.session import create_engine, create_sessions
from server.read_cache import ReadCache
from tests.conftest import start_server
from tests.harness import Api


async def test_concurrent_misses_share_one_build_per_version() -> None:
    cache = ReadCache()
    builds = []
    gate = asyncio.Event()

    async def build() -> bytes:
        builds.append(1)
        await gate.wait()
        return f"v{cache.version}".encode()

    first = [asyncio.create_task(cache.fetch("/a", build)) for _ in range(50)]
    await asyncio.sleep(0)
    cache.bump()  # a commit lands while the build runs: later callers must not join it
    later = [asyncio.create_task(cache.fetch("/a", build)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert set(await asyncio.gather(*first)) == {b"v1"}
    assert set(await asyncio.gather(*later)) == {b"v1"}
    assert len(builds) == 2
    assert cache.get("/a") == b"v1"  # only the build at the current version is kept
    assert await cache.fetch("/a", build) == b"v1" and len(builds) == 2


async def test_a_failed_build_reaches_every_waiter_and_is_not_cached() -> None:
    cache = ReadCache()
    calls = 0

    async def build() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise LookupError("gone")

    results = await asyncio.gather(
        *(cache.fetch("/b", build) for _ in range(10)), return_exceptions=True
    )
    assert calls == 1 and all(isinstance(r, LookupError) for r in results)
    assert cache.get("/b") is None


async def test_only_transactions_that_write_bust_the_cache(sqlite_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    engine = create_engine(sqlite_url)
    cache = ReadCache()
    sessions = create_sessions(engine, on_commit=cache.bump)
    try:
        async with sessions.begin() as session:  # read-only, with a row lock
            await session.scalar(select(App).where(App.name == "x").with_for_update())
        assert cache.version == 0
        async with sessions.begin() as session:  # ORM insert
            session.add(App(name="x", last_release=0))
        assert cache.version == 1
        async with sessions.begin() as session:  # Core update as the first statement
            await session.execute(update(App).values(last_release=2))
        assert cache.version == 2
        async with sessions() as session:  # written, then rolled back
            await session.execute(update(App).values(last_release=3))
            await session.rollback()
            await store.count_tokens(session)
            await session.commit()
        assert cache.version == 2
    finally:
        await engine.dispose()


async def test_get_app_sees_every_deploy_it_follows(database_url: str, tmp_path: Path) -> None:
    server, _ = await start_server(database_url, tmp_path)
    api = Api(f"http://127.0.0.1:{server.port}", (tmp_path / "admin.token").read_text().strip())
    try:
        assert (await api.call("GET", "/v1/apps/web"))[0] == 404
        for n in range(1, 4):
            status, _ = await api.call("POST", "/v1/apps/web/deployments", {"image": f"w:{n}"})
            assert status == 202
            answers = await asyncio.gather(*(api.call("GET", "/v1/apps/web") for _ in range(20)))
            assert {a[0] for a in answers} == {200}
            assert {a[1]["spec"]["image"] for a in answers} == {f"w:{n}"}
    finally:
        await api.close()
        await server.close()
