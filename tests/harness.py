"""Test harness: a real server (in process or as a subprocess), real agents, a real engine.

Everything a test starts is stopped by its own handle: in-process tasks are cancelled,
subprocesses are killed by pid, containers are removed by their `flotilla.host` label.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import docker

from agent.main import AgentSettings, running_agent
from agent.protocol import LABEL_HOST

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def require_env(name: str, what: str) -> str:
    """A service the suite needs; its absence fails the run (never a silent skip)."""
    value = os.environ.get(name)
    if not value:
        import pytest

        pytest.fail(f"{what} is required: set {name} (make test starts one)", pytrace=False)
    return value


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float = 30, interval: float = 0.2
) -> T:
    """Poll `check` until it returns something truthy; fail with the last value at timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")
        await asyncio.sleep(interval)


async def settle(done: Callable[[], bool], turns: int = 200) -> bool:
    """Let the event loop run until `done()` or `turns` iterations passed (no clock)."""
    for _ in range(turns):
        if done():
            return True
        await asyncio.sleep(0)
    return done()


@contextlib.asynccontextmanager
async def running(loop: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run a server loop for the test's body; cancel it, and wait until it has ended."""
    task = asyncio.create_task(loop)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def fetch_text(port: int, path: str = "/") -> str | None:
    """GET a container's published port on 127.0.0.1; None if it does not answer."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=2)
            ) as resp,
        ):
            if resp.status != 200:
                return None
            return (await resp.text()).strip()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


def build_image(tag: str, *flags: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh"), tag, "--no-check", *flags],
        check=True,
        capture_output=True,
    )


class Api:
    """A small REST client for tests: every call returns (status, json body)."""

    def __init__(self, base: str, token: str, tls: ssl.SSLContext | None = None) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.tls: ssl.SSLContext | bool = tls if tls is not None else True
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> tuple[int, Any]:
        hdrs = {"Authorization": f"Bearer {token if token is not None else self.token}"}
        if token == "":
            hdrs = {}
        hdrs.update(headers or {})
        async with self.session.request(
            method, self.base + path, json=json, data=data, headers=hdrs, ssl=self.tls
        ) as resp:
            text = await resp.text()
            try:
                body = __import__("json").loads(text) if text else None
            except ValueError:
                body = text
            return resp.status, body

    async def deploy(self, app: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        status, answer = await self.call("POST", f"/v1/apps/{app}/deployments", body, **kw)
        assert status == 202, (status, answer)
        return dict(answer)

    async def deployment(self, deployment_id: int) -> dict[str, Any]:
        status, answer = await self.call("GET", f"/v1/deployments/{deployment_id}")
        assert status == 200, (status, answer)
        return dict(answer)

    async def wait(self, deployment_id: int, timeout: float = 60) -> dict[str, Any]:
        """Wait until the deployment ends; return it."""
        terminal = {"succeeded", "failed", "rolled_back", "cancelled", "superseded"}

        async def done() -> dict[str, Any] | None:
            d = await self.deployment(deployment_id)
            return d if d["status"] in terminal else None

        return await eventually(done, timeout)

    async def app(self, app: str) -> dict[str, Any]:
        status, answer = await self.call("GET", f"/v1/apps/{app}")
        assert status == 200, (status, answer)
        return dict(answer)


def published_port(app_body: dict[str, Any], host: str, release: int | None = None) -> int | None:
    """The host port of the first running instance of `app` on `host` (of `release`)."""
    for h in app_body["hosts"]:
        if h["name"] != host:
            continue
        for inst in h["instances"]:
            if inst["state"] != "running" or (release is not None and inst["release"] != release):
                continue
            for p in inst["ports"]:
                return int(p["host_port"])
    return None


class Engine:
    """The test Docker Engine, reached through DOCKER_HOST."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = docker.DockerClient(base_url=url, timeout=60)

    def containers(self, host: str, app: str | None = None, all: bool = True) -> list[Any]:
        labels = [f"{LABEL_HOST}={host}"] + ([f"flotilla.app={app}"] if app else [])
        return list(self.client.containers.list(all=all, filters={"label": labels}))

    def remove_host_containers(self, host: str) -> None:
        for c in self.containers(host):
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True)


@contextlib.asynccontextmanager
async def agent(server: str, name: str, token: str, docker_url: str) -> AsyncIterator[Any]:
    """Run an agent in this process until the block ends."""
    settings = AgentSettings(
        server=server, name=name, token=token, docker_host=docker_url, metrics_listen=None,
        poll_interval=2.0, prune_images=False,
    )  # fmt: skip
    async with running_agent(settings) as running:
        yield running


class Process:
    """A `flotilla ...` subprocess, stopped by its pid."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._file = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli.main", *args],
            env={**os.environ, **env},
            stdout=self._file,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def kill(self) -> None:
        """SIGKILL: the crash we test recovery from."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._file.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._file.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass(frozen=True)
class Ran:
    """What one `flotilla` client command did."""

    code: int
    out: str
    err: str


async def start_cli(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """`flotilla ARGS` as a subprocess, without the FLOTILLA_* settings of the test's
    environment (a server under test may run in the caller's event loop meanwhile), with
    `env` added."""
    given = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}
    env["FLOTILLA_TOKEN"] = "no-token-given"  # a --token of the command overrides it
    env.update(given)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli.main", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish(proc: asyncio.subprocess.Process, timeout: float = 120) -> Ran:
    """Wait for a command to end; it never prints a traceback."""
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    ran = Ran(proc.returncode or 0, out.decode(), err.decode())
    assert "Traceback" not in ran.out + ran.err, ran
    return ran
