"""Agent connections: authenticate, take status and events, push full desired state.

Pushes are level-triggered: each one carries the host's whole desired state and its
generation, read fresh from the database, so a lost or repeated push does no harm.

Every message an agent sends is parsed once, at the door, into its strict typed model
(`agent.protocol.decode_report`); a message of the wrong shape closes the connection with a
clear reason (1007), and nothing of it is kept. A status goes to the status store
(`server.statuses`, the owner of what each host last reported) and is news for the rollout
controller (`Wakeups.host`). Connections, agents' events and image digests are written in
batches, a few times a second at most, at the turn the scheduler gives writes
(`server.turns`). Liveness comes from the WebSocket's own ping/pong; the hub touches
`last_seen` of every connected host in one statement every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from agent.protocol import (
    DesiredState,
    Event,
    Hello,
    ProtocolError,
    Status,
    decode_report,
    encode,
)
from server import desired
from server.db import rollouts, store
from server.db.session import Sessions
from server.errors import Unauthorized
from server.loops import timed, unit_of_work, wait_set
from server.metrics import Metrics
from server.statuses import StatusStore
from server.turns import Phase, Turns, Work

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
PUSH_GATHER_SECONDS = 0.005  # a moment to coalesce a burst of pushes; more gather while one runs
WRITE_GATHER_SECONDS = 0.1  # a write of connections and events gathers this long
MAX_FLUSH_REST = 0.25  # and rests this long at most after one (twice what it took)
MAX_WRITE_DEFER_SECONDS = 1.0  # how long a write yields to each phase before it
TOUCH_INTERVAL = 10.0  # refresh last_seen of connected hosts (disconnected after 30 s without)
PUSH_CONCURRENCY = 256
HEARTBEAT_SECONDS = 20.0  # the server's ping interval on each agent socket, for small fleets
MAX_PINGS_PER_SECOND = 200.0  # for large ones the interval grows: 50 s at 10,000 hosts


@dataclass
class _Pending:
    """What to write at the next flush."""

    connections: dict[int, tuple[bool, Hello | None]] = field(default_factory=dict)
    transitions: list[tuple[str, bool]] = field(default_factory=list)  # for the audit log
    events: list[tuple[str, Event]] = field(default_factory=list)
    digests: set[tuple[str, str]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.connections or self.events or self.digests)


class Hub:
    """Holds this process's agent WebSockets."""

    def __init__(
        self,
        sessions: Sessions,
        metrics: Metrics,
        statuses: StatusStore,
        on_change: Callable[[str], object],
        turns: Turns,
    ) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.statuses = statuses
        self.on_change = on_change  # a host sent a status, connected or went away
        self.turns = turns
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._ids: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._digests: set[tuple[str, str]] = set()
        self._pending = _Pending()
        self._dirty = asyncio.Event()
        self._to_push: set[str] = set()
        self._push_wanted = asyncio.Event()
        self._at_once = False  # the next push gathers nothing more (push_now)
        self._tokens: dict[str, tuple[int, str, float]] = {}  # token -> host id, name, expiry
        self._fleet = 0  # registered hosts, counted at most once a minute
        self._fleet_checked = float("-inf")

    def is_connected(self, host: str) -> bool:
        """Does this process hold the host's agent connection?"""
        return host in self._sockets

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/agent/connect: one agent's WebSocket, for as long as it stays."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        known = await self._host_of(token)
        if known is None:
            raise Unauthorized("unknown host token")
        host_id, name = known
        ws = web.WebSocketResponse(
            heartbeat=await self._heartbeat(), compress=False, max_msg_size=64 * 1024 * 1024
        )
        await ws.prepare(request)
        try:
            hello = await self._hello(ws)
        except (TimeoutError, ProtocolError) as exc:
            log.warning("agent handshake failed host=%s: %s", name, exc)
            await ws.close(code=4000, message=b"expected hello")
            return ws
        if hello.host != name:
            log.warning("agent for host=%s introduced itself as %s", name, hello.host)
            await ws.close(code=4003, message=b"token belongs to another host")
            return ws
        previous = self._sockets.get(name)
        try:  # registered inside: whatever happens from here, the finally unregisters it
            self._sockets[name] = ws
            self._ids[name] = host_id
            self.on_change(name)
            self.metrics.agent_connections.set(len(self._sockets))
            if previous is not None:
                await previous.close(code=4001, message=b"replaced by a newer connection")
            self._queue_connection(host_id, name, True, hello)
            log.info("agent connected host=%s version=%s", name, hello.agent_version)
            self.request_push([name])  # batched: a reconnect storm costs a few queries
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    self._receive(host_id, name, msg.data)
                except ProtocolError as exc:
                    log.warning("bad message host=%s: %s", name, exc)
                    reason = str(exc).encode()[:120]  # a close frame's reason: 123 bytes
                    await ws.close(code=1007, message=reason)
                    break
        finally:
            if self._sockets.get(name) is ws:
                del self._sockets[name]
                self.on_change(name)
                self.metrics.agent_connections.set(len(self._sockets))
                self._queue_connection(host_id, name, False, None)
                log.info("agent disconnected host=%s", name)
        return ws

    async def push(self, hosts: Iterable[str]) -> None:
        """Send each connected host its full desired state (read in a few batched queries)."""
        names = [n for n in dict.fromkeys(hosts) if n in self._sockets]
        if not names:
            return
        with timed(log, "push") as fields:
            started = time.perf_counter()
            async with self.sessions() as session:
                states = await desired.states(session, names)
            fields.update(hosts=len(names), read_ms=round(1000 * (time.perf_counter() - started)))
            await self._send_all(names, states)

    async def _send_all(self, names: list[str], states: dict[str, DesiredState]) -> None:
        """Send with PUSH_CONCURRENCY workers sharing one list: a slow socket holds up only
        its worker, and a fan-out to 10,000 hosts does not create 10,000 tasks (which cost
        an eighth of the server's time during a deploy, py-spy)."""
        queue = iter(names)

        async def worker() -> None:
            for name in queue:
                ws = self._sockets.get(name)
                desired = states.get(name)
                if ws is None or desired is None:
                    continue
                async with self._locks.setdefault(name, asyncio.Lock()):
                    try:
                        await ws.send_str(encode(desired))
                    except (ConnectionError, RuntimeError) as exc:
                        log.warning("push failed host=%s: %s", name, exc)

        await asyncio.gather(*(worker() for _ in range(min(PUSH_CONCURRENCY, len(names)))))

    def request_push(self, hosts: Iterable[str]) -> None:
        """Push to these hosts soon, together with whatever else is waiting."""
        self._to_push.update(hosts)
        self._push_wanted.set()
        self.turns.begin(Phase.PUSHING)

    def push_now(self, hosts: Iterable[str]) -> None:
        """Push to these hosts without gathering more first: a batch already gathered (the
        controller's pass), whose first host should hear of it at once."""
        self._at_once = True
        self.request_push(hosts)

    async def run(self) -> None:
        """The hub's two loops: batched pushes and batched writes."""
        await asyncio.gather(self._push_loop(), self._flush_loop())

    async def _push_loop(self) -> None:
        while True:
            await self._push_wanted.wait()
            if not self._at_once:
                await asyncio.sleep(PUSH_GATHER_SECONDS)
            self._at_once = False
            self._push_wanted.clear()
            batch, self._to_push = self._to_push, set()
            try:
                await unit_of_work(self.push(batch))
            except Exception:
                log.exception("push of %d hosts failed; retrying", len(batch))
                self.request_push(batch)
                await asyncio.sleep(1)
            if not self._to_push:
                self.turns.end(Phase.PUSHING)

    async def _heartbeat(self) -> float:
        """Seconds between this server's pings on a new agent socket (a silent, dead socket is
        closed within 1.5 of them). Like Nomad's heartbeat TTL it grows with the fleet, so the
        server sends at most MAX_PINGS_PER_SECOND in all: at 10,000 agents a ping every 20 s
        each was 58% of an idle server's CPU samples (py-spy)."""
        now = time.monotonic()
        if now >= self._fleet_checked + 60.0:
            self._fleet_checked = now  # first: a reconnect storm counts once, not per agent
            async with self.sessions() as session:
                self._fleet = await store.host_count(session)
        return max(HEARTBEAT_SECONDS, self._fleet / MAX_PINGS_PER_SECOND)

    async def _host_of(self, token: str) -> tuple[int, str] | None:
        """The host a token belongs to; cached for a minute (a reconnect storm is cheap)."""
        if not token:
            return None
        now = time.monotonic()
        cached = self._tokens.get(token)
        if cached is not None and cached[2] > now:
            return cached[0], cached[1]
        async with self.sessions() as session:
            host = await store.host_by_token(session, token)
        if host is None:
            return None
        if len(self._tokens) > 100_000:
            self._tokens.clear()
        self._tokens[token] = (host.id, host.name, now + 60.0)
        return host.id, host.name

    async def _flush_loop(self) -> None:
        """Flush what agents reported, in batches, until cancelled (then flush once more)."""
        last_touch = time.monotonic()
        try:
            while True:
                await wait_set(self._dirty, TOUCH_INTERVAL)
                await asyncio.sleep(WRITE_GATHER_SECONDS)
                await self.turns.wait(Work.WRITES, MAX_WRITE_DEFER_SECONDS)
                self._dirty.clear()
                touch = time.monotonic() - last_touch >= TOUCH_INTERVAL
                if touch:
                    last_touch = time.monotonic()
                started = time.monotonic()
                try:
                    await unit_of_work(self.flush(touch))
                except Exception:
                    log.exception("hub flush failed; retrying")
                    self._dirty.set()
                    await asyncio.sleep(1)
                took = time.monotonic() - started
                await asyncio.sleep(min(MAX_FLUSH_REST, 2 * took))
        finally:
            # the last reports (disconnects on shutdown): awaited here, not shielded, so the
            # engine is disposed only after this transaction is done
            with contextlib.suppress(Exception):
                await self.flush(False)

    async def flush(self, touch: bool = False) -> None:
        """Write queued connections, events and digests in one transaction."""
        pending, self._pending = self._pending, _Pending()
        connected_ids = list(self._ids[n] for n in self._sockets) if touch else []
        if not pending and not connected_ids:
            return
        with timed(log, "flush") as fields:
            fields.update(connections=len(pending.connections), events=len(pending.events))
            await self._write(pending, connected_ids)
        self._digests |= pending.digests
        for name, _ in pending.transitions:  # what the database says of them changed too
            self.on_change(name)

    async def _write(self, pending: _Pending, connected_ids: list[int]) -> None:
        try:
            async with self.sessions.begin() as session:
                await rollouts.record_connections(
                    session,
                    connections={
                        host_id: (
                            up,
                            hello.agent_version if hello else None,
                            hello.docker_version if hello else None,
                        )
                        for host_id, (up, hello) in pending.connections.items()
                    },
                    touch=connected_ids,
                )
                for name, up in pending.transitions:
                    kind = "host_connected" if up else "host_disconnected"
                    await store.add_event(session, kind, name, f"agent {kind[5:]}", host=name)
                for name, event in pending.events:
                    await store.add_event(
                        session, event.kind, name, event.message, app=event.app, host=name
                    )
                for image, digest in pending.digests:
                    await store.set_digest(session, image, digest)
        except Exception:
            self._requeue(pending)
            raise

    async def close_all(self) -> None:
        for ws in list(self._sockets.values()):
            await ws.close(code=1001, message=b"server shutting down")

    def _requeue(self, pending: _Pending) -> None:
        for k2, c in pending.connections.items():
            self._pending.connections.setdefault(k2, c)
        self._pending.transitions[:0] = pending.transitions
        self._pending.events[:0] = pending.events
        self._pending.digests |= pending.digests

    async def _hello(self, ws: web.WebSocketResponse) -> Hello:
        msg = await ws.receive(timeout=HELLO_TIMEOUT)
        if msg.type != WSMsgType.TEXT:
            raise ProtocolError(f"expected a text hello, got {msg.type.name}")
        hello = decode_report(msg.data)
        if not isinstance(hello, Hello):
            raise ProtocolError("the first message must be hello")
        return hello

    def _queue_connection(self, host_id: int, name: str, up: bool, hello: Hello | None) -> None:
        self._pending.connections[host_id] = (up, hello)
        self._pending.transitions.append((name, up))
        self._dirty.set()

    def _receive(self, host_id: int, name: str, data: str) -> None:
        """Take one message: parsed and checked once, here (ProtocolError if it is bad)."""
        message = decode_report(data)
        if isinstance(message, Status):
            if message.host != name:
                raise ProtocolError(f"a status of host {message.host!r} on {name!r}'s connection")
            self.statuses.record(host_id, name, message)
            new = {d for d in message.digests if d not in self._digests}
            if new:
                self._pending.digests |= new
                self._dirty.set()
            self.on_change(name)  # the controller reads the status from the store
            return
        if isinstance(message, Event):
            self._pending.events.append((name, message))
            if message.kind == "drift_healed":
                self.metrics.drift_heals.labels(message.app).inc()
            self._dirty.set()
        # a second hello changes nothing
