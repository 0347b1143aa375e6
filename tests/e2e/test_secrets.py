"""Secrets reach containers (as environment variables or files), a rollback runs with the
versions its release used, and the value shows up nowhere else: API answers, events,
/metrics, evidence of a crashing app, logs, the database file. On the real Docker Engine."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from server.app import create_app
from server.config import Settings
from server.db import migrate, store
from server.keys import SESSIONS
from server.secret_box import new_key
from tests.conftest import Flotilla, Images
from tests.harness import ROOT, Api, Engine, agent, eventually, unique
from tests.server.test_cli import clean_env

FLOTILLA = [sys.executable, "-m", "server.cli.main"]
CANARY_1 = "canary-one-5d1f0c77e2"
CANARY_2 = "canary-two-a93be4410f"


def running(engine: Engine, host: str, app: str, release: int) -> Any:
    for c in engine.containers(host, app, all=False):
        if c.labels["flotilla.release"] == str(release):
            return c
    return None


def shell(container: Any, command: str) -> str:
    code, out = container.exec_run(["/bin/sh", "-c", command])
    assert code == 0, out
    return str(out.decode()).strip()


async def everything_visible(f: Flotilla, app: str) -> str:
    """Every answer a read token could get about the app, as one text."""
    parts = []
    for path in (
        f"/v1/apps/{app}",
        f"/v1/apps/{app}/releases",
        f"/v1/apps/{app}/secrets",
        f"/v1/deployments?app={app}",
        "/v1/events",
        "/v1/apps",
        "/v1/hosts",
    ):
        status, body = await f.api.call("GET", path)
        assert status == 200, (path, body)
        parts.append(str(body))
    status, metrics = await f.api.call("GET", "/metrics")
    parts.append(str(metrics))
    return "\n".join(parts)


def database_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("flotilla.db*")))


async def set_secret(f: Flotilla, app: str, name: str, value: str) -> int:
    status, body = await f.api.call("PUT", f"/v1/apps/{app}/secrets/{name}", {"value": value})
    assert status == 200, body
    return int(body["version"])


async def test_env_secret_rollback_and_no_leak(
    flotilla_sqlite: Flotilla,
    images: Images,
    engine: Engine,
    docker_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    f = flotilla_sqlite
    host, token = await f.add_host()
    # every event is queued for this webhook: its payloads are in the database file checked
    hook = {"url": "http://127.0.0.1:9/hook", "secret": "w" * 16}
    status, made = await f.api.call("POST", "/v1/webhooks", hook)
    assert status == 201, made
    assert await set_secret(f, "web", "DB_PASSWORD", CANARY_1) == 1
    spec = {
        "image": images.v1,
        "ports": [{"container": 80}],
        "secrets": {"DB_PASSWORD": "DB_PASSWORD", "PASSWORD_TOO": "DB_PASSWORD"},
    }
    async with agent(f.url, host, token, docker_url):
        d1 = await f.api.deploy("web", spec)
        assert (await f.api.wait(d1["id"]))["status"] == "succeeded"
        c1 = running(engine, host, "web", 1)
        assert shell(c1, "echo $DB_PASSWORD $PASSWORD_TOO") == f"{CANARY_1} {CANARY_1}"
        app = await f.api.app("web")
        assert app["spec"]["secrets"] == {
            "DB_PASSWORD": "DB_PASSWORD",
            "PASSWORD_TOO": "DB_PASSWORD",
        }
        assert app["spec"]["secret_versions"] == {"DB_PASSWORD": 1}

        # a new value: release 2 runs with version 2
        assert await set_secret(f, "web", "DB_PASSWORD", CANARY_2) == 2
        d2 = await f.api.deploy("web", spec)
        assert (await f.api.wait(d2["id"]))["status"] == "succeeded"
        assert shell(running(engine, host, "web", 2), "echo $DB_PASSWORD") == CANARY_2

        # the retained container of release 1 is removed by hand: the rollback creates it
        # again, from the desired state, with the value release 1 ran with
        for c in engine.containers(host, "web"):
            if c.labels["flotilla.release"] == "1":
                c.remove(force=True)
        status, rb = await f.api.call("POST", "/v1/apps/web/rollback", {"release": 1})
        assert status == 202, rb
        assert (await f.api.wait(rb["id"]))["status"] == "succeeded"
        c1 = await eventually(lambda: asyncio.to_thread(running, engine, host, "web", 1))
        assert shell(c1, "echo $DB_PASSWORD") == CANARY_1

        # a crashing app that prints its environment: its evidence has the values masked
        crash = {
            "image": images.v1,
            "command": ["/bin/sh", "-c", "echo pw=$DB_PASSWORD; env; exit 3"],
            "secrets": ["DB_PASSWORD"],
            "strategy": {"auto_rollback": False, "healthy_deadline": 20},
        }
        d3 = await f.api.deploy("web", crash)
        failed = await f.api.wait(d3["id"])
        assert failed["status"] == "failed", failed
        evidence = str(failed["hosts"][0]["evidence"])
        assert "pw=****" in evidence, evidence

        path = f"/v1/webhooks/{made['id']}/deliveries"
        status, deliveries = await f.api.call("GET", path)
        assert status == 200 and deliveries["deliveries"], deliveries
        seen = await everything_visible(f, "web") + str(deliveries)
        for value in (CANARY_1, CANARY_2):
            assert value not in seen
            assert value not in caplog.text
            assert value.encode() not in database_bytes(tmp_path)


async def test_file_secrets_on_both_databases(
    flotilla: Flotilla, images: Images, engine: Engine, docker_url: str
) -> None:
    f = flotilla
    host, token = await f.add_host()
    await set_secret(f, "files", "DB_PASSWORD", CANARY_1)
    spec = {
        "image": images.v1,
        "ports": [{"container": 80}],
        "secrets": {"db_password": "DB_PASSWORD"},
        "secrets_as": "files",
        "secrets_dir": "/run/app-secrets",
    }
    async with agent(f.url, host, token, docker_url):
        d = await f.api.deploy("files", spec)
        assert (await f.api.wait(d["id"]))["status"] == "succeeded"
        c = running(engine, host, "files", 1)
        assert shell(c, "cat /run/app-secrets/db_password") == CANARY_1
        assert shell(c, "echo ${DB_PASSWORD:-unset}") == "unset"
        c.reload()
        assert CANARY_1 not in str(c.attrs["Config"]["Env"])
        (mount,) = [m for m in c.attrs["Mounts"] if m["Destination"] == "/run/app-secrets"]
        assert mount["RW"] is False
        # read-only inside the container
        code, _ = c.exec_run(["/bin/sh", "-c", "echo x > /run/app-secrets/db_password"])
        assert code != 0
        # on the host: a folder of the container's own, under a root only its owner enters
        source = Path(mount["Source"])
        assert (source / "db_password").read_text() == CANARY_1
        assert source.parent.stat().st_mode & 0o777 == 0o700
        assert CANARY_1 not in await everything_visible(f, "files")


def rotate(data_dir: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLOTILLA, "secret", "rotate-key", "--data-dir", str(data_dir), "--database-url", url],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_rotate_key_keeps_secrets_readable(
    flotilla_sqlite: Flotilla,
    images: Images,
    engine: Engine,
    docker_url: str,
    tmp_path: Path,
    sqlite_url: str,
) -> None:
    f = flotilla_sqlite
    host, token = await f.add_host()
    await set_secret(f, "rot", "DB_PASSWORD", CANARY_1)
    await set_secret(f, "rot", "OTHER", CANARY_2)
    key_before = (tmp_path / "secret.key").read_text()
    done = await asyncio.to_thread(rotate, tmp_path, sqlite_url)
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 2 secret version(s)" in done.stdout
    assert (tmp_path / "secret.key").read_text() != key_before
    assert not (tmp_path / "secret.key.next").exists()
    assert oct((tmp_path / "secret.key").stat().st_mode & 0o777) == "0o600"
    # the running server opens them with the new key, and sets new ones with it
    await set_secret(f, "rot", "THIRD", "third-value-0c41")
    async with agent(f.url, host, token, docker_url):
        spec = {"image": images.v1, "secrets": ["DB_PASSWORD", "OTHER", "THIRD"]}
        d = await f.api.deploy("rot", spec)
        assert (await f.api.wait(d["id"]))["status"] == "succeeded"
        c = running(engine, host, "rot", 1)
        assert shell(c, "echo $DB_PASSWORD $OTHER $THIRD") == (
            f"{CANARY_1} {CANARY_2} third-value-0c41"
        )
    again = await asyncio.to_thread(rotate, tmp_path, sqlite_url)
    assert again.returncode == 0 and "re-encrypted 3" in again.stdout, again.stderr


async def test_rotate_key_given_in_the_environment(
    tmp_path: Path, images: Images, engine: Engine, docker_url: str
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'flotilla.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    old, new = new_key(), new_key()

    async def serve(key: str) -> tuple[TestServer, Api]:
        settings = Settings(data_dir=tmp_path, database_url=url, secret_key=key)
        server = TestServer(create_app(settings.validate()), host="127.0.0.1")
        await server.start_server()
        token = (tmp_path / "admin.token").read_text().strip()
        return server, Api(f"http://127.0.0.1:{server.port}", token)

    server, api = await serve(old)
    status, _ = await api.call("PUT", "/v1/apps/envkey/secrets/PW", {"value": CANARY_1})
    assert status == 200
    await api.close()
    await server.close()
    assert not (tmp_path / "secret.key").exists()  # the key is the environment's only

    env = {**clean_env(), "FLOTILLA_SECRET_KEY": f"{new},{old}"}
    args = ["secret", "rotate-key", "--data-dir", str(tmp_path), "--database-url", url]
    done = await asyncio.to_thread(
        subprocess.run,
        [*FLOTILLA, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "re-encrypted 1" in done.stdout, done.stderr

    server, api = await serve(new)  # the old key is gone: the new one alone opens it
    host = unique("h")
    try:
        async with server.app[SESSIONS].begin() as session:
            token = await store.add_host(session, host, {})
        async with agent(api.base, host, token, docker_url):
            d = await api.deploy("envkey", {"image": images.v1, "secrets": ["PW"]})
            assert (await api.wait(d["id"]))["status"] == "succeeded"
            assert shell(running(engine, host, "envkey", 1), "echo $PW") == CANARY_1
    finally:
        await api.close()
        await server.close()
        await asyncio.to_thread(engine.remove_host_containers, host)
