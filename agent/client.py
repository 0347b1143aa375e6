"""The agent's connection to the server: dial out, say hello, take pushes, reconnect.

Hosts need no inbound port: the agent dials the server's WebSocket. Every (re)connect starts
with a hello and the full inventory, and the server answers with the full desired state, so
nothing depends on a message that was lost while the link was down.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import aiohttp

from agent.protocol import DesiredState, Hello, Message, ProtocolError, decode, encode
from agent.runner import Agent

log = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"
HEARTBEAT_SECONDS = 5.0  # check for a changed status this often
REFRESH_SECONDS = 60.0  # and send the full status this often even when nothing changed


class Connection:
    """Keeps one WebSocket to the server open for the agent, with backoff and jitter."""

    def __init__(
        self,
        agent: Agent,
        server_url: str,
        token: str,
        docker_version: str,
        *,
        max_backoff: float = 30.0,
    ) -> None:
        self.agent = agent
        self.url = server_url.rstrip("/") + "/v1/agent/connect"
        self.token = token
        self.docker_version = docker_version
        self.max_backoff = max_backoff
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Connect, serve, and reconnect until cancelled."""
        failures = 0
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    await self._serve(session)
                    failures = 0
                except aiohttp.WSServerHandshakeError as exc:
                    failures += 1
                    if exc.status in (401, 403):
                        log.error(
                            "server refused host=%s (HTTP %s): check the host name and token",
                            self.agent.host, exc.status,
                        )  # fmt: skip
                        failures = max(failures, 8)  # cannot succeed soon: retry slowly
                    else:
                        log.warning("connect failed host=%s: HTTP %s", self.agent.host, exc.status)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    failures += 1
                    log.warning("connection to %s lost host=%s: %s", self.url, self.agent.host, exc)
                finally:
                    self.agent.attach(None)
                    self.connected.clear()
                delay = min(self.max_backoff, 0.25 * 2**failures) * random.uniform(0.5, 1.0)
                await asyncio.sleep(delay)

    async def _serve(self, session: aiohttp.ClientSession) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        # the server pings every 20 s; our own pings only need to notice a dead server
        async with session.ws_connect(self.url, headers=headers, heartbeat=60.0, compress=0) as ws:

            async def send(message: Message) -> None:
                await ws.send_str(encode(message))

            await send(Hello(self.agent.host, AGENT_VERSION, self.docker_version))
            self.agent.attach(send)
            self.connected.set()
            log.info("connected host=%s server=%s", self.agent.host, self.url)
            await self.agent.report(force=True)
            beat = asyncio.create_task(self._heartbeat())
            try:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    try:
                        message = decode(msg.data)
                    except ProtocolError as exc:
                        log.warning("bad message from server host=%s: %s", self.agent.host, exc)
                        continue
                    if isinstance(message, DesiredState):
                        self.agent.accept(message)
            finally:
                beat.cancel()
        log.warning("server closed the connection host=%s", self.agent.host)

    async def _heartbeat(self) -> None:
        """Send status when it changed, and in full now and then; liveness itself is the
        WebSocket's ping/pong, so an idle fleet costs the server almost nothing."""
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            full = time.monotonic() - last_full >= REFRESH_SECONDS
            if full:
                last_full = time.monotonic()
            await self.agent.report(force=full)
