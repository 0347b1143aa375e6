"""Every container gets the security baseline: no-new-privileges, no NET_RAW, a pids and a
memory limit (the server's defaults unless the deployment sets them). On the real engine."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from server.app import create_app
from server.config import Settings
from server.db import migrate, store
from server.keys import SESSIONS
from tests.conftest import Images
from tests.harness import ROOT, Api, Engine, agent, free_port, unique
from tests.server.test_cli import clean_env

MIB = 1024 * 1024


def inspect(engine: Engine, host: str, app: str) -> dict[str, Any]:
    (container,) = engine.containers(host, app, all=False)
    return dict(container.attrs["HostConfig"])


async def test_default_container_has_the_baseline(
    flotilla: Any, images: Images, engine: Engine, docker_url: str
) -> None:
    host, token = await flotilla.add_host()
    async with agent(flotilla.url, host, token, docker_url):
        d = await flotilla.api.deploy("base", {"image": images.v1})
        assert (await flotilla.api.wait(d["id"]))["status"] == "succeeded"
        config = await asyncio.to_thread(inspect, engine, host, "base")
        assert "no-new-privileges:true" in config["SecurityOpt"]
        assert config["CapDrop"] == ["NET_RAW"]
        assert not config["CapAdd"]
        assert not config["Privileged"]
        assert config["PidsLimit"] == 4096
        assert config["Memory"] == 300 * MIB
        app = await flotilla.api.app("base")
        assert app["spec"]["resources"] == {"memory": "300m", "pids": 4096}

        spec = {"image": images.v1, "resources": {"memory": "64m", "pids": 100}}
        d = await flotilla.api.deploy("sized", spec)
        assert (await flotilla.api.wait(d["id"]))["status"] == "succeeded"
        config = await asyncio.to_thread(inspect, engine, host, "sized")
        assert (config["Memory"], config["PidsLimit"]) == (64 * MIB, 100)
        assert "no-new-privileges:true" in config["SecurityOpt"]


@pytest.fixture
async def small_defaults(tmp_path: Path, engine: Engine) -> AsyncIterator[tuple[Api, str, Any]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'flotilla.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(
        data_dir=tmp_path, database_url=url, default_memory="96m", default_pids_limit=77
    )
    server = TestServer(create_app(settings.validate()), host="127.0.0.1")
    await server.start_server()
    host = unique("h")
    async with server.app[SESSIONS].begin() as session:
        token = await store.add_host(session, host, {})
    api = Api(f"http://127.0.0.1:{server.port}", (tmp_path / "admin.token").read_text().strip())
    try:
        yield api, host, token
    finally:
        await api.close()
        await server.close()
        await asyncio.to_thread(engine.remove_host_containers, host)


async def test_server_defaults_are_configurable(
    small_defaults: tuple[Api, str, str], images: Images, engine: Engine, docker_url: str
) -> None:
    api, host, token = small_defaults
    async with agent(api.base, host, token, docker_url):
        d = await api.deploy("small", {"image": images.v1})
        assert (await api.wait(d["id"]))["status"] == "succeeded"
        config = await asyncio.to_thread(inspect, engine, host, "small")
        assert (config["Memory"], config["PidsLimit"]) == (96 * MIB, 77)


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--default-memory", "lots", "--default-memory"),
        ("--default-memory", "0m", "--default-memory"),
        ("--default-pids-limit", "0", "--default-pids-limit"),
        ("--default-pids-limit", "many", "--default-pids-limit"),
    ],
)
def test_bad_defaults_stop_the_server(tmp_path: Path, flag: str, value: str, says: str) -> None:
    args = ["server", "--data-dir", str(tmp_path), "--listen", f"127.0.0.1:{free_port()}"]
    done = subprocess.run(
        [sys.executable, "-m", "server.cli.main", *args, flag, value],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert says in done.stderr and "Traceback" not in done.stderr
