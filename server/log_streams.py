"""The open log streams of this process (`GET /v1/apps/{app}/logs`): the one owner of which
stream ids are open to which host, and of the buffers between agents and clients.

A client's call is a `Tap`: one stream per host, each with an id this process chose, opened
by sending the host's agent `LogsOpen`. The hub's intake hands every `LogChunk` and `LogsEnd`
an agent sends to `take`, which accepts it only for a stream this process opened to that
very host and has not closed: anything else is refused (the intake counts it). A Tap holds at
most MAX_BUFFERED records; when its client reads too slowly the oldest are dropped, and the
client is told how many, per host, in a note before the next record (`docker logs` over a
slow link would block the container; here a slow client costs the agents nothing). A host
that disconnects ends its stream with a note; a client that goes away closes its Tap, which
tells each agent still streaming to stop (`LogsStop`).

Only the agents connected to this process can be asked: with several server replicas, a host
whose agent holds a connection to another replica answers "not connected" here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.log_protocol import MAX_LOG_STREAMS, LogChunk, LogsEnd, LogsOpen, LogsStop
from agent.protocol import Message
from server.errors import Conflict, FieldError

log = logging.getLogger(__name__)

MAX_BUFFERED = 2000  # records a Tap holds for its client; past this the oldest are dropped

Record = dict[str, Any]


@dataclass
class Tap:
    """One client's view of an app's logs: a stream per host, merged into one buffer."""

    app: str
    open: dict[tuple[str, int], None] = field(default_factory=dict)  # (host, stream id)
    records: deque[Record] = field(default_factory=deque)
    dropped: dict[str, int] = field(default_factory=dict)  # host -> records dropped
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ended(self) -> bool:
        """Has every host's stream ended, and has the client read everything?"""
        return not self.open and not self.records and not self.dropped

    def put(self, record: Record) -> None:
        """Add a record; past MAX_BUFFERED drop the oldest (counted for a note)."""
        if len(self.records) >= MAX_BUFFERED:
            old = self.records.popleft()
            self.dropped[old["host"]] = self.dropped.get(old["host"], 0) + 1
        self.records.append(record)
        self.wake.set()

    def take(self) -> list[Record]:
        """Everything buffered, after a note for each host whose records were dropped."""
        notes = [
            {"host": host, "note": f"{n} lines dropped: this client read too slowly"}
            for host, n in sorted(self.dropped.items())
        ]
        self.dropped.clear()
        out = notes + list(self.records)
        self.records.clear()
        self.wake.clear()
        return out


class LogStreams:
    """Every log stream this process opened, by host (see the module docstring)."""

    def __init__(self, send: Callable[[str, Message], Awaitable[bool]]) -> None:
        self.send = send  # a message to a connected host's agent; False if it could not go
        self._ids = itertools.count(1)
        self._taps: dict[tuple[str, int], Tap] = {}

    def open_count(self, host: str) -> int:
        """How many streams are open to a host."""
        return sum(1 for h, _ in self._taps if h == host)

    def check_room(self, host: str) -> None:
        """Refuse (409 `too_many_log_streams`) a stream the host's agent would not serve."""
        if self.open_count(host) >= MAX_LOG_STREAMS:
            raise Conflict(
                "too_many_log_streams",
                f"host {host} already serves {MAX_LOG_STREAMS} log streams; try again later",
                [FieldError("host", "too many log streams open")],
            )

    def reserve(self, app: str, hosts: list[str]) -> Tap:
        """A Tap holding a stream for each host (whose agent must be connected), refused
        (409 `too_many_log_streams`) before anything is held if one of them already serves
        MAX_LOG_STREAMS: checked and held in one step, so concurrent calls cannot both pass
        the check. `start` asks the agents; `close` lets go."""
        for host in hosts:
            self.check_room(host)
        tap = Tap(app)
        for host in hosts:
            key = (host, next(self._ids))
            self._taps[key] = tap
            tap.open[key] = None
        return tap

    async def start(self, tap: Tap, tail: int | None, since: float | None, follow: bool) -> None:
        """Ask each agent of a reserved Tap to stream."""
        for key in list(tap.open):
            host, stream_id = key
            sent = await self.send(host, LogsOpen(stream_id, tap.app, tail, since, follow))
            if not sent and key in self._taps:
                self._end(key, "the agent could not be reached")

    async def open(
        self,
        app: str,
        hosts: list[str],
        tail: int | None,
        since: float | None,
        follow: bool,
    ) -> Tap:
        """`reserve`, then `start`."""
        tap = self.reserve(app, hosts)
        await self.start(tap, tail, since, follow)
        return tap

    def take(self, host: str, message: LogChunk | LogsEnd, over_rate: bool = False) -> bool:
        """An agent's chunk or end (from the intake): False, and nothing kept, unless this
        process opened that stream to that host and it is still open. A chunk past the
        host's rate (`over_rate`) is dropped and counted for a note."""
        key = (host, message.stream)
        tap = self._taps.get(key)
        if tap is None:
            return False
        if isinstance(message, LogsEnd):
            self._end(key, message.note)
            return True
        if over_rate:
            tap.dropped[host] = tap.dropped.get(host, 0) + len(message.lines)
            tap.wake.set()
            return True
        for entry in message.lines:
            tap.put(
                {
                    "host": host,
                    "app": tap.app,
                    "container": entry.container,
                    "replica": entry.replica,
                    "release": entry.release,
                    "time": entry.time or None,
                    "line": entry.line,
                }
            )
        return True

    def host_gone(self, host: str) -> None:
        """A host's agent disconnected: its streams end with a note."""
        for key in [k for k in self._taps if k[0] == host]:
            self._end(key, "the agent disconnected; this host's stream ended")

    async def close(self, tap: Tap) -> None:
        """The client is done (or went away): stop the streams still open."""
        for key in list(tap.open):
            self._taps.pop(key, None)
            del tap.open[key]
            host, stream_id = key
            try:
                await self.send(host, LogsStop(stream_id))
            except Exception as exc:  # the agent left meanwhile: nothing to stop
                log.debug("log stream stop failed host=%s: %s", host, exc)

    def _end(self, key: tuple[str, int], note: str | None) -> None:
        tap = self._taps.pop(key, None)
        if tap is None:
            return
        tap.open.pop(key, None)
        if note:
            tap.put({"host": key[0], "note": note})
        tap.wake.set()
