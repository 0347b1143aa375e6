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
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 50_000
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 100
SLOW_COLLECTION_SECONDS = 0.1  # a full collection this long is logged at INFO (else DEBUG)


def tune_for_server() -> None:
    """Call once, just before serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    gc.callbacks.append(_log_full_collections)


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
