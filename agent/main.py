"""Wires one agent: Docker driver, reconcile loop, server connection, local /metrics.

Its command line (flags, the run entry, the agent of `flotilla dev`) is agent/cli.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from agent import endpoint
from agent.client import Connection
from agent.docker_driver import DockerDriver
from agent.health import HealthTracker
from agent.pulls import DEFAULT_PULL_TIMEOUT
from agent.runner import Agent
from agent.secret_files import DEFAULT_SECRETS_ROOT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentSettings:
    """One agent's settings, frozen; agent/cli.py builds them from flags, env and defaults."""

    server: str
    name: str
    token: str
    docker_host: str | None = None
    # the local /metrics and /healthz endpoint: none unless given (the command line gives
    # agent/cli.DEFAULT_METRICS_LISTEN unless told "off")
    metrics_listen: str | None = None
    retain: int = 2
    prune_images: bool = True
    poll_interval: float = 5.0
    secrets_dir: str = str(DEFAULT_SECRETS_ROOT)  # secret files, on a tmpfs
    # an https:// server: verifies it (--ca) and presents a client certificate (--cert)
    tls: ssl.SSLContext | None = field(default=None, compare=False)
    pull_timeout: float = DEFAULT_PULL_TIMEOUT  # seconds a pull may take (agent/pulls.py)


@contextlib.asynccontextmanager
async def running_agent(settings: AgentSettings) -> AsyncIterator[Agent]:
    """Start the agent's tasks; on exit cancel them and close what they opened."""
    driver = DockerDriver(
        settings.name, settings.docker_host, secrets_root=Path(settings.secrets_dir)
    )
    try:
        docker_version = await asyncio.to_thread(driver.version)
    except Exception as exc:  # the Engine boots later than the agent: start, and keep trying
        log.warning("Docker Engine unavailable host=%s: %s; retrying", settings.name, exc)
        docker_version = "unavailable"

    async def command_probe(container_id: str, command: tuple[str, ...], limit: float) -> bool:
        probe = asyncio.to_thread(driver.exec_ok, container_id, command)
        try:
            return await asyncio.wait_for(probe, limit)
        except TimeoutError:
            return False

    health = HealthTracker(command_probe=command_probe)
    agent = Agent(
        settings.name,
        driver,
        retain=settings.retain,
        prune_images=settings.prune_images,
        poll_interval=settings.poll_interval,
        health=health,
        pull_timeout=settings.pull_timeout,
    )
    connection = Connection(
        agent, settings.server, settings.token, docker_version, tls=settings.tls
    )
    loop = asyncio.get_running_loop()
    # bound before any task starts: a taken port fails the start with nothing left running
    try:
        local = endpoint.serve(settings.metrics_listen, loop) if settings.metrics_listen else None
    except endpoint.ListenError:
        await asyncio.to_thread(driver.close)
        raise
    stop = threading.Event()
    tasks = [
        asyncio.create_task(agent.run(), name="reconcile"),
        asyncio.create_task(connection.run(), name="connection"),
        asyncio.create_task(_watch_docker(driver, agent, stop), name="docker-events"),
    ]
    log.info("agent started host=%s docker=%s", settings.name, docker_version)
    try:
        yield agent
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        agent.close()
        if local is not None:
            await asyncio.to_thread(local.close)
        await asyncio.to_thread(driver.close)
        log.info("agent stopped host=%s", settings.name)


async def _watch_docker(driver: DockerDriver, agent: Agent, stop: threading.Event) -> None:
    """Wake the reconcile loop on container events, so drift is healed at once."""
    loop = asyncio.get_running_loop()

    def wake() -> None:
        loop.call_soon_threadsafe(agent.wake.set)

    failing = False
    while not stop.is_set():
        try:
            await asyncio.to_thread(driver.watch_events, wake, stop)
            failing = False
        except Exception as exc:  # the engine restarted or the socket broke: watch again
            # once per outage: an Engine that is down fails this every 2 s
            log.log(logging.DEBUG if failing else logging.WARNING,
                    "docker event watch failed host=%s: %s", agent.host, exc)  # fmt: skip
            failing = True
            wake()  # the reconcile loop finds out what it means, and reports it
        await asyncio.sleep(2)
