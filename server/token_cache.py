"""Validated API tokens, kept for at most a second, and who they are.

Every API call names a token; looking its hash up costs a query, so a validated token is
kept for TTL_SECONDS (1 s: a token revoked through another server replica is refused within
it). A revocation through this process drops the token's entries at once (`drop`). An
expired token is refused by `Caller.expired` on every call, cached or not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

TTL_SECONDS = 1.0
TOUCH_SECONDS = 60.0  # a token's last use is written at most this often
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Caller:
    """Who made a request (the token's name), what it may do and on which apps (None:
    every app)."""

    name: str
    scopes: frozenset[str]
    apps: frozenset[str] | None = None
    token_id: int | None = None
    expires_at: dt.datetime | None = None

    def expired(self, now: dt.datetime) -> bool:
        """Is the token past its expiry at `now`?"""
        return self.expires_at is not None and self.expires_at <= now

    def may_see(self, app: str) -> bool:
        """Is this app within the token's apps?"""
        return self.apps is None or app in self.apps


@dataclass
class TokenCache:
    """Token -> (caller, when the entry goes stale), and when each token's use was noted."""

    ttl: float = TTL_SECONDS
    _entries: dict[str, tuple[Caller, float]] = field(default_factory=dict)
    _touched: dict[int, float] = field(default_factory=dict)

    def get(self, token: str, now: float) -> Caller | None:
        """The cached caller of this token, if validated within the TTL."""
        hit = self._entries.get(token)
        if hit is None or hit[1] <= now:
            return None
        return hit[0]

    def put(self, token: str, caller: Caller, now: float) -> None:
        """Remember a token just validated."""
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[token] = (caller, now + self.ttl)

    def drop(self, name: str) -> None:
        """Forget every entry of the token of this name (it was revoked)."""
        for token in [t for t, (c, _) in self._entries.items() if c.name == name]:
            del self._entries[token]

    def due(self, token_id: int, now: float) -> bool:
        """Is it time to write this token's last use (at most once per TOUCH_SECONDS)?"""
        if now - self._touched.get(token_id, float("-inf")) < TOUCH_SECONDS:
            return False
        if len(self._touched) >= MAX_ENTRIES:
            self._touched.clear()
        self._touched[token_id] = now
        return True
