"""Helpers for the server's background loops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

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
