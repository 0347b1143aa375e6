"""A read cache for hot GETs, invalidated by every commit that wrote something.

Every committed transaction that wrote bumps one version number; a cached answer is served
only while the version it was built at is still current. A CI pipeline polling an app therefore
costs one dictionary lookup until something actually changes, and can never see stale state.

Concurrent misses of one key at one version share a single build (single flight): without
that, every bump let each request that arrived before the first rebuild finished run its own
queries, and at 1,000 req/s those herds queued on the connection pool for hundreds of
milliseconds (the open-loop GET p99 of issue 5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class ReadCache:
    """Answers (bytes) by key, each valid only at the version it was built at."""

    def __init__(self, max_entries: int = 1024) -> None:
        self.version = 0
        self.max_entries = max_entries
        self._entries: dict[str, tuple[int, bytes]] = {}
        self._flights: dict[tuple[str, int], asyncio.Future[bytes]] = {}

    def bump(self) -> None:
        """Something was committed: every cached answer is now stale."""
        self.version += 1

    def get(self, key: str) -> bytes | None:
        """The cached answer for `key` if it was built at the current version."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != self.version:
            return None
        return entry[1]

    def put(self, key: str, version: int, body: bytes) -> None:
        """Store an answer built at `version` (read before the queries that built it)."""
        if version != self.version:
            return  # a commit landed while it was being built
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (version, body)

    async def fetch(self, key: str, build: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached answer for `key`, or one build of it shared by every caller that asks
        at the same version (its queries start after that version was reached, so none of
        them is served state older than what was committed when it asked)."""
        version = self.version
        cached = self.get(key)
        if cached is not None:
            return cached
        flight = self._flights.get((key, version))
        if flight is None:
            flight = asyncio.ensure_future(build())
            self._flights[(key, version)] = flight
            flight.add_done_callback(lambda done: self._landed(key, version, done))
        # shielded: a caller that goes away does not cancel the others' answer
        return await asyncio.shield(flight)

    def _landed(self, key: str, version: int, flight: asyncio.Future[bytes]) -> None:
        del self._flights[(key, version)]
        if flight.cancelled() or flight.exception() is not None:
            return  # every waiter sees the error (e.g. 404); nothing is cached
        self.put(key, version, flight.result())
