"""A read cache for hot GETs, invalidated by every commit.

Every committed transaction bumps one version number; a cached answer is served only while
the version it was built at is still current. A CI pipeline polling an app therefore costs
one dictionary lookup until something actually changes, and can never see stale state.
"""

from __future__ import annotations


class ReadCache:
    def __init__(self, max_entries: int = 1024) -> None:
        self.version = 0
        self.max_entries = max_entries
        self._entries: dict[str, tuple[int, bytes]] = {}

    def bump(self) -> None:
        """Something was committed: every cached answer is now stale."""
        self.version += 1

    def get(self, key: str) -> bytes | None:
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
