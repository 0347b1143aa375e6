"""Helpers for the server's background loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterator
from typing import TypeVar

from server.db.store import unavailable

T = TypeVar("T")

FINISH_SECONDS = 10.0


async def unit_of_work(work: Awaitable[T]) -> T:
    """Run one pass to its end even if the loop is cancelled meanwhile, then stop.

    Cancelling a task in the middle of a database call can leave its connection neither
    returned nor closed; shutdown then disposes the engine under it. So a pass that has
    started is allowed to finish (up to FINISH_SECONDS) before the cancellation goes on.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, FINISH_SECONDS)
        raise


async def wait_set(event: asyncio.Event, seconds: float) -> None:
    """Wait until `event` is set, or `seconds` passed, whichever comes first.

    A timeout scope, not asyncio.wait_for: the latter (3.11's) can lose a cancellation that
    arrives just as the event is set, and a loop that lost it would never stop."""
    if seconds == float("inf"):
        await event.wait()
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


SLOW_SECONDS = 0.25  # a pass this slow holds up rollouts: worth a line at INFO


@contextlib.contextmanager
def timed(logger: logging.Logger, what: str) -> Iterator[dict[str, object]]:
    """Log how long a pass took: at INFO when slow (what a fleet operator should see),
    at DEBUG otherwise. The caller fills the yielded dict with what the pass handled."""
    fields: dict[str, object] = {}
    started = time.perf_counter()
    try:
        yield fields
    finally:
        elapsed = time.perf_counter() - started
        level = logging.INFO if elapsed >= SLOW_SECONDS else logging.DEBUG
        if logger.isEnabledFor(level):
            detail = " ".join(f"{k}={v}" for k, v in fields.items())
            logger.log(level, "%s took %.0f ms %s", what, elapsed * 1000, detail)


OUTAGE_LOG_SECONDS = 60.0  # a loop says the database is down this often at most
_outage_logged: dict[str, float] = {}


def log_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Log a failed pass of a background loop: a traceback for a bug; for the database being
    down (which a later pass gets past), one line a minute per loop, no traceback."""
    if not unavailable(exc):
        logger.error("%s failed", what, exc_info=exc)
        return
    now = time.monotonic()
    if now - _outage_logged.get(what, float("-inf")) >= OUTAGE_LOG_SECONDS:
        _outage_logged[what] = now
        logger.warning("%s failed: the database does not answer (%s)", what, exc)
