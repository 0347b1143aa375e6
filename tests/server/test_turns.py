"""The scheduler's order: background work waits for the phases it yields to, in order, and
for a bounded time each; the collector and the controller's next pass follow it too."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from server.gc_tuning import BUSY_YOUNG_THRESHOLD, YOUNG_THRESHOLD, collect_between_rollouts
from server.rollout.wakeups import Wakeups
from server.turns import WAITS_FOR, Phase, Turns, Work
from tests.harness import running, settle


@pytest.mark.parametrize("work", list(Work))
async def test_work_waits_for_each_phase_it_yields_to(work: Work) -> None:
    turns = Turns()
    for phase in WAITS_FOR[work]:
        turns.begin(phase)
    waiting = asyncio.create_task(turns.wait(work, 60))
    for phase in WAITS_FOR[work]:
        assert not await settle(waiting.done)
        turns.end(phase)
    assert await settle(waiting.done)


@pytest.mark.parametrize(
    ("work", "free_of"),
    [(Work.WRITES, Phase.PUSHING), (Work.METRICS, Phase.JUDGING), (Work.NEXT_PASS, Phase.ROLLING)],
)
async def test_work_does_not_wait_for_phases_it_does_not_yield_to(
    work: Work, free_of: Phase
) -> None:
    turns = Turns()
    turns.begin(free_of)
    await asyncio.wait_for(turns.wait(work, 60), 5)


async def test_each_wait_is_bounded_on_its_own() -> None:
    turns = Turns()
    turns.begin(Phase.JUDGING)  # never ends
    turns.begin(Phase.ANSWERING)
    waiting = asyncio.create_task(turns.wait(Work.WRITES, 0.05))
    await asyncio.wait_for(asyncio.shield(waiting), 5)  # both bounds ran out, one by one


async def test_a_phase_that_begins_again_meanwhile_is_waited_for_again() -> None:
    turns = Turns()
    turns.begin(Phase.ANSWERING)
    waiting = asyncio.create_task(turns.wait(Work.COLLECT, 60))
    assert not await settle(waiting.done)
    turns.begin(Phase.ROLLING)  # a rollout began while the collector waited for an answer
    turns.end(Phase.ANSWERING)
    assert not await settle(waiting.done)
    turns.end(Phase.ROLLING)
    assert await settle(waiting.done)


async def test_the_answer_to_an_end_lasts_a_while() -> None:
    turns = Turns(answer_seconds=0.05)
    turns.answer()
    assert turns.is_on(Phase.ANSWERING)
    await asyncio.wait_for(turns.until_over(Phase.ANSWERING, 60), 5)
    assert not turns.is_on(Phase.ANSWERING)


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generations collected while the test runs; the thresholds are restored after."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            seen.append(info["generation"])

    before = gc.get_threshold()
    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)
        gc.set_threshold(*before)


async def test_the_collector_waits_for_the_end_of_a_rollout(collections: list[int]) -> None:
    turns = Turns()

    def young() -> int:
        return gc.get_threshold()[0]

    async with running(collect_between_rollouts(turns)):
        turns.begin(Phase.ROLLING)
        assert await settle(lambda: young() == BUSY_YOUNG_THRESHOLD)
        turns.begin(Phase.ANSWERING)  # it ended; those waiting for it are being answered
        turns.end(Phase.ROLLING)
        assert not await settle(lambda: young() != BUSY_YOUNG_THRESHOLD)
        collections.clear()
        turns.end(Phase.ANSWERING)
        assert await settle(lambda: young() == YOUNG_THRESHOLD)
        assert collections, "no collection after the rollout"


async def test_news_of_a_watched_host_begins_judging() -> None:
    turns = Turns()
    wakeups = Wakeups(turns)
    assert not wakeups.host("web-1")  # no rollout watches it: nothing to judge
    assert not turns.is_on(Phase.JUDGING)
    wakeups.watch({"web-1", "web-2"}, {"web-1", "web-2"})
    assert wakeups.host("web-1")
    assert turns.is_on(Phase.JUDGING)
    assert wakeups.take() == (set(), {"web-1"})


async def test_a_rest_ends_once_every_updating_host_has_reported() -> None:
    wakeups = Wakeups(Turns())
    wakeups.watch({"web-1", "web-2", "web-3"}, {"web-1", "web-2"})
    rest = asyncio.create_task(wakeups.rest(10.0, wakeups.news))
    wakeups.host("web-1")
    assert not await settle(rest.done)
    wakeups.host("web-3")  # healthy already: not waited on
    assert not await settle(rest.done)
    wakeups.host("web-2")
    assert await settle(rest.done)


async def still_resting(wakeups: Wakeups) -> bool:
    """Does a rest after a 10 s pass, begun now, go on while the loop turns (no clock)?"""
    rest = asyncio.create_task(wakeups.rest(10.0, wakeups.news))
    try:
        return not await settle(rest.done)
    finally:
        rest.cancel()


async def test_without_an_updating_host_a_rest_is_not_cut_short() -> None:
    wakeups = Wakeups(Turns())
    wakeups.watch({"web-1", "web-2"}, set())
    assert await still_resting(wakeups)


async def test_a_deployment_queued_during_a_rest_ends_it() -> None:
    wakeups = Wakeups(Turns())
    wakeups.watch({"web-1", "web-2"}, {"web-1", "web-2"})
    rest = asyncio.create_task(wakeups.rest(10.0, wakeups.news))
    assert not await settle(rest.done)
    wakeups.deployment(7)  # an operator's action, or a new deployment: not held up
    assert await settle(rest.done)
    wakeups.take()
    wakeups.watch({"web-1"}, {"web-1"})  # the pass that took it: rests again
    assert not wakeups.pending()
    assert await still_resting(wakeups)


async def test_after_a_long_pass_a_short_silence_in_the_news_does_not_end_a_rest() -> None:
    wakeups = Wakeups(Turns())
    wakeups.watch({"web-1", "web-2", "web-3"}, {"web-1", "web-2"})
    # a pass of 0.4 s: the flood it waits for is over after 0.2 s without news, not 0.02
    rest = asyncio.create_task(wakeups.rest(0.4, wakeups.news))
    wakeups.host("web-1")
    await asyncio.sleep(0.1)  # a gap in a flood, as an agents' side pausing makes
    assert not rest.done()
    await asyncio.wait_for(rest, 0.6)  # then ended by the silence, before its 0.8 s were up
