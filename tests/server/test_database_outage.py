"""While PostgreSQL does not answer, API calls get 503 problem+json (database_unavailable,
Retry-After), logged once per outage (and once by each background loop that meets it),
never a 500 with a traceback; once it is back, they
work again. The outage is made on the test's own database: it stops accepting connections
and its sessions are ended (the shared test server keeps running)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import _drop_postgres_database, _postgres_database, start_server
from tests.harness import Api, require_env


@asynccontextmanager
async def outage(name: str) -> AsyncIterator[None]:
    """The database `name` refuses connections and loses its sessions, until the block ends."""
    base = require_env("FLOTILLA_TEST_POSTGRES_URL", "a PostgreSQL server")
    admin = await asyncpg.connect(base.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_a_database_outage_answers_503_and_heals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, name = await _postgres_database()
    server, _ = await start_server(url, tmp_path)
    api = Api(f"http://127.0.0.1:{server.port}", (tmp_path / "admin.token").read_text().strip())
    try:
        assert (await api.call("GET", "/v1/apps"))[0] == 200
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            async with outage(name):
                for path in ("/v1/apps", "/v1/hosts", "/v1/deployments", "/v1/events") * 3:
                    async with api.session.get(
                        api.base + path, headers={"Authorization": f"Bearer {api.token}"}
                    ) as response:
                        body = await response.json()
                        assert response.status == 503, (path, body)
                        assert body["code"] == "database_unavailable"
                        assert int(response.headers["Retry-After"]) >= 1
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
        said = [r.getMessage() for r in caplog.records if "database" in r.getMessage().lower()]
        by_api = [m for m in said if m.startswith("the database does not answer; API calls")]
        assert len(by_api) == 1, said  # the API: once per outage
        # each background loop that met the outage (the controller's pass, the audit
        # writer, ...): one line, naming itself (server/loops.log_failure)
        loops = [m.partition(" failed: ")[0] for m in said if m not in by_api]
        assert len(loops) == len(set(loops)), said
        assert all(" failed: the database does not answer" in m for m in said if m not in by_api)
        for _ in range(50):
            if (await api.call("GET", "/v1/apps"))[0] == 200:
                break
        assert (await api.call("GET", "/v1/apps"))[0] == 200
    finally:
        await api.close()
        await server.close()
        await _drop_postgres_database(name)
