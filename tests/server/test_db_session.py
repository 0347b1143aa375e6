"""The engine's pool: a connection that died while idle is replaced, not handed out."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from server.db import session as db_session
from tests.harness import require_env


async def test_a_connection_killed_while_idle_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = require_env("FLOTILLA_TEST_POSTGRES_URL", "a PostgreSQL server")
    monkeypatch.setattr(db_session, "IDLE_PING_SECONDS", 0.0)  # ping at every checkout
    engine = db_session.create_engine(url)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        admin = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        async with engine.connect() as conn:  # the pooled one is dead: the ping replaces it
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
    finally:
        await engine.dispose()
