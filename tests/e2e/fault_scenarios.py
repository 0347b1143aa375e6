"""The faults of issue 20, each on a fresh live fleet (`faults.Stack`), each followed by
`faults.verify`. Every scenario is a plain coroutine, so the suite (tests/e2e/test_faults.py)
and the soak (bench/soak.py) run the same ones.

A scenario returns its figures; it raises AssertionError when an invariant does not hold.
Whatever it starts (server, agents, a private Docker Engine or PostgreSQL) it stops, by pid
or by the directory of that engine or cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.faults import Figure, Stack, body, verify
from tests.harness import ROOT, free_port

SCRIPTS = ROOT / "scripts"
KILL_POINTS = ("before the first push", "mid-batch", "while answering")
STOPPED_WITHIN = 5.0  # issue 20: SIGTERM answers the waiting clients and exits within 5 s


@dataclass(frozen=True)
class Setting:
    """Where a scenario runs: a scratch directory, the shared engine and images present
    there. A scenario's database is a SQLite file unless it brings its own PostgreSQL."""

    workdir: Path
    docker_url: str
    images: tuple[str, str, str]  # serving "v1", "v2", "v3"


def build_images(docker_url: str, images: tuple[str, ...]) -> None:
    """The test images (serving "v1", "v2", ...) in the engine at `docker_url` (idempotent)."""
    for i, tag in enumerate(images):
        text = f"v{i + 1}"
        subprocess.run(
            [str(SCRIPTS / "build-image.sh"), tag, "--no-check", "--text", text],
            check=True,
            capture_output=True,
            env={**os.environ, "DOCKER_HOST": docker_url},
            timeout=120,
        )


@contextlib.asynccontextmanager
async def fleet(
    s: Setting, docker_url: str | None = None, database_url: str | None = None
) -> AsyncIterator[Stack]:
    """A started stack in a fresh directory of `s.workdir`; closed by pid at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="stack.", dir=s.workdir))
    url = database_url or f"sqlite+aiosqlite:///{workdir / 'flotilla.db'}"
    stack = Stack(workdir, url, docker_url or s.docker_url)
    try:
        await stack.open()
        yield stack
    finally:
        await stack.close()


def _updating(states: list[str]) -> bool:
    return "updating" in states


async def server_kill_9(s: Setting, rounds: int = 2) -> list[Figure]:
    """SIGKILL of the server at three points of a rollout, `rounds` times each: right after
    the 202 (before the first push), while a batch is under way (a host updating after
    another was done), and as the deployment's waiting client is being answered."""
    figures = []
    async with fleet(s) as stack:
        assert stack.server is not None
        await stack.settled("web", body(s.images[0], max_parallel=3))
        n = 0
        for r in range(rounds):
            for point in KILL_POINTS:
                n += 1
                image = s.images[n % 3]
                pushed = ""
                if point == "before the first push":
                    before = stack.pushes()
                    await stack.deploy("web", body(image))
                    stack.server.proc.kill()  # as soon as the 202 is read, no thread hop
                    await asyncio.sleep(0.3)  # what was on its way reaches the agents' logs
                    if stack.pushes() > before:  # rare: the controller was quicker
                        pushed = " (a push got out first)"
                elif point == "mid-batch":
                    d = await stack.deploy("web", body(image, min_healthy_time=1))
                    await stack.when_hosts(d, lambda st: "healthy" in st and "updating" in st)
                else:
                    d = await stack.deploy("web", body(image))
                    # the long poll is answered when the deployment ends: kill right then
                    await stack.call("GET", f"/v1/deployments/{d}?wait=60", within=90)
                    stack.server.proc.kill()
                await stack.kill_server()
                await stack.restart_server()
                name = f"server kill -9 {point} #{r + 1}{pushed}"
                figures.append(await verify(stack, name, time.monotonic(), ["web"]))
    return figures


