"""The live event feed behind `GET /v1/events/stream`: one reader for every stream client.

Events are written by many parts (handlers, the controller, the hub's `HostLog`), all
through `db/store.add_event`; a commit that added one wakes the feed
(`db/events.commit_listener`). The feed then reads the new events once, in one query,
and hands each to every subscription that may see it. With no subscriber it reads nothing.
It also reads every `POLL_SECONDS` while someone listens, for events another server
replica wrote (their commits do not wake this process).

Each subscription has a bounded buffer. A client too slow to keep up is not waited for:
its buffer is dropped and it is marked `behind`, and its stream reads what it missed from
the database itself, from its last event id, before it takes from the buffer again. So a
slow client costs memory of at most BUFFER events and loses nothing.

Late commits: on PostgreSQL an event's id is taken when its transaction inserts it, not
when it commits, so an event can become visible after one with a higher id was read (two
writers at the same moment). Each pass therefore also reads the LATE_IDS ids below the
newest read that were written in the last LATE_SECONDS, and offers those it never offered
(the feed remembers the ids it offered, each subscription the ids it sent). What stays
out of reach: an event that commits more than LATE_SECONDS after it was written, and, for a
client that reconnects with `Last-Event-ID`, a late event below that id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from server.db import events, store
from server.db.models import Event
from server.db.session import Sessions
from server.loops import log_failure, wait_set
from server.turns import Turns, Work

log = logging.getLogger(__name__)

STREAM_DEFER_SECONDS = 0.25  # how long a read yields to a controller pass (server.turns)
POLL_SECONDS = 2.0  # only for other replicas' events: this process's own commits wake it
LATE_IDS = 1000  # how far below the newest id read a late commit is looked for ...
LATE_SECONDS = 10.0  # ... among events written this recently (transactions are short)
REMEMBERED = 10_000  # ids the feed (and each subscription) remembers having offered (sent)
BUFFER = 256  # events a subscription holds for a slow client before it must catch up
READ_LIMIT = 500  # events read per query; a larger burst is read in several


@dataclass(eq=False)
class Subscription:
    """One stream client's view of the feed: what it may see and its buffer."""

    after: int  # the newest id sent (at first: the stream's Last-Event-ID)
    app: str | None = None
    apps: Collection[str] | None = None  # a confined token's apps
    behind: bool = False  # its buffer overflowed: read the missed events from the database
    closed: bool = False
    queue: asyncio.Queue[Event | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=BUFFER)
    )
    floor: int = -1  # never an event at or below it (set to `after` when made)
    sent: dict[int, None] = field(default_factory=dict)  # the ids sent lately, oldest first

    def __post_init__(self) -> None:
        self.floor = self.after

    def wants(self, event: Event) -> bool:
        """Whether the client should get `event`: one it may see and was not sent."""
        return event.id > self.floor and event.id not in self.sent and self.may_see(event)

    def mark_sent(self, event_id: int) -> None:
        """Remember that `event_id` was sent (a bounded memory)."""
        self.sent[event_id] = None
        if len(self.sent) > REMEMBERED:
            del self.sent[next(iter(self.sent))]
        self.after = max(self.after, event_id)

    def may_see(self, event: Event) -> bool:
        """Whether this subscription takes `event` (its app, a confined token's apps)."""
        if self.apps is not None and event.app not in self.apps:
            return False
        return self.app is None or event.app == self.app

    def offer(self, event: Event) -> None:
        """Buffer an event, or mark the subscription behind when its buffer is full."""
        if self.behind or self.closed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.behind = True
            self._drain()
            self.queue.put_nowait(None)  # wakes its reader

    def close(self) -> None:
        """End the subscription: its reader gets None and stops."""
        self.closed = True
        self._drain()
        self.queue.put_nowait(None)

    def _drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()


class EventFeed:
    """Reads new events once for all stream clients of this process and fans them out."""

    def __init__(
        self,
        sessions: Sessions,
        turns: Turns,
        wake: asyncio.Event,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._turns = turns
        self._poll = poll_seconds
        self._subs: set[Subscription] = set()
        self._after: int | None = None  # the newest event read; None while nobody listens
        self._offered: dict[int, None] = {}  # ids offered lately, oldest first
        self.wake = wake  # set by a commit that added events (db/events.commit_listener)

    def subscribe(
        self, after: int, app: str | None = None, apps: Collection[str] | None = None
    ) -> Subscription:
        """A new subscription to events past `after`."""
        sub = Subscription(after=after, app=app, apps=apps)
        self._subs.add(sub)
        if self._after is not None:
            self._after = min(self._after, after)  # never skip what it has not read
        self.wake.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscription (its client went away)."""
        self._subs.discard(sub)

    def close_all(self) -> None:
        """End every subscription (the server is stopping)."""
        for sub in self._subs:
            sub.close()
        self._subs.clear()

    @property
    def subscribers(self) -> int:
        """How many stream clients listen."""
        return len(self._subs)

    async def run_once(self) -> None:
        """Read the events past the newest read, and offer each to every subscription."""
        if not self._subs:
            self._after = None
            return
        if self._after is None:
            self._after = min(s.after for s in self._subs)
        since = store.now() - dt.timedelta(seconds=LATE_SECONDS)
        async with self._sessions() as session:
            late = await events.read_range(session, self._after - LATE_IDS, self._after, since)
        self._offer([row for row in late if row.id not in self._offered])
        while True:
            async with self._sessions() as session:
                rows = await events.read_after(session, self._after, READ_LIMIT)
            self._offer(rows)
            if rows:
                self._after = max(self._after, rows[-1].id)
            if len(rows) < READ_LIMIT:
                return

    def _offer(self, rows: Sequence[Event]) -> None:
        for row in rows:
            for sub in list(self._subs):
                if sub.wants(row):
                    sub.offer(row)
            self._offered[row.id] = None
        while len(self._offered) > REMEMBERED:
            del self._offered[next(iter(self._offered))]

    async def run(self) -> None:
        """Wait for a commit that added events (or the poll interval), then read them."""
        while True:
            # not asyncio.wait_for: 3.11's can lose the cancellation at shutdown when a commit
            # sets `wake` at that moment, and this loop never stopped (a hang, once in 3 runs
            # of tests/server/test_agent_door.py)
            await wait_set(self.wake, self._poll)
            await self._turns.wait(Work.STREAM, STREAM_DEFER_SECONDS)
            self.wake.clear()
            try:
                await self.run_once()
            except Exception as exc:  # a failed pass never ends the loop
                log_failure(log, "event feed", exc)
