"""Failed authentications, per source address: past a limit in a window, refuse with 429.

A token is 32 random bytes, so guessing one is hopeless; what a flood of bad tokens costs is
the server's time (each one a database lookup) and the operators' logs. More than LIMIT
failures from one address within WINDOW_SECONDS get 429 with Retry-After (on the REST API and
on the agent socket alike) until the window has passed, and one log line per window.
The table is bounded: past MAX_ADDRESSES it starts afresh (a flood from many addresses is a
job for a firewall, not for this table).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

LIMIT = 20
WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 100_000


@dataclass
class _Window:
    started: float
    failures: int = 0
    logged: bool = False


@dataclass
class FailedLogins:
    """Counts failed authentications per source address in fixed windows."""

    limit: int = LIMIT
    window: float = WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    _windows: dict[str, _Window] = field(default_factory=dict)

    def retry_after(self, address: str, where: str) -> float:
        """Seconds until `address` may try to authenticate again (0: it may now). The first
        refusal of a window is logged (`where`: the API or the agent socket)."""
        now = self.clock()
        current = self._windows.get(address)
        if current is None or now - current.started >= self.window:
            return 0.0
        if current.failures < self.limit:
            return 0.0
        if not current.logged:
            current.logged = True
            log.warning(
                "throttling address=%s for %.0f s: %d failed authentications (%s)",
                address, current.started + self.window - now, current.failures, where,
            )  # fmt: skip
        return max(1.0, current.started + self.window - now)

    def failed(self, address: str) -> None:
        """An authentication from `address` failed."""
        now = self.clock()
        current = self._windows.get(address)
        if current is None or now - current.started >= self.window:
            if len(self._windows) >= MAX_ADDRESSES:
                self._windows.clear()
            current = self._windows[address] = _Window(now)
        current.failures += 1
