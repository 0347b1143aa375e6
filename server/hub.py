"""Agent connections: authenticate, take status and events, push full desired state.

Pushes are level-triggered: each one carries the host's whole desired state and its
generation, read fresh from the database, so a lost or repeated push does no harm.

Every message an agent sends is parsed once, at the door, into its strict typed model
(`agent.strict.decode_report`); a message of the wrong shape closes the connection with a
clear reason (1007), and nothing of it is kept. A status goes to the status store
(`server.statuses`, the owner of what each host last reported) and is news for the rollout
controller (`Wakeups.host`). Connections, agents' events and releases' pins are written in
batches, a few times a second at most, at the turn the scheduler gives writes
(`server.turns`). Liveness comes from the WebSocket's own ping/pong; the hub touches
`last_seen` of every connected host in one statement every few seconds. An agent that stops
taking frames (its socket's buffers full) is cut off once a frame has waited SEND_SECONDS
for it (`_watch_sends`): a send waits on it, and a push waits for its sends. With mutual TLS
(`--agent-ca`), a socket also needs a client certificate naming the token's host: who may
connect is `server.agent_door.Door`'s (`Hub.door`). The log streams opened to connected
hosts are `server.log_streams.LogStreams`'s (`Hub.logs`).

(Over 400 lines: the connections' lifecycle, the sends and their watch are one piece; the
door, the log streams, the writes and the intake live in modules of their own.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from aiohttp import WSMsgType, web

from agent.codec import desired_lists, encode, encode_desired
from agent.protocol import DesiredState, Event, Hello, Message, ProtocolError, Status, clip
from agent.strict import decode_report
from server import desired, pins
from server import intake as intake_module
from server.agent_door import Door
from server.confine import Told, told_of
from server.db.session import Sessions
from server.host_log import (
    CAUSES,
    HANDLER_ENDED,
    MAX_WHY,
    STOPPING,
    Ending,
    HostLog,
    closed,
    cut,
    frame_refused,
    message_refused,
    send_cut,
)
from server.intake import Intake
from server.log_streams import LogStreams
from server.loops import log_failure, timed, unit_of_work
from server.metrics import Metrics
from server.secret_box import SecretBox
from server.states import EventKind
from server.statuses import StatusStore
from server.throttle import FailedLogins
from server.turns import Phase, Turns

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
PUSH_GATHER_SECONDS = 0.005  # a moment to coalesce a burst of pushes; more gather while one runs
# workers of a push: a send waits only on a socket whose buffer is full (its agent reads
# nothing), so the first worker usually sends to every host and the others only start and
# end: 256 cost a task each at 100 hosts (see _send_all)
PUSH_CONCURRENCY = 16
MAX_FRAME_BYTES = 1024 * 1024  # an agent's frame past this closes its connection (1009)
BAD_FRAME_LOG_SECONDS = 60.0  # a host's bad frames are logged at WARNING this often at most
# a frame an agent has not taken in this long: it reads nothing (a stuck or hostile agent),
# and its connection is cut; looked at every half of it. A healthy agent's socket takes a
# desired state at once (the kernel's buffers), however slowly its link carries it on
SEND_SECONDS = 5.0


class Hub:
    """Holds this process's agent WebSockets."""

    def __init__(
        self,
        sessions: Sessions,
        metrics: Metrics,
        statuses: StatusStore,
        on_change: Callable[[str], object],
        turns: Turns,
        logins: FailedLogins,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        rate: float = intake_module.RATE,
        burst: float = intake_module.BURST,
        secret_box: SecretBox | None = None,
        client_certs: bool = False,
        *,
        heartbeat: float,
    ) -> None:
        self.sessions = sessions
        # who may connect (the host of a token; mutual TLS), and how often a socket is pinged
        self.door = Door(sessions, metrics, logins, client_certs, heartbeat)
        self.secret_box = secret_box  # opens the secrets a desired state carries
        self.max_frame_bytes = max_frame_bytes
        self.rate = rate
        self.burst = burst
        self._intakes: dict[str, Intake] = {}
        self._remotes: dict[str, str] = {}  # the source address of each host's connection
        self._bad_logged: dict[str, float] = {}  # host -> when a bad frame was last logged
        self.metrics = metrics
        self.statuses = statuses
        self.on_change = on_change  # a host sent a status, connected or went away
        self.turns = turns
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._transports: dict[str, asyncio.Transport] = {}  # each socket's connection
        # why the server is ending a connection (a rotation, a removal, a stop, the send
        # watch): its handler's `finally` takes it for the disconnection's event
        self._ending: dict[asyncio.BaseTransport, Ending] = {}
        # host -> since when a frame to it waits (monotonic), and the connection it waits on
        self._sending: dict[str, tuple[float, asyncio.Transport | None]] = {}
        self._ids: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # connections, events and pins: written in batches
        self.records = HostLog(
            sessions, turns, on_change, lambda: [self._ids[n] for n in self._sockets],
            self.request_push,  # hosts that resolved another digest than a release's pin
        )  # fmt: skip
        self._to_push: set[str] = set()
        self._push_wanted = asyncio.Event()
        self._at_once = False  # the next push gathers nothing more (push_now)
        self._closing: set[asyncio.Task[None]] = set()  # connections being cut off
        self._since: dict[str, float] = {}  # host -> when it connected, or went away
        self.logs = LogStreams(self.send)  # the log streams opened to connected hosts
        self._unpinned: dict[str, pins.Unpinned] = {}  # what its last push left unpinned
        for cause in CAUSES:  # every series from the start: increase() sees the first one
            metrics.agent_disconnects.labels(cause=cause)

    def is_connected(self, host: str) -> bool:
        """Does this process hold the host's agent connection?"""
        return host in self._sockets

    def presence(self, host: str) -> tuple[bool, float | None]:
        """Is the host connected, and since when (seconds since the epoch) it is (connected,
        or its Docker Engine answering again, whichever came last), or has been away (None:
        it has not connected since this process started)?"""
        return host in self._sockets, self._since.get(host)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/agent/connect: one agent's WebSocket, for as long as it stays."""
        host_id, name = await self.door.admit(request)
        heartbeat = await self.door.heartbeat_seconds()
        ws = web.WebSocketResponse(
            heartbeat=heartbeat, compress=False, max_msg_size=self.max_frame_bytes
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
        previous, previous_transport = self._sockets.get(name), self._transports.get(name)
        intake = Intake(
            host_id,
            name,
            self.statuses,
            self.metrics,
            lambda status: self._recorded(name, status),
            lambda error: self._engine(name, error),
            lambda event: self._event(name, event),
            self.rate,
            self.burst,
            logs=lambda message, over: self.logs.take(name, message, over),
        )
        refused: Ending | None = None  # the hub ended it here: a frame or message refused
        transport = request.transport  # the request forgets it once the connection is lost
        try:  # registered inside: whatever happens from here, the finally unregisters it
            self._sockets[name] = ws
            if transport is not None:
                self._transports[name] = transport
            self._intakes[name] = intake
            self._ids[name] = host_id
            self._since[name] = time.time()
            remote, self._remotes[name] = self._remotes.get(name), request.remote or "?"
            self.on_change(name)
            self.metrics.agent_connections.set(len(self._sockets))
            if previous is not None:
                self.logs.host_gone(name)  # the new connection knows nothing of them
                self._session_replaced(name, remote, request.remote or "?")
                await self._close(
                    previous, previous_transport, 4001, b"replaced by a newer connection"
                )
            self.records.connection(host_id, name, True, hello)
            log.info("agent connected host=%s version=%s", name, hello.agent_version)
            self.request_push([name])  # batched: a reconnect storm costs a few queries
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    error = msg.data if isinstance(msg.data, BaseException) else ws.exception()
                    if not isinstance(error, TimeoutError):  # a heartbeat's: see `closed`
                        bad = f"{error or 'websocket error'}"  # too big, or broken
                        refused = frame_refused(bad)
                        self._bad_frame(name, bad)
                    break
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    intake.take(msg.data)
                except ProtocolError as exc:
                    self._bad_frame(name, str(exc))
                    refused = message_refused(str(exc))
                    reason = str(exc).encode()[:120]  # a close frame's reason: 123 bytes
                    await ws.close(code=1007, message=reason)
                    break
        except Exception:  # a bug of the server's; not a CancelledError, which is how
            # aiohttp ends the handler of a socket it lost (a heartbeat's timeout does)
            refused = refused or HANDLER_ENDED
            raise
        finally:
            ended = self._ending.pop(transport, None) if transport is not None else None
            intake.close()
            if self._intakes.get(name) is intake:
                del self._intakes[name]
            if self._sockets.get(name) is ws:
                del self._sockets[name]
                self._transports.pop(name, None)
                self.logs.host_gone(name)
                self._unpinned.pop(name, None)
                self._since[name] = time.time()
                self.on_change(name)
                self.metrics.agent_connections.set(len(self._sockets))
                ending = ended or refused or closed(ws.close_code, ws.exception())
                self.metrics.agent_disconnects.labels(cause=ending.cause).inc()
                why = clip(ending.why, MAX_WHY)
                self.records.connection(host_id, name, False, None, why)
                log.info("agent disconnected host=%s: %s", name, why)
        return ws

    async def send(self, host: str, message: Message) -> bool:
        """Send one message to a connected host's agent; whether it went."""
        ws = self._sockets.get(host)
        if ws is None:
            return False
        transport = self._transports.get(host)  # the same connection's: no await between
        async with self._locks.setdefault(host, asyncio.Lock()):
            return await self._send_frame(host, ws, transport, encode(message))

    async def _send_frame(
        self,
        host: str,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        text: str,
    ) -> bool:
        """Send one frame to a host's agent on the connection `ws` rides on (`transport`),
        with the host's lock held; whether it went. While the send waits, `_watch_sends`
        sees since when, and cuts that connection after SEND_SECONDS (the send then
        returns, and the connection's handler ends)."""
        self._sending[host] = (time.monotonic(), transport)
        try:
            await ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            log.warning("send failed host=%s: %s", host, exc)
            return False
        finally:
            del self._sending[host]
        # cut or closing meanwhile (the watch, or a heartbeat's timeout): it may not have gone
        return transport is None or not transport.is_closing()

    async def _watch_sends(self) -> None:
        """Cut off every agent a frame has waited on for SEND_SECONDS: it takes nothing, and
        a send to it would wait for ever (a closing socket waits for its buffer to empty
        too), and every push after it with it. Not a turn of the scheduler's to wait for:
        what it frees is the push loop itself."""
        while True:
            await asyncio.sleep(SEND_SECONDS / 2)
            now = time.monotonic()
            for host, (since, transport) in list(self._sending.items()):
                if now - since >= SEND_SECONDS and transport is not None:
                    transport.abort()  # the waiting send returns; the connection's handler ends
                    self._sending[host] = (since, None)  # cut once: its `finally` forgets it
                    if self._transports.get(host) is transport:  # its handler still runs
                        self._ending.setdefault(transport, send_cut(now - since))
                    self._send_timed_out(host, now - since)

    async def push(self, hosts: Iterable[str]) -> None:
        """Send each connected host its full desired state (read in a few batched queries)."""
        names = [n for n in dict.fromkeys(hosts) if n in self._sockets]
        if not names:
            return
        with timed(log, "push") as fields:
            started = time.perf_counter()
            async with self.sessions() as session:
                states = await desired.states(session, names, self.secret_box)
            fields.update(hosts=len(names), read_ms=round(1000 * (time.perf_counter() - started)))
            await self._send_all(names, states)

    async def _send_all(self, names: list[str], states: dict[str, DesiredState]) -> None:
        """Send with PUSH_CONCURRENCY workers sharing one list: a slow socket holds up only
        its worker, and a fan-out to 10,000 hosts does not create 10,000 tasks (which cost
        an eighth of the server's time during a deploy, py-spy). A send that need not wait
        does not yield, so the first worker takes the hosts until one does."""
        queue = iter(names)
        # a fan-out's hosts share their assignments' and pre-pulls' objects (alive while
        # `states` is): what is made of them is made once per distinct pair of lists
        shared: dict[tuple[int, ...], tuple[str, Told, pins.Releases]] = {}

        async def worker() -> None:
            for name in queue:
                ws, transport = self._sockets.get(name), self._transports.get(name)
                desired = states.get(name)
                if ws is None or desired is None:
                    continue
                key = tuple(map(id, desired.assignments + desired.prepull))
                made = shared.get(key)
                if made is None:
                    made = shared[key] = (
                        desired_lists(desired), told_of(desired), pins.awaiting(desired)
                    )  # fmt: skip
                lists, said, waiting = made
                async with self._locks.setdefault(name, asyncio.Lock()):
                    text = encode_desired(desired, lists)
                    if not await self._send_frame(name, ws, transport, text):
                        continue
                intake = self._intakes.get(name)
                if intake is not None and self._sockets.get(name) is ws:  # may report now
                    intake.told(said)
                    self._unpinned[name] = pins.unpinned(desired, waiting)

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
        """The hub's loops: batched pushes, batched writes, and the watch on sends."""
        await asyncio.gather(self._push_loop(), self.records.run(), self._watch_sends())

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
            except Exception as exc:  # a database outage: one line a minute; a bug: its trace
                log_failure(log, "push to hosts (retried every second)", exc)
                self.request_push(batch)
                await asyncio.sleep(1)
            if not self._to_push:
                self.turns.end(Phase.PUSHING)

    async def disconnect(self, name: str, code: int, reason: str) -> bool:
        """Cut a host off now: forget its cached token and close its agent connection, if
        this process holds it, with `code` and `reason` (its token was rotated: 4004; it was
        removed: 4005). Whether a connection was closed."""
        self.door.forget(name)
        ws = self._sockets.get(name)
        if ws is None:
            return False
        # the close frame goes out now; its handshake is not awaited here (an agent that
        # never answers it must not hold up the caller)
        transport = self._transports.get(name)
        if transport is not None:  # what its disconnection's event will say
            self._ending.setdefault(transport, cut(code))  # the first reason stands
        closing = asyncio.create_task(self._close(ws, transport, code, reason.encode()[:120]))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        await asyncio.sleep(0)
        log.info("agent cut off host=%s: %s", name, reason)
        return True

    async def close_all(self) -> None:
        """Close every agent connection (the server is stopping)."""
        for transport in self._transports.values():
            self._ending.setdefault(transport, cut(STOPPING))
        await asyncio.gather(
            *(
                self._close(ws, self._transports.get(name), STOPPING, b"server shutting down")
                for name, ws in list(self._sockets.items())
            )
        )  # at once: an agent that reads nothing holds up its own close only

    async def _close(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        code: int,
        message: bytes,
    ) -> None:
        """Close one agent connection with a close frame, and cut it if that has not ended in
        SEND_SECONDS: an agent that reads nothing takes no close frame either."""
        try:
            async with asyncio.timeout(SEND_SECONDS):
                await ws.close(code=code, message=message)
        except TimeoutError:
            if transport is not None:
                transport.abort()

    async def _hello(self, ws: web.WebSocketResponse) -> Hello:
        msg = await ws.receive(timeout=HELLO_TIMEOUT)
        if msg.type != WSMsgType.TEXT:
            raise ProtocolError(f"expected a text hello, got {msg.type.name}")
        hello = decode_report(msg.data)
        if not isinstance(hello, Hello):
            raise ProtocolError("the first message must be hello")
        return hello

    def _session_replaced(self, name: str, old: str | None, new: str) -> None:
        """A second connection for a connected host: the older one is closed. Worth an event
        and a webhook (a stolen token looks like this), with both source addresses."""
        self.metrics.agent_sessions_replaced.inc()
        message = f"agent session replaced: the connection from {old or '?'} by one from {new}"
        log.warning("%s host=%s", message, name)
        self.records.note(name, EventKind.HOST_SESSION_REPLACED, message)

    def _send_timed_out(self, name: str, waited: float) -> None:
        """The watch cut a host's connection: a frame waited on it. Worth an event and a
        webhook (an agent that hangs, or one that stays connected and reads nothing)."""
        self.metrics.agent_send_timeouts.inc()
        message = f"send timed out: the agent took no frame in {waited:.0f} s; connection cut"
        log.warning("%s host=%s", message, name)
        self.records.note(name, EventKind.HOST_SEND_TIMED_OUT, message)

    def _recorded(self, name: str, status: Status) -> None:
        """An intake recorded a host's status: note the pins it resolves (server/pins.py),
        tell the controller."""
        if status.digests:
            found = pins.found(status, self._unpinned.get(name, pins.NONE))
            if found:
                self.records.pins(name, found)
        self.on_change(name)  # the controller reads the status from the store

    def _engine(self, name: str, error: str | None) -> None:
        """A host's Docker Engine stopped answering (`error`) or answers again (None): then,
        as after a reconnect, its rollout deadline counts from now (`presence`)."""
        if error is None:
            self._since[name] = time.time()
            self.records.note(name, EventKind.HOST_ENGINE_AVAILABLE, "Docker Engine answers again")
        else:
            self.records.note(name, EventKind.HOST_ENGINE_UNAVAILABLE, error)

    def _event(self, name: str, event: Event) -> None:
        """An intake took an event the host's agent may report: to the audit log."""
        self.records.event(name, event)
        if event.kind == EventKind.DRIFT_HEALED:
            self.metrics.drift_heals.labels(event.app).inc()

    def _bad_frame(self, name: str, why: str) -> None:
        """Count a bad frame; log it at WARNING once a minute per host at most."""
        self.metrics.agent_refused.labels("frame").inc()
        now = time.monotonic()
        if now - self._bad_logged.get(name, float("-inf")) >= BAD_FRAME_LOG_SECONDS:
            if len(self._bad_logged) > 100_000:
                self._bad_logged.clear()
            self._bad_logged[name] = now
            log.warning("bad message host=%s (connection closed): %s", name, why)
        else:
            log.debug("bad message host=%s (connection closed): %s", name, why)
