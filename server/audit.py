"""The audit trail's writer: entries and tokens' last use, written in batches.

Every mutating API call and every refused one (401, 403, 429) becomes an entry
(`server/api/audit.py`'s middleware makes them). A flood of refused calls must not become a
flood of transactions, so entries are queued and written a few times a second in one
transaction; past MAX_PENDING unwritten entries the newest are dropped and counted
(`flotilla_audit_dropped_total`). When a token was last used is written here too, at most
once a minute per token (`server/token_cache.TokenCache.due`). Agents have no way in: only
the API's middleware records.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import asdict, dataclass

from prometheus_client import Counter

from server.db import audit as db
from server.db import tokens
from server.db.session import Sessions
from server.loops import log_failure, unit_of_work, wait_set
from server.turns import MAX_WRITE_DEFER_SECONDS, Turns, Work

log = logging.getLogger(__name__)

MAX_PENDING = 10_000  # unwritten entries held at most (a database outage, a flood)
GATHER_SECONDS = 0.05  # a moment to gather a burst into one transaction
IDLE_SECONDS = 5.0


@dataclass(frozen=True)
class Entry:
    """One audit entry: who (a token's name, None if unknown), what, on what, from where."""

    at: dt.datetime
    actor: str | None
    action: str
    target: str | None
    source: str | None
    user_agent: str | None
    request_id: str
    outcome: int
    detail: str | None = None


class AuditLog:
    """Queues audit entries and tokens' last use; `run()` writes them in batches."""

    def __init__(self, sessions: Sessions, dropped: Counter, turns: Turns) -> None:
        self.sessions = sessions
        self.dropped = dropped
        self.turns = turns
        self._entries: list[Entry] = []
        self._used: dict[int, dt.datetime] = {}
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()  # a write waits for the one in flight

    def record(self, entry: Entry) -> None:
        """Queue an entry (dropped and counted past MAX_PENDING unwritten)."""
        if len(self._entries) >= MAX_PENDING:
            self.dropped.inc()
            return
        self._entries.append(entry)
        self._wake.set()

    def used(self, token_id: int, at: dt.datetime) -> None:
        """Queue a token's last use."""
        self._used[token_id] = at
        self._wake.set()

    async def run(self) -> None:
        """Write what is queued until cancelled (then once more)."""
        try:
            while True:
                await wait_set(self._wake, IDLE_SECONDS)
                await asyncio.sleep(GATHER_SECONDS)
                await self.turns.wait(Work.WRITES, MAX_WRITE_DEFER_SECONDS)
                try:
                    await unit_of_work(self.write())
                except Exception as exc:
                    log_failure(log, "writing the audit log", exc)
                    await asyncio.sleep(1)
        finally:
            with contextlib.suppress(Exception):
                await self.write()

    async def write(self) -> None:
        """Write the queued entries and last uses in one transaction; once it returns, what
        was recorded before the call is in the database (a write in flight is waited for:
        GET /v1/audit writes first, and must not read before the background write commits)."""
        async with self._writing:
            await self._write()

    async def _write(self) -> None:
        self._wake.clear()
        entries, self._entries = self._entries, []
        used, self._used = self._used, {}
        if not entries and not used:
            return
        try:
            async with self.sessions.begin() as session:
                await db.append(session, (asdict(e) for e in entries))
                await tokens.mark_used(session, used)
        except BaseException:
            room = MAX_PENDING - len(self._entries)
            self._entries[:0] = entries[:room]  # keep them, oldest first
            for token_id, at in used.items():
                self._used.setdefault(token_id, at)
            self._wake.set()
            raise
