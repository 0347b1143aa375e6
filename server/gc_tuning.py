"""Garbage-collector settings for a server that holds thousands of agent connections.

CPython's cyclic collector makes a young collection every 700 net allocations, and a full
one whenever the objects promoted since the last full one reach a quarter of all the
long-lived ones. A server with 10,000 agents holds some millions of long-lived objects
(sockets, each host's last status), and every status it takes lives until that host's next
one, long enough to be promoted: during a deploy to 10,000 hosts the collector ran a full
collection every 3 to 5 s, of 0.7 to 0.8 s each, 2.5 s of collector time per deploy, about
a third of the server's CPU (measured with gc.callbacks during `python -m bench fanout`).

Young collections every 50,000 allocations let most of those objects die by reference
counting, as they do anyway, before a collection copies them up: the same deploy then spent
about 0.3 s in the collector. Cyclic garbage waits a little longer, a few MiB at most. And
what exists when the server starts serving (modules, the application) is frozen: never
scanned again, since it lives as long as the process.

What a deploy keeps (each host's new status, about 14 containers; the controller's rows) is
still scanned once by a young collection and again by a middle one: with gc.callbacks in the
server during `python -m bench fanout --sims lean`, a deploy to 10,000 hosts spent 100-200
ms in three or four young collections, and every fifth deploy or so 340-570 ms more in a
middle one, all on the event loop a deploy waits for. So while a rollout runs, young
collections wait for far more allocations, and once none runs (and the clients waiting for
its end have their answer) the collector catches up at once: the same scans, off the path
of a deploy. A long rollout still collects, every BUSY_YOUNG_THRESHOLD allocations.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from server.turns import Phase, Turns, Work

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 50_000
BUSY_YOUNG_THRESHOLD = 1_000_000  # while a rollout runs (a 10,000-host deploy: ~0.5 million)
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 100
SLOW_COLLECTION_SECONDS = 0.1  # a full collection this long is logged at INFO (else DEBUG)


def tune_for_server() -> None:
    """Call once, just before serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    gc.callbacks.append(_log_full_collections)


async def collect_between_rollouts(turns: Turns) -> None:
    """Until cancelled: while a rollout runs (the scheduler's ROLLING phase), young
    collections wait for BUSY_YOUNG_THRESHOLD allocations; at the collector's turn
    (`Work.COLLECT`: no rollout under way, and those waiting for its end answered), collect
    what it left at once, with the middle generation if that is due, and go back to the
    usual thresholds."""
    try:
        while True:
            await turns.until_begins(Phase.ROLLING)
            gc.set_threshold(BUSY_YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
            await turns.wait(Work.COLLECT, float("inf"))
            gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
            started = time.perf_counter()
            generation = 1 if gc.get_count()[1] >= MIDDLE_THRESHOLD else 0
            gc.collect(generation)
            log.debug(
                "collection after a rollout (generation %d) took %.0f ms",
                generation,
                (time.perf_counter() - started) * 1000,
            )
    finally:
        gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)


async def between_rollouts(app: web.Application) -> AsyncIterator[None]:
    """An aiohttp cleanup context: collect_between_rollouts on the app's scheduler, for as
    long as the app runs (a server that called tune_for_server)."""
    from server.keys import TURNS  # here: the benchmarks' processes tune, and no more

    task = asyncio.create_task(collect_between_rollouts(app[TURNS]), name="gc-between-rollouts")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


_started: list[float] = []


def _log_full_collections(phase: str, info: dict[str, Any]) -> None:
    """Log each full collection and how long it held the event loop: at 10,000 agents one
    takes a good part of a second, the likeliest cause of one slow deploy among fast ones."""
    if info.get("generation") != 2:
        return
    if phase == "start":
        _started[:] = [time.perf_counter()]
        return
    if not _started:
        return
    took = time.perf_counter() - _started[0]
    level = logging.INFO if took >= SLOW_COLLECTION_SECONDS else logging.DEBUG
    if log.isEnabledFor(level):
        log.log(level, "full collection took %.0f ms collected=%s", took * 1000, info["collected"])