async def agent_kill(s: Setting) -> list[Figure]:
    """SIGKILL of one agent while every host updates; it is started again a second later."""
    async with fleet(s) as stack:
        await stack.settled("web", body(s.images[0], max_parallel=3))
        d = await stack.deploy("web", body(s.images[1], max_parallel=3, min_healthy_time=1))
        await stack.when_hosts(d, _updating)
        victim = stack.hosts[1]
        await asyncio.to_thread(stack.agents[victim].kill)
        await asyncio.sleep(1)
        stack.start_agent(victim)
        return [await verify(stack, "agent kill -9 and restart", time.monotonic(), ["web"])]


async def agent_freeze(s: Setting, seconds: float = 6) -> list[Figure]:
    """SIGSTOP of one agent while every host updates; SIGCONT `seconds` later."""
    async with fleet(s) as stack:
        await stack.settled("web", body(s.images[0], max_parallel=3))
        d = await stack.deploy("web", body(s.images[1], max_parallel=3, min_healthy_time=1))
        await stack.when_hosts(d, _updating)
        frozen = stack.agents[stack.hosts[1]].proc
        frozen.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            frozen.send_signal(signal.SIGCONT)
        return [await verify(stack, "agent SIGSTOP/SIGCONT", time.monotonic(), ["web"])]


def _script(*args: str) -> str:
    done = subprocess.run([*args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout.strip()


@contextlib.asynccontextmanager
async def private_dir(prefix: str) -> AsyncIterator[Path]:
    """A short directory under /tmp (unix socket paths are short), removed at the end."""
    where = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=prefix, dir="/tmp"))
    await asyncio.to_thread(where.chmod, 0o755)  # PostgreSQL runs as postgres: it traverses it
    try:
        yield where
    finally:
        await asyncio.to_thread(shutil.rmtree, where, True)


async def engine_restart(s: Setting, down: float = 2) -> list[Figure]:
    """The Docker Engine stops mid-deploy and starts again `down` seconds later. It is a
    private engine (scripts/docker-engine.sh, stopped by its directory), never the shared
    one; the images are built into it first (no registry is reachable)."""
    script = str(SCRIPTS / "docker-engine.sh")
    async with private_dir("flt-fe.") as where:
        try:
            url = await asyncio.to_thread(_script, script, "start", str(where))
            await asyncio.to_thread(build_images, url, s.images[:2])
            async with fleet(s, docker_url=url) as stack:
                await stack.settled("web", body(s.images[0], max_parallel=3))
                d = await stack.deploy("web", body(s.images[1], min_healthy_time=1))
                await stack.when_hosts(d, _updating)
                await asyncio.to_thread(_script, script, "stop", str(where))
                await asyncio.sleep(down)
                await asyncio.to_thread(_script, script, "start", str(where))
                return [await verify(stack, "engine stop/start", time.monotonic(), ["web"])]
        finally:
            await asyncio.to_thread(subprocess.run, [script, "stop", str(where)], timeout=120)


async def postgres_restart(s: Setting, down: float = 3) -> list[Figure]:
    """A private PostgreSQL (scripts/postgres.sh) stops mid-deploy and starts again `down`
    seconds later; the server keeps running. Then, on that PostgreSQL, the server is killed
    (-9) mid-batch (the kill at every point runs on SQLite: `server_kill_9`)."""
    script = str(SCRIPTS / "postgres.sh")
    async with private_dir("flt-fp.") as where:
        port = str(free_port())
        try:
            url = await asyncio.to_thread(_script, script, "start", str(where), port)
            async with fleet(s, database_url=url) as stack:
                await stack.settled("web", body(s.images[0], max_parallel=3))
                d = await stack.deploy("web", body(s.images[1], min_healthy_time=1))
                await stack.when_hosts(d, _updating)
                await asyncio.to_thread(_script, script, "stop", str(where))
                await asyncio.sleep(down)
                await asyncio.to_thread(_script, script, "start", str(where), port)
                figures = [await verify(stack, "PostgreSQL restart", time.monotonic(), ["web"])]
                # and the server's crash on PostgreSQL: kill -9 mid-batch
                d = await stack.deploy("web", body(s.images[0], min_healthy_time=1))
                await stack.when_hosts(d, lambda st: "healthy" in st and "updating" in st)
                await stack.kill_server()
                await stack.restart_server()
                name = "server kill -9 mid-batch (PostgreSQL)"
                figures.append(await verify(stack, name, time.monotonic(), ["web"]))
                return figures
        finally:
            await asyncio.to_thread(subprocess.run, [script, "stop", str(where)], timeout=120)


