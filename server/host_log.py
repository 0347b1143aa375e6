"""The hub's batched writes: agents' connections, their events and releases' pinned digests.

What agents report besides their statuses (which the status store writes) is queued here and
written in one transaction a few times a second at most, at the turn the scheduler gives
writes (`server.turns`): ten thousand agents reconnecting cost a handful of commits, not one
each. Every TOUCH_INTERVAL the connected hosts' `last_seen` is refreshed in one statement. A
write that fails is queued again, in order, before what came meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, get_args

from aiohttp import WSCloseCode

from agent.protocol import Event, Hello
from server.db import hosts, store
from server.db import pins as db_pins
from server.db.session import Sessions
from server.loops import log_failure, timed, unit_of_work, wait_set
from server.states import EventKind
from server.turns import MAX_WRITE_DEFER_SECONDS, Turns, Work

log = logging.getLogger(__name__)

WRITE_GATHER_SECONDS = 0.1  # a write gathers this long
MAX_WRITE_REST = 0.25  # and rests this long at most after one (twice what it took)
TOUCH_INTERVAL = 10.0  # refresh last_seen of connected hosts (disconnected after 30 s without)


# an event about a host, in the order the hub noted it: (host, kind, message, app)
Entry = tuple[str, str, str, str | None]


@dataclass
class _Pending:
    """What to write at the next flush."""

    connections: dict[int, tuple[bool, Hello | None]] = field(default_factory=dict)
    # every event about a host, in one list: the server's own (a connection, a session
    # replaced, a send that timed out) and its agent's, written in the order the hub noted
    # them (an agent cut off after its send timed out reads "send timed out", then
    # "disconnected"; a second connection "session replaced", then "connected")
    events: list[Entry] = field(default_factory=list)
    changed: dict[str, None] = field(default_factory=dict)  # hosts whose connection changed
    # (host, app, release, digest): what a host assigned an unpinned release resolved for it
    pins: list[tuple[str, str, int, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.connections or self.events or self.pins)

    def before(self, later: _Pending) -> None:
        """Put this batch (a failed write's) back in front of `later`, in place."""
        for host_id, connection in self.connections.items():
            later.connections.setdefault(host_id, connection)
        later.events[:0] = self.events
        later.changed = self.changed | later.changed
        later.pins[:0] = self.pins


ROTATED = 4004  # the close code an agent's connection gets when its host's token is rotated
REMOVED = 4005  # ... and when its host is removed
STOPPING = WSCloseCode.GOING_AWAY  # ... and when the server stops (1001)
MAX_WHY = 200  # characters of a reason in a disconnection's event

# why an agent's connection ended, after its hello (a connection that never said a good
# hello is refused at the door, not disconnected): the label of
# flotilla_agent_disconnects_total. The server's closes (by code, below), its cuts (the
# send watch; a refused frame or message), `server` for anything else the server ended it
# with (another close code, or its handler failed: a bug), and what `closed` finds when the
# server did not end it
Cause = Literal[
    "rotated",
    "removed",
    "stopping",
    "server",
    "send_timeout",
    "bad_frame",
    "bad_message",
    "heartbeat",
    "broken",
    "agent",
]
CAUSES: tuple[Cause, ...] = get_args(Cause)

# the server's own reasons for closing an agent's connection, by the code it closes with
SERVER_CLOSES: dict[int, tuple[Cause, str]] = {
    ROTATED: ("rotated", "its token was rotated"),
    REMOVED: ("removed", "the host was removed"),
    STOPPING: ("stopping", "the server is stopping"),
}


class Ending(NamedTuple):
    """Why an agent's connection ended: its cause (counted) and the words of its
    `host_disconnected` event."""

    cause: Cause
    why: str


def cut(code: int) -> Ending:
    """Why the server closed an agent's connection with `code`."""
    cause, words = SERVER_CLOSES.get(code, ("server", "closed by the server"))
    return Ending(cause, f"{words} (close code {code})")


def send_cut(waited: float) -> Ending:
    """The send watch cut the connection: a frame waited `waited` seconds on it."""
    return Ending("send_timeout", f"cut by the server: a frame waited {waited:.0f} s")


def frame_refused(error: str) -> Ending:
    """The connection carried a frame the server refused (too big, or broken): closed."""
    return Ending("bad_frame", f"a bad frame: {error}")


def message_refused(error: str) -> Ending:
    """The agent sent a message of the wrong shape: closed with 1007."""
    return Ending("bad_message", f"a bad message: {error}")


HANDLER_ENDED = Ending("server", "ended by the server")  # its handler failed: a bug


def closed(code: int | None, error: BaseException | None = None) -> Ending:
    """Why an agent's connection ended when the server did not end it: no answer to the
    server's heartbeat (aiohttp ends the socket with a TimeoutError: an agent or a network
    that hangs), a connection that broke, or the agent's close (with its code, whatever it
    is: an agent chooses it)."""
    if isinstance(error, TimeoutError):
        return Ending("heartbeat", "no answer to the server's heartbeat")
    if code is None or code == WSCloseCode.ABNORMAL_CLOSURE:  # no close frame
        return Ending(
            "broken", f"the connection broke (close code {WSCloseCode.ABNORMAL_CLOSURE:d})"
        )
    if code == 0:  # a close frame without a code
        return Ending("agent", "the agent closed the connection without a code")
    return Ending("agent", f"the agent closed the connection (close code {code})")


class HostLog:
    """Queues and writes what agents report besides their statuses."""

    def __init__(
        self,
        sessions: Sessions,
        turns: Turns,
        on_change: Callable[[str], object],
        connected_ids: Callable[[], list[int]],
        on_pinned: Callable[[list[str]], object] = lambda hosts: None,
    ) -> None:
        self.sessions = sessions
        self.turns = turns
        self.on_change = on_change  # a host's connection was written: the database changed
        self.connected_ids = connected_ids
        self.on_pinned = on_pinned  # a release was pinned: push to the hosts assigned it
        self._pending = _Pending()
        self._dirty = asyncio.Event()
        self._pinned: dict[tuple[str, int], str] = {}  # (app, release) -> its pin, as written

    def connection(
        self, host_id: int, name: str, up: bool, hello: Hello | None, why: str = ""
    ) -> None:
        """A host's agent connected (with its hello) or went away (and `why`, if known)."""
        self._pending.connections[host_id] = (up, hello)
        kind = EventKind.HOST_CONNECTED if up else EventKind.HOST_DISCONNECTED
        message = f"agent {kind[5:]}: {why}" if why else f"agent {kind[5:]}"
        self._pending.events.append((name, kind, message, None))
        self._pending.changed[name] = None
        self._dirty.set()

    def note(self, name: str, kind: EventKind, message: str) -> None:
        """An event the server saw about a host (a session replaced, its Docker Engine down
        or back): an event, and a webhook if the kind is published."""
        self._pending.events.append((name, kind, message, None))
        self._dirty.set()

    def event(self, name: str, event: Event) -> None:
        """An event a host's agent may report."""
        self._pending.events.append((name, event.kind, event.message, event.app))
        self._dirty.set()

    def pins(self, host: str, found: set[tuple[str, int, str]]) -> None:
        """(app, release, digest): what `host`, assigned the release without a pin, resolved
        for it (server/pins.py). The release's first is its pin; a host that resolved
        another digest than the pin is pushed its desired state again (with the pin)."""
        for app, release, digest in sorted(found):
            if self._pinned.get((app, release)) != digest:
                self._pending.pins.append((host, app, release, digest))
                self._dirty.set()

    async def run(self) -> None:
        """Write in batches until cancelled (then once more: disconnects on shutdown)."""
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
                except Exception as exc:
                    log_failure(log, "writing agents' reports", exc)
                    self._dirty.set()
                    await asyncio.sleep(1)
                took = time.monotonic() - started
                await asyncio.sleep(min(MAX_WRITE_REST, 2 * took))
        finally:
            # awaited here, not shielded, so the engine is disposed only after this is done
            with contextlib.suppress(Exception):
                await self.flush(False)

    async def flush(self, touch: bool = False) -> None:
        """Write what is queued in one transaction (and touch connected hosts if `touch`)."""
        pending, self._pending = self._pending, _Pending()
        connected_ids = self.connected_ids() if touch else []
        if not pending and not connected_ids:
            return
        with timed(log, "flush") as fields:
            fields.update(connections=len(pending.connections), events=len(pending.events))
            try:
                repush = await self._write(pending, connected_ids)
            except BaseException:
                pending.before(self._pending)  # written next time, before what came since
                raise
        if repush:
            self.on_pinned(repush)
        for name in pending.changed:  # what the database says of their connection changed too
            self.on_change(name)

    async def _write(self, pending: _Pending, connected_ids: list[int]) -> list[str]:
        """Write it; the hosts that resolved another digest than their release's pin: their
        generations are bumped, to be pushed the pin (the others run the pinned image and
        get it with their next push)."""
        repush: list[str] = []
        async with self.sessions.begin() as session:
            await hosts.record_connections(
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
            for name, kind, message, app in pending.events:
                await store.add_event(session, kind, name, message, app=app, host=name)
            pinned = dict(self._pinned)
            for host, app, release, digest in pending.pins:  # in the order reported
                pin = pinned.get((app, release))
                if pin is None:
                    pin = await db_pins.pin_digest(session, app, release, digest)
                    pinned[(app, release)] = pin
                if pin != digest and host not in repush:
                    repush.append(host)
            await db_pins.bump(session, repush)
        self._pinned = pinned
        return repush
