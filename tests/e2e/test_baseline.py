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


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the agent's part
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


async def test_restricted_read_only_as_a_user(
    flotilla_sqlite: Any, images: Images, engine: Engine, docker_url: str
) -> None:
    f = flotilla_sqlite
    host, token = await f.add_host()
    spec = {
        "image": images.v1,
        "command": ["/bin/sh", "-c", "exec sleep 3600"],
        "user": "65534:65534",
        "read_only": True,
        "security_profile": "restricted",
    }
    async with agent(f.url, host, token, docker_url):
        d = await f.api.deploy("tight", spec)
        assert (await f.api.wait(d["id"]))["status"] == "succeeded"
        (container,) = engine.containers(host, "tight", all=False)
        config = container.attrs["HostConfig"]
        assert config["CapDrop"] == ["ALL"] and config["CapAdd"] == ["NET_BIND_SERVICE"]
        assert config["ReadonlyRootfs"] is True
        assert "no-new-privileges:true" in config["SecurityOpt"]
        assert container.attrs["Config"]["User"] == "65534:65534"
        code, out = container.exec_run(["/bin/sh", "-c", "id -u"])
        assert (code, out.decode().strip()) == (0, "65534")
        code, _ = container.exec_run(["/bin/sh", "-c", "echo x > /written"])
        assert code != 0  # read-only root file system


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"security_profile": "restricted"}, "body"),
        ({"security_profile": "restricted", "user": "root"}, "body"),
        ({"security_profile": "restricted", "user": "0:1000"}, "body"),
        ({"security_profile": "privileged"}, "security_profile"),
        ({"user": "a b"}, "user"),
        ({"user": "1000\n"}, "user"),
        ({"read_only": "yes"}, "read_only"),
    ],
)
async def test_bad_security_fields_are_refused(
    flotilla_sqlite: Any, extra: dict[str, Any], field: str
) -> None:
    status, body = await flotilla_sqlite.api.call(
        "POST", "/v1/apps/web/deployments", {"image": "web:v1", **extra}
    )
    assert status == 422, body
    assert body["errors"][0]["field"] == field
    if field == "body":
        assert "user" in body["errors"][0]["message"]
    assert (await flotilla_sqlite.api.call("GET", "/v1/apps/web"))[0] == 404


async def test_registry_allow_list(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'flotilla.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(
        data_dir=tmp_path, database_url=url, allowed_registries=("registry.example:5000",)
    )
    server = TestServer(create_app(settings.validate()), host="127.0.0.1")
    await server.start_server()
    api = Api(f"http://127.0.0.1:{server.port}", (tmp_path / "admin.token").read_text().strip())
    try:
        for image, registry in (
            ("web:v1", "docker.io"),
            ("library/web:v1", "docker.io"),
            ("other.example/web:v1", "other.example"),
            ("localhost:5000/web:v1", "localhost:5000"),
        ):
            status, body = await api.call("POST", "/v1/apps/web/deployments", {"image": image})
            assert status == 403, body
            assert body["code"] == "registry_not_allowed"
            assert body["errors"][0]["field"] == "image"
            assert f"images from {registry} are not allowed" in body["detail"]
        assert (await api.call("GET", "/v1/apps/web"))[0] == 404
        await api.deploy("web", {"image": "registry.example:5000/team/web:v1"})
    finally:
        await api.close()
        await server.close()


