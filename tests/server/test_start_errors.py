"""A database the server cannot start on gives one line saying what is wrong and what to do,
and exit code 1, never a traceback: a corrupt file, one from a newer flotilla, an unreachable
PostgreSQL. So does an address already in use: `server` and `dev` on their --listen, an
agent on its --metrics-listen (or FLOTILLA_METRICS_LISTEN). And after a restart, hosts show
disconnected until their agents come back."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from server.db import migrate, store
from server.db.models import Host
from server.keys import SESSIONS
from tests.conftest import start_server
from tests.harness import Api


def flotilla(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def taken_port() -> Iterator[str]:
    """An address on 127.0.0.1 that something (this test) listens on, until the block ends."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield f"127.0.0.1:{s.getsockname()[1]}"


def one_line(result: subprocess.CompletedProcess[str], prefix: str = "flotilla: ") -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith(prefix)]
    assert len(said) == 1, result.stderr  # the rest is the usual INFO log of a start
    assert result.stderr.strip().endswith(said[0])
    return said[0]


def test_a_corrupt_sqlite_file(tmp_path: Path) -> None:
    (tmp_path / "flotilla.db").write_bytes(b"this is not a database" * 100)
    line = one_line(
        flotilla("server", "--data-dir", str(tmp_path), "--listen", f"127.0.0.1:{closed_port()}")
    )
    assert "not a SQLite database or is corrupt" in line and "backup" in line


def test_a_database_from_a_newer_flotilla(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'flotilla.db'}"
    migrate.upgrade(url)
    with sqlite3.connect(tmp_path / "flotilla.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    line = one_line(flotilla("db", "upgrade", "--data-dir", str(tmp_path)))
    assert "newer than this flotilla" in line


def test_an_unreachable_postgresql() -> None:
    url = f"postgresql+asyncpg://flotilla:secret@127.0.0.1:{closed_port()}/flotilla"
    line = one_line(flotilla("db", "upgrade", "--database-url", url))
    assert "cannot reach the database" in line and "secret" not in line


def test_server_and_dev_on_an_address_in_use(tmp_path: Path) -> None:
    with taken_port() as address:
        for command in ("server", "dev"):
            data = tmp_path / command
            result = flotilla(command, "--data-dir", str(data), "--listen", address)
            line = one_line(result)
            assert "server on" not in result.stderr and "serving on" not in result.stderr
            assert f"cannot listen on {address}: address already in use" in line, line
            assert "--listen" in line and "FLOTILLA_LISTEN" in line, line
        # by the env var too, the way a unit file sets it
        line = one_line(
            flotilla(
                "server", "--data-dir", str(tmp_path / "env"), env={"FLOTILLA_LISTEN": address}
            )
        )
        assert f"cannot listen on {address}: address already in use" in line, line


def test_an_agent_whose_metrics_address_is_in_use() -> None:
    agent = ("agent", "--server", f"http://127.0.0.1:{closed_port()}", "--name", "web-1")
    with taken_port() as address:
        for how in (("--metrics-listen", address), ()):
            env = {"FLOTILLA_HOST_TOKEN": "flt_x", "FLOTILLA_METRICS_LISTEN": address}
            line = one_line(flotilla(*agent, *how, env=env), prefix="flotilla agent: ")
            assert f"cannot serve /metrics on {address}: address already in use" in line, line
            assert "--metrics-listen" in line and "FLOTILLA_METRICS_LISTEN" in line, line


def test_an_agent_with_a_bad_metrics_address_is_a_usage_error() -> None:
    agent = ("agent", "--server", f"http://127.0.0.1:{closed_port()}", "--name", "web-1")
    for bad in ("abc", "127.0.0.1:abc", "127.0.0.1:99999"):
        for how, env in ((("--metrics-listen", bad), {}), ((), {"FLOTILLA_METRICS_LISTEN": bad})):
            result = flotilla(*agent, *how, env={"FLOTILLA_HOST_TOKEN": "flt_x", **env})
            assert result.returncode == 2, result
            assert "Traceback" not in result.stderr, result.stderr
            assert f"--metrics-listen: {bad!r}: expected HOST:PORT" in result.stderr


async def test_hosts_are_disconnected_after_a_restart(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'flotilla.db'}"
    server, _ = await start_server(url, tmp_path)
    async with server.app[SESSIONS].begin() as session:
        await store.add_host(session, "web-1", {})
        host = (await session.execute(Host.__table__.select())).first()
        assert host is not None
        await session.execute(
            Host.__table__.update().values(connected=True, last_seen=store.now())
        )  # as a crash would leave it
    await server.close()
    server, _ = await start_server(url, tmp_path)
    api = Api(f"http://127.0.0.1:{server.port}", (tmp_path / "admin.token").read_text().strip())
    try:
        status, body = await api.call("GET", "/v1/hosts")
        assert status == 200
        assert [h["status"] for h in body["hosts"]] == ["disconnected"]
    finally:
        await api.close()
        await server.close()
