"""The agent's side of `flotilla logs`: the output of an app's containers, sent to the server.

The server opens a stream (`LogsOpen`, with an id it chose) for one app; the agent reads the
output of that app's containers of its assigned release on this host (running or not;
containers retained from older releases are left out), each in a daemon thread of its own
through the Docker SDK (`DockerDriver.open_logs`), and sends the lines in chunks
(`LogChunk`), then `LogsEnd`. `--tail` counts per container, as `docker service logs` does.
A followed stream ends when every container's output ends (the containers stopped) or when
the server says `LogsStop`; a lost connection stops every stream of that connection.

Bounds: a stream holds at most MAX_BUFFERED lines; a reader thread waits for room (so a
slow server slows the reading of the Engine's stream, which Docker buffers, rather than the
agent's memory growing), and a stream sends at most LOG_CHUNKS_PER_SECOND chunks of
MAX_LOG_CHUNK lines a second. A line without an end is cut at MAX_PENDING bytes.

Every line is masked (`agent/masking.py`, the secret values of the desired state the agent
holds when the line is sent) before it is clipped to the protocol's MAX_LOG_LINE: clipping
first could leave the start of a secret in view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from agent.caps import MAX_LOG_LINE, MAX_TEXT
from agent.log_protocol import (
    LOG_CHUNKS_PER_SECOND,
    MAX_LOG_CHUNK,
    MAX_LOG_STREAMS,
    LogChunk,
    LogEntry,
    LogsEnd,
    LogsOpen,
)
from agent.masking import mask, secret_values
from agent.protocol import DesiredState, Instance, Message, clip

log = logging.getLogger(__name__)

MAX_BUFFERED = 1000  # lines a stream holds before its readers wait
MAX_PENDING = 64 * 1024  # bytes of a line without an end before it is sent as it is
ROOM_POLL_SECONDS = 0.5  # how often a waiting reader looks whether its stream was stopped

Send = Callable[[Message], Awaitable[None]]


class LogFeed(Protocol):
    """A container's output as the Engine streams it: byte chunks, closable from elsewhere."""

    def __iter__(self) -> Iterator[bytes]:
        """The next chunk of output, blocking until there is one."""
        ...

    def close(self) -> None:
        """End the iteration (from another thread)."""


@runtime_checkable
class LogReader(Protocol):
    """What a stream needs of the Docker driver (the real one has it; a benchmark's fake
    driver need not)."""

    def list_instances(self) -> list[Instance]:
        """Every container of this host."""
        ...

    def open_logs(
        self, container_id: str, *, follow: bool, tail: int | None, since: float | None
    ) -> Any:
        """The container's output (a LogFeed)."""


# the Engine's stamp (RFC 3339, nanoseconds): a piece of a cut line that happens to start with
# something else is all text, and no stamp is ever longer than this (the protocol's cap is 255)
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")


def split_stamp(raw: bytes) -> tuple[str, str]:
    """(time, text) of a line the Engine stamped (`2026-12-06T14:00:00.123456789Z text`)."""
    text = raw.decode("utf-8", "replace").rstrip("\r")
    stamp, sep, rest = text.partition(" ")
    if sep and _STAMP.fullmatch(stamp):
        return stamp, rest
    return "", text


