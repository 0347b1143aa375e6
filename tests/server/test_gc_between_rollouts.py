"""The collector keeps off a rollout's path: while one runs, young collections wait for far
more allocations; once none runs and the clients waiting for its end are answered, the
collector catches up at once and the usual thresholds come back."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from server.gc_tuning import BUSY_YOUNG_THRESHOLD, YOUNG_THRESHOLD, collect_between_rollouts
from tests.harness import running, settle


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generations collected while the test runs; the thresholds are restored after."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            seen.append(info["generation"])

    before = gc.get_threshold()
    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)
        gc.set_threshold(*before)


def young() -> int:
    return gc.get_threshold()[0]


async def test_the_collector_waits_for_the_end_of_a_rollout(collections: list[int]) -> None:
    busy, idle, answered = asyncio.Event(), asyncio.Event(), asyncio.Event()
    idle.set()
    answered.set()
    async with running(collect_between_rollouts(busy, idle, answered)):
        busy.set()  # a rollout starts
        idle.clear()
        assert await settle(lambda: young() == BUSY_YOUNG_THRESHOLD)
        busy.clear()  # it ended; the clients waiting for it are being answered
        idle.set()
        answered.clear()
        assert not await settle(lambda: young() != BUSY_YOUNG_THRESHOLD)
        collections.clear()
        answered.set()
        assert await settle(lambda: young() == YOUNG_THRESHOLD)
        assert collections, "no collection after the rollout"
