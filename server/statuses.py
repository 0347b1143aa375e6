"""What each host last reported: the one owner of that fact.

The hub hands every status it parsed (a typed `agent.protocol.Status`) to `StatusStore.record`;
the rollout controller, `GET /v1/apps/{app}` and the fleet gauges read it back through
`latest` and `read`. Each recorded status gets a sequence number that only grows (one counter
for the whole store, so it grows for every host too): a reader that judged a host on
sequence number N knows it has nothing new to judge while the host's number is still N.

Statuses persist in batches: `run` writes what was recorded since its last write in one
transaction, a few times a second at most, at the turn the scheduler gives status writes
(`server.turns`). What is in memory is always at least as new as the database; the database
is read only for hosts this process has not heard from since it started (and remembered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from agent.protocol import ProtocolError, Status
from agent.strict import status_of
from server.db.hosts import save_statuses, stored_statuses
from server.db.session import Sessions
from server.loops import log_failure, timed, unit_of_work, wait_set
from server.turns import MAX_WRITE_DEFER_SECONDS, Turns, Work

log = logging.getLogger(__name__)

# A write gathers statuses this long: an idle fleet of 10,000 sends a few dozen a second (each
# agent's refresh), and a transaction for each cost the idle server a tenth of a core.
WRITE_GATHER_SECONDS = 0.1
# After a write, rest this share of its duration (at most MAX_WRITE_REST) before the next:
# a host that reports twice meanwhile is written once, and readers never wait for a write.
WRITE_REST_SHARE = 2.0
MAX_WRITE_REST = 0.25
IDLE_WRITE_SECONDS = 10.0  # wake this often even when nothing was recorded


@dataclass(frozen=True, slots=True)
class Reported:
    """A host's last status (None: it never reported) and its sequence number."""

    seq: int
    status: Status | None


class StatusReader(Protocol):
    """What readers of the hosts' statuses need (the controller, views, fleet gauges)."""

    @property
    def seq(self) -> int:
        """The newest sequence number given out: changes whenever any status does."""
        ...

    def latest(self, host: str) -> Reported | None:
        """The host's last status as this process holds it (None: not read yet)."""
        ...

    async def read(
        self, session: AsyncSession, hosts: Sequence[tuple[int, str]]
    ) -> dict[str, Reported]:
        """Each of these hosts' (id, name) last status, from memory or else the database."""
        ...


@dataclass
class StatusStore:
    """Holds each host's last status in memory and writes new ones to the database."""

    sessions: Sessions
    turns: Turns
    _latest: dict[str, Reported] = field(default_factory=dict)
    _unwritten: dict[int, Status] = field(default_factory=dict)  # host id -> status
    _gone: set[int] = field(default_factory=set)  # removed since the last write began
    _seq: int = 0
    _recorded: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def seq(self) -> int:
        """The newest sequence number given out."""
        return self._seq

    def record(self, host_id: int, host: str, status: Status) -> Reported:
        """Take a host's new status: readers see it at once, the database at the next write."""
        self._seq += 1
        reported = self._latest[host] = Reported(self._seq, status)
        self._unwritten[host_id] = status
        self._recorded.set()
        return reported

    def latest(self, host: str) -> Reported | None:
        """The host's last status as this process holds it (None: not read yet)."""
        return self._latest.get(host)

    async def read(
        self, session: AsyncSession, hosts: Sequence[tuple[int, str]]
    ) -> dict[str, Reported]:
        """Each host's last status: from memory, else from the database (then remembered,
        with a sequence number of its own; a host that never reported gets status None)."""
        found: dict[str, Reported] = {}
        missing: list[tuple[int, str]] = []
        for host_id, name in hosts:
            reported = self._latest.get(name)
            if reported is None:
                missing.append((host_id, name))
            else:
                found[name] = reported
        if missing:
            stored = await stored_statuses(session, [h for h, _ in missing])
            for host_id, name in missing:
                reported = self._latest.get(name)  # recorded while the database answered
                if reported is None:
                    self._seq += 1
                    reported = Reported(self._seq, _parsed(name, stored.get(host_id)))
                    self._latest[name] = reported
                found[name] = reported
        return found

    def forget(self, host: str, host_id: int | None = None) -> None:
        """Drop a host's status from memory; with its id (a removed host), also what is not
        written yet, and a write in flight does not keep it for the next."""
        self._latest.pop(host, None)
        if host_id is not None:
            self._unwritten.pop(host_id, None)
            self._gone.add(host_id)

    async def run(self) -> None:
        """Write recorded statuses in batches until cancelled (then once more)."""
        try:
            while True:
                await wait_set(self._recorded, IDLE_WRITE_SECONDS)
                await asyncio.sleep(WRITE_GATHER_SECONDS)
                await self.turns.wait(Work.WRITES, MAX_WRITE_DEFER_SECONDS)
                started = asyncio.get_running_loop().time()
                try:
                    await unit_of_work(self.write())
                except Exception as exc:
                    log_failure(log, "writing hosts' statuses", exc)
                    await asyncio.sleep(1)
                took = asyncio.get_running_loop().time() - started
                await asyncio.sleep(min(MAX_WRITE_REST, WRITE_REST_SHARE * took))
        finally:
            with contextlib.suppress(Exception):  # awaited, not shielded: see unit_of_work
                await self.write()

    async def write(self) -> None:
        """Write the statuses recorded since the last write, in one transaction."""
        self._recorded.clear()
        batch, self._unwritten = self._unwritten, {}
        gone, self._gone = self._gone, set()
        batch = {h: status for h, status in batch.items() if h not in gone}
        if not batch:
            return
        try:
            with timed(log, "status write") as fields:
                fields["statuses"] = len(batch)
                async with self.sessions.begin() as session:
                    await save_statuses(session, batch)
        except BaseException:
            for host_id, status in batch.items():  # keep what was recorded since
                if host_id not in self._gone:  # not removed meanwhile
                    self._unwritten.setdefault(host_id, status)
            self._recorded.set()
            raise


def _parsed(host: str, stored: object) -> Status | None:
    """A stored status, checked as strictly as one on the wire; None if there is none or it
    does not parse (written by an older server that stored what it did not check)."""
    if not stored:
        return None
    try:
        return status_of(stored)
    except ProtocolError as exc:
        log.warning("ignoring the stored status of host=%s: %s", host, exc)
        return None
