"""kill -9 of the agent or the server mid-deploy: nothing duplicated, nothing lost."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Images
from tests.harness import (
    ROOT,
    Api,
    Engine,
    Process,
    eventually,
    fetch_text,
    free_port,
    published_port,
    unique,
)


@dataclass
class Stack:
    data_dir: Path
    database_url: str
    port: int
    host: str
    host_token: str
    docker_url: str
    server: Process | None = None
    agent: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_server(self) -> None:
        args = ["server", "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}"]
        args += ["--database-url", self.database_url]
        self.server = Process(args, {}, self.data_dir / "server.log")

    def start_agent(self) -> None:
        args = ["agent", "--server", self.url, "--name", self.host, "--metrics-listen", "off"]
        env = {"FLOTILLA_HOST_TOKEN": self.host_token, "DOCKER_HOST": self.docker_url}
        self.agent = Process(args, env, self.data_dir / "agent.log")

    def stop(self) -> None:
        for p in (self.agent, self.server):
            if p is not None:
                p.stop()


@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, engine: Engine, docker_url: str
) -> AsyncIterator[Stack]:
    host = unique("crash")
    added = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "server.cli.main", "host", "add", host, "--data-dir", str(tmp_path),
         "--database-url", database_url],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    token = added.stdout.strip().splitlines()[-1]
    s = Stack(tmp_path, database_url, free_port(), host, token, docker_url)
    s.start_server()
    s.start_agent()
    try:
        yield s
    finally:
        s.stop()
        await asyncio.to_thread(engine.remove_host_containers, host)


async def _api(stack: Stack) -> Api:
    token_file = stack.data_dir / "admin.token"
    await eventually(lambda: _exists(token_file), timeout=30)
    api = Api(stack.url, token_file.read_text().strip())
    await _ready(api)
    return api


async def _ready(api: Api) -> None:
    async def ready() -> bool:
        try:
            status, _ = await api.call("GET", "/readyz")
        except OSError:
            return False
        return status == 200

    await eventually(ready, timeout=30)


async def _exists(path: Path) -> bool:
    def check() -> bool:
        return path.exists() and bool(path.read_text().strip())

    return await asyncio.to_thread(check)


async def _settle(api: Api, stack: Stack, engine: Engine, deployment_id: int, text: str) -> None:
    done = await api.wait(deployment_id, timeout=90)
    assert done["status"] == "succeeded", (done, stack.agent.output() if stack.agent else "")
    containers = engine.containers(stack.host, "web", all=False)
    assert len(containers) == 1, [c.name for c in containers]
    port = published_port(await api.app("web"), stack.host, done["release"])
    assert port is not None
    assert await eventually(lambda: fetch_text(port), timeout=20) == text


async def test_agent_killed_mid_deploy(stack: Stack, images: Images, engine: Engine):
    api = await _api(stack)
    try:
        d = await api.deploy("web", {"image": images.v1, "ports": [{"container": 80}]})
        assert stack.agent is not None
        stack.agent.kill()  # before or while it creates the container
        await asyncio.sleep(1)
        assert (await api.deployment(d["id"]))["status"] in ("pending", "running", "succeeded")
        stack.start_agent()
        await _settle(api, stack, engine, d["id"], "v1")
        assert len(engine.containers(stack.host, "web")) == 1
    finally:
        await api.close()


async def test_server_killed_mid_deploy(stack: Stack, images: Images, engine: Engine):
    api = await _api(stack)
    try:
        d1 = await api.deploy("web", {"image": images.v1, "ports": [{"container": 80}]})
        await _settle(api, stack, engine, d1["id"], "v1")
        d2 = await api.deploy("web", {"image": images.v2, "ports": [{"container": 80}]})
        assert stack.server is not None
        stack.server.kill()
        await asyncio.sleep(1)
        stack.start_server()
        await _ready(api)
        await _settle(api, stack, engine, d2["id"], "v2")
        _, releases = await api.call("GET", "/v1/apps/web/releases")
        assert [r["number"] for r in releases["releases"]] == [2, 1]  # nothing lost or doubled
        _, hosts = await api.call("GET", "/v1/hosts")
        assert [h["status"] for h in hosts["hosts"]] == ["connected"]
    finally:
        await api.close()


async def _connected(api: Api) -> bool:
    try:
        _, hosts = await api.call("GET", "/v1/hosts")
    except OSError:
        return False
    return [h["status"] for h in hosts["hosts"]] == ["connected"]


# restarts of the server and its agent: nothing here depends on the database's kind
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_agent_comes_back_quickly_after_every_server_restart(
    stack: Stack, images: Images
):
    """Issue 20: the agent's backoff starts afresh after a working connection, and stays at
    5 s at most in the first minute after a loss; it used to grow with every restart, until
    agents took 15-30 s to return (and rollouts' deadlines ran on meanwhile)."""
    api = await _api(stack)
    try:
        await eventually(lambda: _connected(api), timeout=30)
        for _ in range(3):  # before: the third return took 15-30 s
            assert stack.server is not None
            stack.server.kill()
            await asyncio.sleep(1)
            stack.start_server()
            await _ready(api)
            await asyncio.sleep(6)  # stable: a working connection
            # the server starts with every host disconnected; the agent is back within its
            # short backoff (0.25 s doubling, at most 5 s, jittered), not 15-30 s later
            await eventually(lambda: _connected(api), timeout=8)
    finally:
        await api.close()


# restarts of the server and its agent: nothing here depends on the database's kind
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_server_down_past_the_healthy_deadline_fails_no_release(
    stack: Stack, images: Images, engine: Engine
):
    """Issue 20: a host's healthy_deadline pauses while the server itself is down. The server
    is killed while the host is updating and stays down for longer than the deadline; after
    its restart the rollout succeeds, and no release is marked bad."""
    api = await _api(stack)
    try:
        d1 = await api.deploy("web", {"image": images.v1, "ports": [{"container": 80}]})
        await _settle(api, stack, engine, d1["id"], "v1")
        strategy = {"healthy_deadline": 4, "min_healthy_time": 3}
        body = {"image": images.v2, "ports": [{"container": 80}], "strategy": strategy}
        d2 = await api.deploy("web", body)

        async def updating() -> bool:
            hosts = (await api.deployment(d2["id"])).get("hosts", [])
            return [h["state"] for h in hosts] == ["updating"]

        await eventually(updating, timeout=30)
        assert stack.server is not None
        stack.server.kill()
        await asyncio.sleep(6)  # past the deadline, counted from the assignment
        stack.start_server()
        await _ready(api)
        await _settle(api, stack, engine, d2["id"], "v2")
        _, releases = await api.call("GET", "/v1/apps/web/releases")
        assert all(r.get("outcome") != "bad" for r in releases["releases"]), releases
    finally:
        await api.close()
