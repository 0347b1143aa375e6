"""Pulls never block the agent (issue 20 item 4): a pull that hangs (a registry that accepts
and never answers) holds back only the app that needs its image; a newer desired state is
acted on at once, abandoning the pull it no longer needs; a pull that takes longer than the
agent's pull timeout fails with a problem and is tried again. The engine is the in-memory
fake (tests/agent/fake_driver.py), whose `hold` makes a pull hang; the real Docker Engine
with a blackhole registry is tests/e2e/test_hung_pull.py."""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.protocol import Assignment, ContainerSpec, DesiredState
from tests.agent.fake_driver import FakeEngine
from tests.agent.test_runner import HOST, Host, engine, h1, looping, make_host, name, running, web

__all__ = ["engine", "h1", "make_host"]  # fixtures


def api(release: int) -> Assignment:
    """Release `release` of app api: image api:<release>, no probe."""
    return Assignment("api", release, release, 1, ContainerSpec(image=f"api:{release}"), ())


async def test_a_hung_pull_holds_back_only_the_app_that_needs_it(
    h1: Host, engine: FakeEngine
) -> None:
    engine.hold("web:1")
    async with looping(h1):
        h1.agent.accept(DesiredState(HOST, 1, (api(1), web(1))))
        status = await h1.inbox.wait_for(lambda s: any(i.app == "api" for i in s.instances))
        assert [i.app for i in status.instances if i.state == "running"] == ["api"]
        assert status.problems == ()  # pulling is no problem
        assert h1.agent.pulls.pulling() == {"web:1"}

        engine.release("web:1")
        await h1.inbox.wait_for(lambda s: any(i.ready for i in running(s, 1)))
    assert ("pull", "web:1") in engine.steps


async def test_a_newer_desired_state_is_acted_on_at_once_while_a_pull_hangs(
    h1: Host, engine: FakeEngine
) -> None:
    await h1.deploy(1, web(1))
    engine.hold("web:2")
    async with looping(h1):
        h1.agent.accept(DesiredState(HOST, 2, (web(2, stop_first=True),)))
        await h1.inbox.wait_for(lambda s: s.generation == 2)
        assert engine.pulls_begun[-1] == "web:2"
        # stop-first: nothing is stopped before the new image is there
        assert [(i.release, i.state) for i in engine.of(HOST)] == [(1, "running")]

        asked = time.monotonic()
        h1.agent.accept(DesiredState(HOST, 3, (web(3),)))  # supersedes release 2
        status = await h1.inbox.wait_for(
            lambda s: s.generation == 3 and any(i.ready for i in running(s, 3))
        )
        assert time.monotonic() - asked < 2.0
        assert h1.agent.pulls.pulling() == frozenset()  # the pull of web:2 was abandoned
    assert [i.name for i in running(status, 3)] == [name(3)]
    assert ("pull", "web:2") not in engine.steps


async def test_a_pull_longer_than_the_timeout_fails_and_is_tried_again(
    make_host: Callable[..., Host], engine: FakeEngine
) -> None:
    host = make_host(pull_timeout=0.3)
    engine.hold("web:1")
    async with looping(host):
        host.agent.accept(DesiredState(HOST, 1, (web(1),)))
        status = await host.inbox.wait_for(lambda s: bool(s.problems))
        (problem,) = status.problems
        assert problem.reason == "pull_failed" and problem.release == 1
        assert "did not finish within 0.3s" in problem.message

        engine.release("web:1")
        host.clock.advance(120)  # past its retry's backoff
        host.agent.wake.set()
        status = await host.inbox.wait_for(lambda s: any(i.ready for i in running(s, 1)))
    assert status.problems == ()
