"""Agent connections: authenticate, take status and events, push full desired state.

Pushes are level-triggered: each one carries the host's whole desired state and its
generation, read fresh from the database, so a lost or repeated push does no harm.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable

from aiohttp import WSMsgType, web

from agent.protocol import Event, Hello, ProtocolError, Status, decode, encode
from server.db import rollouts, store
from server.db.session import Sessions
from server.errors import Unauthorized
from server.metrics import Metrics

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0


class Hub:
    """Holds this process's agent WebSockets."""

    def __init__(self, sessions: Sessions, metrics: Metrics, on_status: Callable[[], None]) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.on_status = on_status
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._digests: dict[str, set[tuple[str, str]]] = {}

    def is_connected(self, host: str) -> bool:
        return host in self._sockets

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/agent/connect: one agent's WebSocket, for as long as it stays."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        async with self.sessions() as session:
            host = await store.host_by_token(session, token) if token else None
        if host is None:
            raise Unauthorized("unknown host token")
        name = host.name
        ws = web.WebSocketResponse(heartbeat=30.0, compress=False, max_msg_size=64 * 1024 * 1024)
        await ws.prepare(request)
        try:
            hello = await self._hello(ws, name)
        except (TimeoutError, ProtocolError) as exc:
            log.warning("agent handshake failed host=%s: %s", name, exc)
            await ws.close(code=4000, message=b"expected hello")
            return ws
        if hello.host != name:
            log.warning("agent for host=%s introduced itself as %s", name, hello.host)
            await ws.close(code=4003, message=b"token belongs to another host")
            return ws
        previous = self._sockets.get(name)
        self._sockets[name] = ws
        self.metrics.agent_connections.set(len(self._sockets))
        if previous is not None:
            await previous.close(code=4001, message=b"replaced by a newer connection")
        await self._connected(name, hello, True)
        log.info("agent connected host=%s version=%s", name, hello.agent_version)
        try:
            await self.push([name])
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._receive(name, msg.data)
        finally:
            if self._sockets.get(name) is ws:
                del self._sockets[name]
                self.metrics.agent_connections.set(len(self._sockets))
                await self._connected(name, None, False)
                log.info("agent disconnected host=%s", name)
        return ws

    async def push(self, hosts: Iterable[str]) -> None:
        """Send each connected host its full desired state."""
        for name in hosts:
            ws = self._sockets.get(name)
            if ws is None:
                continue
            lock = self._locks.setdefault(name, asyncio.Lock())
            async with lock:
                async with self.sessions() as session:
                    host = await rollouts.host_by_name(session, name)
                    if host is None:
                        continue
                    desired = await rollouts.desired_state(session, host)
                try:
                    await ws.send_str(encode(desired))
                except (ConnectionError, RuntimeError) as exc:
                    log.warning("push failed host=%s: %s", name, exc)

    async def close_all(self) -> None:
        for ws in list(self._sockets.values()):
            await ws.close(code=1001, message=b"server shutting down")

    async def _hello(self, ws: web.WebSocketResponse, name: str) -> Hello:
        msg = await ws.receive(timeout=HELLO_TIMEOUT)
        if msg.type != WSMsgType.TEXT:
            raise ProtocolError(f"expected a text hello, got {msg.type.name}")
        hello = decode(msg.data)
        if not isinstance(hello, Hello):
            raise ProtocolError("the first message must be hello")
        return hello

    async def _connected(self, name: str, hello: Hello | None, connected: bool) -> None:
        async with self.sessions.begin() as session:
            host = await rollouts.host_by_name(session, name)
            if host is None:
                return
            host.connected = connected
            host.last_seen = store.now()
            if hello is not None:
                host.agent_version = hello.agent_version[:50]
                host.docker_version = hello.docker_version[:50]
            kind = "host_connected" if connected else "host_disconnected"
            await store.add_event(session, kind, name, f"agent {kind[5:]}", host=name)
        self.on_status()

    async def _receive(self, name: str, data: str) -> None:
        try:
            message = decode(data)
        except ProtocolError as exc:
            log.warning("bad message host=%s: %s", name, exc)
            return
        if isinstance(message, Status):
            await self._status(name, message, data)
        elif isinstance(message, Event):
            async with self.sessions.begin() as session:
                await store.add_event(
                    session, message.kind, name, message.message, app=message.app, host=name
                )
            if message.kind == "drift_healed":
                self.metrics.drift_heals.labels(message.app).inc()

    async def _status(self, name: str, status: Status, data: str) -> None:
        known = self._digests.setdefault(name, set())
        fresh = [d for d in status.digests if d not in known]
        async with self.sessions.begin() as session:
            host = await rollouts.host_by_name(session, name)
            if host is None:
                return
            host.observed = json.loads(data)
            host.last_seen = store.now()
            host.connected = True
            for image, digest in fresh:
                await store.set_digest(session, image, digest)
        known.update(fresh)
        self.on_status()
