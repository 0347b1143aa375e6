"""The agent's connection to the server: dial out, say hello, take pushes, reconnect.

Hosts need no inbound port: the agent dials the server's WebSocket. Every (re)connect starts
with a hello and the full inventory, and the server answers with the full desired state, so
nothing depends on a message that was lost while the link was down.

The client is the `websockets` library, not aiohttp's: the agent then imports no aiohttp at
all, which keeps about 9 MiB out of every agent's RSS (bench/RESULTS.md, agent footprint).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidMessage, InvalidStatus, WebSocketException

from agent.codec import decode, encode
from agent.log_protocol import LogsOpen, LogsStop
from agent.logs import AgentLogs, LogReader
from agent.protocol import DesiredState, Hello, Message, ProtocolError
from agent.runner import Agent

log = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # the server's limit for one message, too
# The agent's pings notice a server that vanished without closing the socket: within
# PING_SECONDS + PONG_SECONDS (25 s). They are sent every interval whatever else arrives: 667
# a second at 10,000 agents. Each one also counts as traffic for the server's own heartbeat
# (aiohttp pings only a socket that was silent), so the server sends almost none of its own.
PING_SECONDS = 15.0
PONG_SECONDS = 10.0
# Reconnecting: a connection that stayed up this long was a working one, and its loss starts
# the backoff afresh. For the first minute after a loss the delay stays short (a server
# restart is back within seconds, and a rollout's hosts should be too); later it grows to
# `max_backoff`. Always jittered, so a restarted server is not met by every agent at once.
STABLE_SECONDS = 5.0
SHORT_BACKOFF_SECONDS = 60.0
SHORT_BACKOFF_MAX = 5.0
# Every reconcile pass (at least every poll interval) reports a changed status at its end; a
# pass that fails reports within 0.1 s. This often the full status goes out even when nothing
# changed, a net under a lost message: 33 statuses a second from 10,000 agents (Nomad's
# heartbeats: 50 a second per cluster).
REFRESH_SECONDS = 300.0


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
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.agent = agent
        self.tls = tls  # a wss:// server: verifies it, and may present a client certificate
        self.url = websocket_url(server_url) + "/v1/agent/connect"
        self.token = token
        self.docker_version = docker_version
        self.max_backoff = max_backoff
        self.connected = asyncio.Event()
        self._up_since: float | None = None  # monotonic, while connected

    async def run(self) -> None:
        """Connect, serve, and reconnect until cancelled."""
        failures = 0
        refused = False
        lost_at = time.monotonic()  # the agent starts without a connection
        while True:
            self._up_since = None
            try:
                await self._serve()
            except InvalidStatus as exc:
                status = exc.response.status_code
                refused = status in (401, 403)
                if refused:
                    log.error(
                        "server refused host=%s (HTTP %s): %s",
                        self.agent.host, status, _refusal(exc.response.body),
                    )  # fmt: skip
                else:
                    log.warning("connect failed host=%s: HTTP %s", self.agent.host, status)
            except (WebSocketException, OSError, TimeoutError) as exc:
                tls = _tls_failure(exc)
                if tls is not None and self._up_since is None:  # retrying soon cannot fix it
                    refused = True
                    log.error(
                        "TLS with %s failed host=%s: %s (check --ca, --cert and --key)",
                        self.url, self.agent.host, tls.reason or tls,
                    )  # fmt: skip
                else:
                    log.warning(
                        "connection to %s lost host=%s: %s%s",
                        self.url, self.agent.host, exc, self._hint(exc),
                    )  # fmt: skip
            finally:
                self.agent.attach(None)
                self.connected.clear()
            now = time.monotonic()
            if self._up_since is not None:  # it was connected: however it ended
                refused = False
                if now - self._up_since >= STABLE_SECONDS:
                    failures, lost_at = 0, now
            failures += 1
            delay = reconnect_delay(failures, now - lost_at, refused, self.max_backoff)
            await asyncio.sleep(delay)

    def _hint(self, exc: BaseException) -> str:
        """Over TLS 1.3 a server refuses a client certificate after the handshake, by closing
        the connection before it answers: say what that may mean."""
        if self.tls is None or not isinstance(exc, InvalidMessage):
            return ""
        if not isinstance(exc.__cause__, EOFError):
            return ""
        return (
            " (the server closed the TLS connection before answering: if it runs with "
            "--agent-ca, is --cert signed by that CA?)"
        )

    async def _serve(self) -> None:
        # No per-message compression (costly on both ends), no proxy (as before: the agent
        # dials the server directly), messages as large as the server accepts.
        tls: dict[str, Any] = {"ssl": self.tls} if self.tls is not None else {}
        async with connect(
            self.url,
            **tls,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            compression=None,
            proxy=None,
            ping_interval=PING_SECONDS,
            ping_timeout=PONG_SECONDS,
            max_size=MAX_MESSAGE_BYTES,
            user_agent_header=f"flotilla-agent/{AGENT_VERSION}",
        ) as ws:
            await self._talk(ws)
        log.warning("server closed the connection host=%s", self.agent.host)

    async def _talk(self, ws: ClientConnection) -> None:
        async def send(message: Message) -> None:
            await ws.send(encode(message))

        await send(Hello(self.agent.host, AGENT_VERSION, self.docker_version))
        self.agent.attach(send)
        self._up_since = time.monotonic()
        self.connected.set()
        log.info("connected host=%s server=%s", self.agent.host, self.url)
        await self.agent.report(force=True)
        beat = asyncio.create_task(self._heartbeat())
        driver = self.agent.driver
        reader = driver if isinstance(driver, LogReader) else None
        logs = AgentLogs(self.agent.host, reader, lambda: self.agent.desired, send)
        try:
            async for data in ws:
                if not isinstance(data, str):
                    continue  # the protocol is JSON text
                try:
                    message = decode(data)
                except ProtocolError as exc:
                    log.warning("bad message from server host=%s: %s", self.agent.host, exc)
                    continue
                if isinstance(message, DesiredState):
                    self.agent.accept(message)
                elif isinstance(message, LogsOpen):
                    logs.open(message)
                elif isinstance(message, LogsStop):
                    logs.stop(message.stream)
        finally:
            logs.close()
            beat.cancel()

    async def _heartbeat(self) -> None:
        """Send the full status now and then, changed or not. A change needs no timer here:
        the passes report it (see REFRESH_SECONDS). Liveness itself is the WebSocket's
        ping/pong, so an idle fleet costs the server almost nothing."""
        # the first one at a random point of the interval: after a server restart every
        # agent reconnects at once, and their refreshes must not come in waves ever after
        await asyncio.sleep(random.uniform(0.0, REFRESH_SECONDS))
        while True:
            await self.agent.report(force=True)
            await asyncio.sleep(REFRESH_SECONDS)


def reconnect_delay(
    failures: int,
    since_loss: float,
    refused: bool,
    max_backoff: float,
    jitter: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait before the next attempt, after `failures` attempts since the last
    working connection was lost `since_loss` seconds ago: doubling from 0.25 s, at most
    SHORT_BACKOFF_MAX within SHORT_BACKOFF_SECONDS of the loss, `max_backoff` later or when the
    server refused the token (which cannot succeed soon), jittered down to half."""
    if refused:
        ceiling = max_backoff
        failures = max(failures, 8)
    elif since_loss < SHORT_BACKOFF_SECONDS:
        ceiling = min(SHORT_BACKOFF_MAX, max_backoff)
    else:
        ceiling = max_backoff
    return min(ceiling, 0.25 * 2.0 ** min(failures, 20)) * jitter(0.5, 1.0)


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a failed connection: the server's certificate was not verified,
    or (TLS 1.3: after the handshake, on the first read) the server refused the agent's
    client certificate."""
    for error in (exc, exc.__cause__, exc.__context__):
        if isinstance(error, ssl.SSLError):
            return error
    return None


def _refusal(body: bytes | bytearray) -> str:
    """What a refusal's problem+json says (its detail), or a hint when it says nothing."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str) and detail:
        return detail[:300]
    return "check the host name and token"


def websocket_url(server_url: str) -> str:
    """The server's base URL as a WebSocket URL: http(s)://… becomes ws(s)://…"""
    url = server_url.rstrip("/")
    for plain, ws in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(plain):
            return ws + url[len(plain) :]
    return url