async def sigterm_with_waiting_client(s: Setting) -> list[Figure]:
    """SIGTERM while a client waits on GET /v1/deployments/{id}?wait=: it is answered (the
    deployment's state, or 503 stopping) and the server exits 0, each within 5 s; a new
    server then finishes the rollout."""
    async with fleet(s) as stack:
        await stack.settled("web", body(s.images[0], max_parallel=3))
        d = await stack.deploy("web", body(s.images[1], max_parallel=3, min_healthy_time=3))
        await stack.when_hosts(d, _updating)
        assert stack.api is not None and stack.server is not None
        url = f"{stack.url}/v1/deployments/{d}?wait=60"
        headers = {"Authorization": f"Bearer {stack.api.token}"}
        async with aiohttp.ClientSession() as session:

            async def wait() -> tuple[int, float]:
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    return response.status, time.monotonic()

            waiter = asyncio.create_task(wait())
            await asyncio.sleep(0.5)  # the long poll is in
            assert not waiter.done()
            sent = time.monotonic()
            stack.server.proc.terminate()
            status, answered = await asyncio.wait_for(waiter, 30)
            code = await asyncio.to_thread(stack.server.proc.wait, 30)
            exited = time.monotonic()
            stack.server.stop()  # closes its log
        assert status in (200, 503), status
        assert answered - sent <= STOPPED_WITHIN, f"answered {answered - sent:.1f} s after"
        assert exited - sent <= STOPPED_WITHIN, f"exited {exited - sent:.1f} s after"
        assert code == 0, (code, stack.tail())
        await stack.restart_server()
        note = f"waiter got {status} in {answered - sent:.1f} s, exit 0 in {exited - sent:.1f} s"
        since = time.monotonic()
        return [await verify(stack, "SIGTERM with a waiting client", since, ["web"], note=note)]


async def racing(s: Setting, deploys: int = 8, rollbacks: int = 4) -> list[Figure]:
    """Deploys (of 1 or 2 replicas) and rollbacks of one app sent at once (in a random order,
    a few at a time), while another app is removed; the newest accepted one wins, the
    removed app leaves."""
    async with fleet(s) as stack:
        await stack.settled("web", body(s.images[0], max_parallel=3))
        await stack.settled("gone", body(s.images[0], max_parallel=3))

        def deploy(i: int) -> Callable[[], Awaitable[object]]:
            spec = {**body(s.images[i % 3], max_parallel=2), "replicas": 1 + i % 2}
            return lambda: stack.deploy("web", spec)

        calls: list[Callable[[], Awaitable[object]]] = [deploy(i) for i in range(deploys)]
        calls += [lambda: stack.rollback("web")] * rollbacks
        random.shuffle(calls)

        async def staggered(i: int, call: Callable[[], Awaitable[object]]) -> object:
            await asyncio.sleep(0.3 * (i // 3))
            return await call()

        async def remove() -> None:
            status, answer = await stack.call("DELETE", "/v1/apps/gone")
            assert status == 200, (status, answer)

        await asyncio.gather(remove(), *(staggered(i, c) for i, c in enumerate(calls)))
        return [
            await verify(stack, "racing deploys and rollbacks", time.monotonic(), ["web"], ["gone"])
        ]


Scenario = Callable[[Setting], Coroutine[Any, Any, list[Figure]]]
SCENARIOS: dict[str, Scenario] = {
    "server-kill-9": server_kill_9,
    "agent-kill": agent_kill,
    "agent-freeze": agent_freeze,
    "engine-restart": engine_restart,
    "postgres-restart": postgres_restart,
    "sigterm-waiting": sigterm_with_waiting_client,
    "racing": racing,
}