def test_bad_allow_list_stops_the_server(tmp_path: Path) -> None:
    args = ["server", "--data-dir", str(tmp_path), "--listen", f"127.0.0.1:{free_port()}"]
    done = subprocess.run(
        [sys.executable, "-m", "server.cli.main", *args, "--allowed-registries", "a b,c"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--allowed-registries" in done.stderr, done


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the agent's part
async def test_what_an_admin_allowed_reaches_the_container(
    flotilla: Any, images: Images, engine: Engine, docker_url: str, tmp_path: Path
) -> None:
    """Issue 18 item 5: a rule an app's policy allows is honoured by the agent, as asked."""
    host, token = await flotilla.add_host()
    shared = tmp_path / "shared"
    shared.mkdir()
    status, _ = await flotilla.api.call(
        "PUT", "/v1/apps/tools/policy", {"allow": ["capabilities", "host_paths"]}
    )
    assert status == 200
    spec = {
        "image": images.v1,
        "cap_add": ["NET_ADMIN"],
        "mounts": [{"source": str(shared), "target": "/shared", "read_only": True}],
    }
    async with agent(flotilla.url, host, token, docker_url):
        d = await flotilla.api.deploy("tools", spec)
        assert (await flotilla.api.wait(d["id"]))["status"] == "succeeded"
        config = await asyncio.to_thread(inspect, engine, host, "tools")
        assert config["CapAdd"] == ["NET_ADMIN"] and config["CapDrop"] == ["NET_RAW"]
        assert f"{shared}:/shared:ro" in config["Binds"]
        assert "no-new-privileges:true" in config["SecurityOpt"] and not config["Privileged"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the agent's part
async def test_a_named_volume_outlives_deploys_and_rollbacks(
    flotilla: Any, images: Images, engine: Engine, docker_url: str
) -> None:
    """Issue 18 item 4: each release appends to a file in the app's named volume (created by
    the agent, labelled with the app); a deploy and a rollback find what came before. A tmpfs
    mount is there too, empty each time."""
    host, token = await flotilla.add_host()
    app = unique("vol")  # the suite's runs share one Engine, and volumes outlive them

    def spec(image: str, line: str) -> dict[str, Any]:
        run = f"echo {line} >> /data/log; ls /scratch; httpd -f -p 80 -h /www"
        return {
            "image": image,
            "command": ["/bin/sh", "-c", run],
            "volumes": [
                {"source": "data", "target": "/data"},
                {"type": "tmpfs", "target": "/scratch", "size": "16m"},
            ],
        }

    def log_of() -> str:
        (container,) = engine.containers(host, app, all=False)
        return container.exec_run(["cat", "/data/log"]).output.decode()

    async with agent(flotilla.url, host, token, docker_url):
        for image, line in ((images.v1, "one"), (images.v2, "two")):
            d = await flotilla.api.deploy(app, spec(image, line))
            assert (await flotilla.api.wait(d["id"]))["status"] == "succeeded"
        assert (await asyncio.to_thread(log_of)).split() == ["one", "two"]
        status, body = await flotilla.api.call("POST", f"/v1/apps/{app}/rollback", {})
        assert status == 202, body
        assert (await flotilla.api.wait(body["id"]))["status"] == "succeeded"
        # the retained container of release 1 started again: it appended "one" once more
        assert (await asyncio.to_thread(log_of)).split() == ["one", "two", "one"]
        volume = await asyncio.to_thread(engine.client.volumes.get, f"flotilla-{app}-data")
        assert volume.attrs["Labels"]["flotilla.app"] == app
        config = await asyncio.to_thread(inspect, engine, host, app)
        assert config["Tmpfs"] == {"/scratch": "size=16777216"}
    await asyncio.to_thread(engine.remove_host_containers, host)
    await asyncio.to_thread(engine.client.api.remove_volume, f"flotilla-{app}-data", True)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the agent's part
async def test_two_apps_on_one_network_reach_each_other_by_name(
    flotilla: Any, images: Images, engine: Engine, docker_url: str
) -> None:
    """Issue 18 item 4: a user-defined network the agent makes; each app's name is its DNS
    alias there."""
    host, token = await flotilla.add_host()
    net = unique("net")
    api_app, web_app = unique("api"), unique("web")
    async with agent(flotilla.url, host, token, docker_url):
        for app, image in ((api_app, images.v1), (web_app, images.v2)):
            d = await flotilla.api.deploy(app, {"image": image, "networks": [net]})
            assert (await flotilla.api.wait(d["id"]))["status"] == "succeeded"

        def fetch(src: str, dst: str) -> str:
            (container,) = engine.containers(host, src, all=False)
            got = container.exec_run(["wget", "-q", "-O", "-", f"http://{dst}/"])
            return str(got.output.decode().strip())

        assert await asyncio.to_thread(fetch, web_app, api_app) == "v1"
        assert await asyncio.to_thread(fetch, api_app, web_app) == "v2"
    await asyncio.to_thread(engine.remove_host_containers, host)
    await asyncio.to_thread(engine.client.api.remove_network, f"flotilla-{net}")
