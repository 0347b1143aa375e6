"""Shared fixtures: the real Docker Engine, real databases, a real server and agents."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from server.app import create_app
from server.config import Settings
from server.db import migrate, store
from server.db.session import Sessions, create_engine, create_sessions
from server.keys import SESSIONS
from tests.harness import Api, Engine, build_image, require_env, unique

IMAGE_REPO = "flotilla-test/web"

# A suite started in the background by a shell (`make test &`, nohup) inherits SIGINT ignored,
# and so would every command it starts: the tests of Ctrl-C would wait for nothing. A handler
# here makes the commands start with SIGINT's default, as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass(frozen=True)
class Images:
    v1: str
    v2: str
    v3: str
    crash: str
    nohealth: str


def _sqlite_workers() -> set[threading.Thread]:
    """aiosqlite's connection threads (one per connection, named after its function)."""
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


@pytest.fixture(autouse=True)
async def _sqlite_workers_finish() -> AsyncIterator[None]:
    """A SQLite connection that SQLAlchemy terminated (its task was cancelled as a test
    server stopped) closes on its own thread a moment later and then answers the test's
    event loop: if that loop is closed by then, the thread fails ("Event loop is closed")
    and the next test errors. So a test's loop stays open until the threads its test
    started have ended, 0.25 s at most: such a close takes milliseconds, and a connection
    that was dropped without a close keeps its thread idle until it is collected."""
    before = _sqlite_workers()
    yield
    deadline = time.monotonic() + 0.25
    while any(t.is_alive() for t in _sqlite_workers() - before):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)


@pytest.fixture(scope="session")
def docker_url() -> str:
    return require_env("DOCKER_HOST", "a Docker Engine")


@pytest.fixture(scope="session")
def engine(docker_url: str) -> Iterator[Engine]:
    e = Engine(docker_url)
    try:
        e.client.ping()
    except Exception as exc:
        pytest.fail(f"the Docker Engine at {docker_url} does not answer: {exc}", pytrace=False)
    yield e
    e.client.close()


@pytest.fixture(scope="session")
def images(engine: Engine) -> Images:
    """Test images made locally (no registry is reachable): busybox httpd serving a text."""
    tags = Images(
        v1=f"{IMAGE_REPO}:v1",
        v2=f"{IMAGE_REPO}:v2",
        v3=f"{IMAGE_REPO}:v3",
        crash=f"{IMAGE_REPO}:crash",
        nohealth=f"{IMAGE_REPO}:nohealth",
    )
    build_image(tags.v1, "--text", "v1")
    build_image(tags.v2, "--text", "v2")
    build_image(tags.v3, "--text", "v3")
    build_image(tags.crash, "--crash")
    build_image(tags.nohealth, "--text", "nohealth", "--no-health")
    return tags


async def _postgres_database() -> tuple[str, str]:
    base = require_env("FLOTILLA_TEST_POSTGRES_URL", "a PostgreSQL server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(base.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return base.rsplit("/", 1)[0] + f"/{name}", name


async def _drop_postgres_database(name: str) -> None:
    base = require_env("FLOTILLA_TEST_POSTGRES_URL", "a PostgreSQL server")
    conn = await asyncpg.connect(base.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each kind: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'flotilla.db'}"
        return
    url, name = await _postgres_database()
    yield url
    await _drop_postgres_database(name)


_SQLITE_PREFIX = "sqlite+aiosqlite:///"
_sqlite_template: list[Path] = []  # a SQLite file migrated once per run


def _migrate(url: str) -> None:
    """Give a database the newest schema; a new SQLite file gets a copy of one migrated once
    per run (Alembic's upgrade took 0.1 s a test; tests/migrations runs the migrations)."""
    path = Path(url.removeprefix(_SQLITE_PREFIX))
    if not url.startswith(_SQLITE_PREFIX) or path.exists():
        migrate.upgrade(url)
        return
    if not _sqlite_template:
        template = Path(tempfile.mkdtemp(prefix="flotilla-template-")) / "flotilla.db"
        migrate.upgrade(_SQLITE_PREFIX + str(template))  # its engine is disposed: no WAL left
        _sqlite_template.append(template)
    shutil.copyfile(_sqlite_template[0], path)


async def migrated(url: str) -> None:
    """Bring a test's empty database to the newest schema."""
    await asyncio.to_thread(_migrate, url)


@pytest.fixture(scope="session", autouse=True)
def _drop_sqlite_template() -> Iterator[None]:
    yield
    for template in _sqlite_template:
        shutil.rmtree(template.parent, ignore_errors=True)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[Sessions]:
    """Sessions on a migrated, empty database of each kind (no server)."""
    await migrated(database_url)
    engine = create_engine(database_url)
    try:
        yield create_sessions(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'flotilla.db'}"


@dataclass
class Flotilla:
    """A running server under test, its admin API client and a way to add hosts."""

    server: TestServer
    api: Api
    settings: Settings
    url: str
    hosts: list[str]
    hosts_prefix: str = ""

    async def add_host(self, name: str | None = None, **labels: str) -> tuple[str, str]:
        name = name or unique("h")
        async with self.server.app[SESSIONS].begin() as session:
            token = await store.add_host(session, name, labels)
        self.hosts.append(name)
        return name, token


async def start_server(url: str, data_dir: Path, **options: Any) -> tuple[TestServer, Settings]:
    """A migrated database and a server on it (Settings as the tests' default, and `options`)."""
    await migrated(url)
    settings = Settings(data_dir=data_dir, database_url=url, controller_interval=0.5)
    settings = dataclasses.replace(settings, **options)
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    return server, settings


@pytest.fixture
async def flotilla(database_url: str, tmp_path: Path, engine: Engine) -> AsyncIterator[Flotilla]:
    """A server on each database kind; containers of its hosts are removed at the end."""
    async for f in _flotilla(database_url, tmp_path, engine):
        yield f


@pytest.fixture
async def flotilla_sqlite(
    sqlite_url: str, tmp_path: Path, engine: Engine
) -> AsyncIterator[Flotilla]:
    async for f in _flotilla(sqlite_url, tmp_path, engine):
        yield f


async def _flotilla(
    url: str, tmp_path: Path, engine: Engine, **options: Any
) -> AsyncIterator[Flotilla]:
    server, settings = await start_server(url, tmp_path, **options)
    token = (tmp_path / "admin.token").read_text().strip()
    base = f"http://127.0.0.1:{server.port}"
    api = Api(base, token)
    f = Flotilla(
        server=server, api=api, settings=settings, url=base, hosts=[], hosts_prefix=unique("f")
    )
    try:
        yield f
    finally:
        await api.close()
        await server.close()
        for host in f.hosts:
            await asyncio.to_thread(engine.remove_host_containers, host)


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Each test gets a generous timeout; Docker-backed tests wait on real containers."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(180))