def lines_of(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole lines from a stream of chunks (a chunk may hold several lines, or part of one);
    a line longer than MAX_PENDING is cut there."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        while True:
            line, newline, rest = pending.partition(b"\n")
            if not newline:
                break
            yield line
            pending = rest
        while len(pending) > MAX_PENDING:
            yield pending[:MAX_PENDING]
            pending = pending[MAX_PENDING:]
    if pending:
        yield pending


class AgentLogs:
    """The log streams the server opened on one connection of this agent."""

    def __init__(
        self,
        host: str,
        reader: LogReader | None,
        desired: Callable[[], DesiredState | None],
        send: Send,
    ) -> None:
        self.host = host
        self.reader = reader
        self.desired = desired  # the desired state the agent holds now
        self.send = send
        self._streams: dict[int, _Stream] = {}

    def open(self, request: LogsOpen) -> None:
        """Start the stream the server asked for (a second request for an open id, or one
        past MAX_LOG_STREAMS, is answered with LogsEnd and a note)."""
        if request.stream in self._streams or len(self._streams) >= MAX_LOG_STREAMS:
            note = f"this agent serves at most {MAX_LOG_STREAMS} log streams at once"
            self._spawn(self.send(LogsEnd(self.host, request.stream, note)))
            return
        stream = _Stream(self, request)
        self._streams[request.stream] = stream
        stream.task = asyncio.create_task(stream.run(), name=f"logs-{request.stream}")
        stream.task.add_done_callback(lambda _: self._forget(stream))

    def stop(self, stream_id: int) -> None:
        """Stop a stream (the server's client went away); nothing is sent."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            stream.stop()

    def close(self) -> None:
        """The connection ended: stop every stream."""
        for stream_id in list(self._streams):
            self.stop(stream_id)

    def _forget(self, stream: _Stream) -> None:
        if self._streams.get(stream.request.stream) is stream:
            del self._streams[stream.request.stream]

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def quietly() -> None:
            with contextlib.suppress(Exception):  # a dropped connection: the server forgot
                await coro

        task = asyncio.create_task(quietly())
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)


_TASKS: set[asyncio.Task[None]] = set()


class _Stream:
    """One open stream: a reader thread per container, one task that sends."""

    def __init__(self, owner: AgentLogs, request: LogsOpen) -> None:
        self.owner = owner
        self.request = request
        self.task: asyncio.Task[None] | None = None
        self.loop = asyncio.get_running_loop()
        self.stopped = threading.Event()
        self.room = threading.Semaphore(MAX_BUFFERED)
        self.buffer: deque[tuple[Instance, str, str]] = deque()
        self.ready = asyncio.Event()
        self.readers = 0
        self.notes: list[str] = []
        self.feeds: list[Any] = []
        self.lock = threading.Lock()
        # the secrets of the release whose containers it reads, even once a deploy or the
        # app's removal took them out of the desired state (their shutdown still prints)
        self.secrets = secret_values(owner.desired())

    def stop(self) -> None:
        """Stop reading and sending: close the Engine's streams, so the threads end."""
        self.stopped.set()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        with self.lock:
            feeds, self.feeds = self.feeds, []
        for feed in feeds:
            threading.Thread(target=_close, args=(feed,), daemon=True).start()

    async def run(self) -> None:
        """Find the containers, start their readers, send what they read, then the end."""
        host, stream_id = self.owner.host, self.request.stream
        try:
            note = await self._start()
            if note is None:
                await self._pump()
                note = "; ".join(self.notes) or None
            await self.owner.send(LogsEnd(host, stream_id, clip(note, MAX_TEXT) if note else None))
        except Exception as exc:  # the connection dropped: the server ended the stream itself
            log.debug("log stream %d ended host=%s: %s", stream_id, host, exc)
        finally:
            self.stop()

    async def _start(self) -> str | None:
        """Start a reader per container; why not, if none can start."""
        app = self.request.app
        desired = self.owner.desired()
        assigned = [a for a in desired.assignments if a.app == app] if desired else []
        if not assigned:
            return f"app {app} is not assigned to host {self.owner.host}"
        reader = self.owner.reader
        if reader is None:
            return "this agent's driver cannot read logs"
        try:
            found = await asyncio.to_thread(reader.list_instances)
        except Exception as exc:  # the Engine does not answer: said, not raised
            return f"the Docker Engine did not list containers: {exc}"
        release = assigned[0].release
        mine = [
            i for i in found if i.app == app and i.host == self.owner.host and i.release == release
        ]
        if not mine:
            return f"no container of app {app} release {release} on host {self.owner.host}"
        for instance in sorted(mine, key=lambda i: i.replica):
            self.readers += 1
            thread = threading.Thread(
                target=self._read, args=(reader, instance), daemon=True, name="logs-reader"
            )
            thread.start()
        return None

    async def _pump(self) -> None:
        """Send the buffer in chunks, at most LOG_CHUNKS_PER_SECOND a second, until every
        reader is done and nothing is left."""
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.buffer:
                batch = [self.buffer.popleft() for _ in range(min(MAX_LOG_CHUNK, len(self.buffer)))]
                for _ in batch:
                    self.room.release()
                now = secret_values(self.owner.desired())
                values = tuple(sorted(set(now) | set(self.secrets), key=len, reverse=True))
                lines = tuple(
                    LogEntry(
                        i.name, i.replica, i.release, t, clip(mask(text, values), MAX_LOG_LINE)
                    )
                    for i, t, text in batch
                )
                await self.owner.send(LogChunk(self.owner.host, self.request.stream, lines))
                await asyncio.sleep(1.0 / LOG_CHUNKS_PER_SECOND)
            if self.readers == 0 and not self.buffer:
                return

    def _read(self, reader: LogReader, instance: Instance) -> None:
        """A reader thread: one container's output into the stream's buffer."""
        note = None
        feed: Any = None
        try:
            feed = reader.open_logs(
                instance.container_id,
                follow=self.request.follow,
                tail=self.request.tail,
                since=self.request.since,
            )
            with self.lock:
                if self.stopped.is_set():
                    _close(feed)
                    return
                self.feeds.append(feed)
            for raw in lines_of(iter(feed)):
                if not self._wait_for_room():
                    break
                stamp, text = split_stamp(raw)
                self.loop.call_soon_threadsafe(self._add, instance, stamp, text)
        except Exception as exc:  # a closed stream, a container removed meanwhile
            if not self.stopped.is_set():
                note = f"the output of {instance.name} ended: {exc}"
                log.debug(
                    "log stream failed host=%s app=%s: %s", self.owner.host, instance.app, exc
                )
        finally:
            if feed is not None:  # ended, or stopped: its Engine connection goes at once
                _close(feed)
        with contextlib.suppress(RuntimeError):  # the loop is gone: the agent is stopping
            self.loop.call_soon_threadsafe(self._reader_done, note)

    def _wait_for_room(self) -> bool:
        while not self.room.acquire(timeout=ROOM_POLL_SECONDS):
            if self.stopped.is_set():
                return False
        return not self.stopped.is_set()

    def _add(self, instance: Instance, stamp: str, text: str) -> None:
        self.buffer.append((instance, stamp, text))
        self.ready.set()

    def _reader_done(self, note: str | None) -> None:
        self.readers -= 1
        if note:
            self.notes.append(note)
        self.ready.set()


def _close(feed: Any) -> None:
    """Close an Engine stream; closing one that already ended may raise anything."""
    with contextlib.suppress(Exception):
        feed.close()
