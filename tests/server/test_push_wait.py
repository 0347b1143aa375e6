"""After a pass that assigned hosts, the controller plans again only once the hub has sent
them their desired state (or PUSH_WAIT_SECONDS passed): nobody can report on an assignment
before hearing of it, and a pass in the meantime only slows the push down."""

from __future__ import annotations

import asyncio
from typing import Any

from server.hub import Hub
from server.metrics import create_metrics
from server.rollout import controller as controller_module
from server.rollout.controller import Controller
from tests.harness import running, settle


def controller_with_passes(pushes: list[bool]) -> tuple[Controller, list[asyncio.Event]]:
    """A controller whose passes touch no database: pass i returns pushes[i] and sets
    passes[i]."""
    ctl = Controller(sessions=None, metrics=None, is_connected=lambda _: True)  # type: ignore[arg-type]
    ctl.pushed = asyncio.Event()
    passes = [asyncio.Event() for _ in pushes]

    async def run_once() -> bool:
        ran = sum(p.is_set() for p in passes)
        if ran == len(passes):
            return False
        passes[ran].set()
        return pushes[ran]

    ctl.run_once = run_once  # type: ignore[method-assign]
    return ctl, passes


async def test_the_pass_after_an_assignment_waits_for_the_push() -> None:
    ctl, passes = controller_with_passes([True, False])
    async with running(ctl.run()):
        ctl.wake.set()
        assert await settle(lambda: passes[0].is_set())
        ctl.wake.set()  # news arrives while the push is under way
        assert not await settle(lambda: passes[1].is_set())
        assert ctl.pushed is not None
        ctl.pushed.set()  # the hub has sent it
        assert await settle(lambda: passes[1].is_set())


async def test_a_pass_that_pushed_nothing_does_not_wait() -> None:
    ctl, passes = controller_with_passes([False, False])
    async with running(ctl.run()):
        ctl.wake.set()
        assert await settle(lambda: passes[0].is_set())
        ctl.wake.set()
        assert await settle(lambda: passes[1].is_set())


async def test_a_push_that_never_ends_holds_the_controller_back_a_second_at_most(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(controller_module, "PUSH_WAIT_SECONDS", 0.01)
    ctl, passes = controller_with_passes([True, False])
    async with running(ctl.run()):
        ctl.wake.set()
        assert await settle(lambda: passes[0].is_set())
        ctl.wake.set()
        await asyncio.wait_for(passes[1].wait(), 5)


async def test_the_hub_says_when_everything_asked_for_was_pushed() -> None:
    hub = Hub(sessions=None, metrics=create_metrics(), on_change=lambda _: None)  # type: ignore[arg-type]
    assert hub.pushed.is_set()  # nothing asked for yet
    async with running(hub._push_loop()):
        hub.request_push(["web-1", "web-2"])  # not connected: nothing to send, nothing read
        assert not hub.pushed.is_set()
        await asyncio.wait_for(hub.pushed.wait(), 5)
