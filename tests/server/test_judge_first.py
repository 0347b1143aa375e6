"""Statuses a rollout waits on are judged first. While a rollout has statuses to judge, the
hub holds its write of them back (a second at most): the controller judges from memory, and
a write of thousands of statuses alongside its pass only slows the pass down. The
controller's rest between passes ends once every updating host has reported: nothing more
is coming to judge together with theirs. The controller says when no rollout runs: fleet
metrics refresh then. Right after a deployment ends, the clients waiting for it are answered
before the hub writes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server import hub as hub_module
from server.db import store
from server.hub import Hub
from server.metrics import create_metrics
from server.rollout import controller as controller_module
from server.rollout.controller import Controller, _Targets
from tests.harness import running, settle


def controller(pass_body: Any = None) -> Controller:
    """A controller whose passes touch no database: each runs `pass_body(controller)`."""
    ctl = Controller(sessions=None, metrics=None, is_connected=lambda _: True)  # type: ignore[arg-type]

    async def a_pass(_changed: set[str], _pushes: set[str]) -> None:
        await asyncio.sleep(0)
        if pass_body is not None:
            pass_body(ctl)

    ctl._pass = a_pass  # type: ignore[method-assign,assignment]
    return ctl


def hub_writing_into(writes: list[bool], wrote: asyncio.Event | None = None) -> Hub:
    """A hub whose writes touch no database: each appends to `writes` (and sets `wrote`)."""
    hub = Hub(sessions=None, metrics=create_metrics(), on_change=lambda _: None)  # type: ignore[arg-type]

    async def flush(touch: bool = False) -> None:
        writes.append(touch)
        if wrote is not None:
            wrote.set()

    hub.flush = flush  # type: ignore[method-assign]
    return hub


def running_rollout(ctl: Controller, states: dict[str, str]) -> None:
    """Give `ctl` a running rollout whose hosts are in `states`."""
    now = store.now()
    rows = [
        store.Target(i, i, name, state, None, None, {}, now, now)
        for i, (name, state) in enumerate(states.items())
    ]
    ctl._targets[1] = _Targets.of(rows)
    ctl._await_news()  # as a pass leaves it


async def test_news_of_a_running_rollout_is_to_judge_until_a_pass_took_it() -> None:
    ctl = controller()
    ctl.host_changed("web-1")
    assert ctl.judged.is_set()  # no rollout runs: a status is nothing to judge
    running_rollout(ctl, {"web-1": "updating", "web-2": "updating"})
    ctl.host_changed("web-1")
    assert not ctl.judged.is_set()
    await ctl.run_once()
    assert ctl.judged.is_set()


async def test_news_during_a_pass_is_still_to_judge_after_it() -> None:
    ctl = controller(lambda c: c.host_changed("web-2"))
    running_rollout(ctl, {"web-1": "updating", "web-2": "updating"})
    ctl.host_changed("web-1")
    await ctl.run_once()
    assert not ctl.judged.is_set()


async def test_the_controller_is_busy_while_a_rollout_is_under_way() -> None:
    under_way = [False]  # what the pass finds: a deployment pending or running
    ctl = controller(lambda c: setattr(c, "_rolling", under_way[0]))
    await ctl.run_once()
    assert ctl.idle.is_set() and not ctl.busy.is_set()
    under_way[0] = True
    await ctl.run_once()
    assert ctl.busy.is_set() and not ctl.idle.is_set()
    under_way[0] = False  # it ended, or it is paused
    await ctl.run_once()
    assert ctl.idle.is_set() and not ctl.busy.is_set()
    ctl.rollout_requested()  # busy from the request on, not from the end of its first pass
    assert ctl.busy.is_set() and not ctl.idle.is_set() and ctl.wake.is_set()


async def test_a_deployment_requested_during_a_pass_keeps_the_controller_busy() -> None:
    """The API's, or the pass's own automatic rollback: not in what the pass read."""
    requests = [1]

    def a_pass(c: Controller) -> None:
        c._rolling = False
        if requests[0]:
            requests[0] -= 1
            c.rollout_requested()

    ctl = controller(a_pass)
    await ctl.run_once()
    assert ctl.busy.is_set() and not ctl.idle.is_set()
    await ctl.run_once()  # the next pass finds nothing under way
    assert ctl.idle.is_set() and not ctl.busy.is_set()


async def test_the_end_of_a_deployment_is_answered_before_background_work(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(controller_module, "ANSWER_SECONDS", 0.05)
    ctl = controller(lambda c: setattr(c, "_ended_any", True))  # each pass ends one
    await ctl.run_once()
    assert not ctl.answered.is_set()
    await asyncio.wait_for(ctl.answered.wait(), 5)


@pytest.mark.parametrize("waits_for", ["judged", "answered"])
async def test_the_hub_writes_once_the_controller_lets_it(monkeypatch: Any, waits_for: str) -> None:
    """judged: the controller has statuses to judge; answered: a deployment just ended."""
    monkeypatch.setattr(hub_module, "WRITE_GATHER_SECONDS", 0)
    monkeypatch.setattr(hub_module, "MAX_FLUSH_REST", 0)
    writes: list[bool] = []
    hub = hub_writing_into(writes)
    event = asyncio.Event()
    setattr(hub, waits_for, event)
    async with running(hub._flush_loop()):
        hub._dirty.set()
        assert not await settle(lambda: bool(writes))
        event.set()
        assert await settle(lambda: bool(writes))


async def test_a_rollout_holds_writes_back_a_second_at_most(monkeypatch: Any) -> None:
    monkeypatch.setattr(hub_module, "WRITE_GATHER_SECONDS", 0)
    monkeypatch.setattr(hub_module, "MAX_WRITE_DEFER_SECONDS", 0.01)
    wrote = asyncio.Event()
    hub = hub_writing_into([], wrote)
    hub.judged = asyncio.Event()  # never set
    async with running(hub._flush_loop()):
        hub._dirty.set()
        await asyncio.wait_for(wrote.wait(), 5)


async def test_a_rest_ends_once_every_updating_host_has_reported() -> None:
    ctl = controller()
    running_rollout(ctl, {"web-1": "updating", "web-2": "updating", "web-3": "healthy"})
    rest = asyncio.create_task(ctl._rest(10.0, ctl._news))
    ctl.host_changed("web-1")
    assert not await settle(rest.done)
    ctl.host_changed("web-3")  # healthy already: not waited on
    assert not await settle(rest.done)
    ctl.host_changed("web-2")
    assert await settle(rest.done)


async def test_without_an_updating_host_a_rest_is_not_cut_short() -> None:
    ctl = controller()
    running_rollout(ctl, {"web-1": "pending", "web-2": "healthy"})
    rest = asyncio.create_task(ctl._rest(10.0, ctl._news))
    ctl.host_changed("web-1")
    try:
        assert not await settle(rest.done)
    finally:
        rest.cancel()


async def test_the_controllers_push_goes_out_without_gathering_more(monkeypatch: Any) -> None:
    monkeypatch.setattr(hub_module, "PUSH_GATHER_SECONDS", 60.0)
    hub = hub_writing_into([])
    async with running(hub._push_loop()):
        hub.request_push(["web-1"])  # an agent's (re)connect: gathers others first
        assert not await settle(hub.pushed.is_set)
    hub = hub_writing_into([])
    async with running(hub._push_loop()):
        hub.push_now(["web-2"])  # the controller's batch, gathered already
        assert await settle(hub.pushed.is_set)  # not connected: nothing to send
