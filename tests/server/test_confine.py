"""An agent speaks for its own host and for what it was told of, nothing more (pure rules,
server/confine.py), and an intake caps each connection's rate without losing the newest
status (server/intake.py, with a test clock)."""

from __future__ import annotations

import asyncio

import pytest

from agent.codec import encode
from agent.protocol import (
    AppProblem,
    Assignment,
    ContainerSpec,
    DesiredState,
    Event,
    Instance,
    Prepull,
    Status,
)
from server.confine import Told, confine_status, event_refusal, told_of
from server.intake import Intake
from server.metrics import create_metrics
from server.statuses import StatusStore
from server.turns import Turns

TOLD = Told(frozenset({"web", "api"}), frozenset({"web:2", "api:1"}))


def inst(app: str, host: str = "h1") -> Instance:
    return Instance(f"c-{app}-{host}", "n", host, app, 1, 1, 1, "running", ready=True)


def test_what_a_desired_state_tells_its_host() -> None:
    desired = DesiredState(
        host="h1",
        generation=3,
        assignments=(Assignment("web", 2, 5, 1, ContainerSpec(image="web:2")),),
        prepull=(Prepull("api", 1, "api:1"),),
    )
    assert told_of(desired) == TOLD


def test_a_status_keeps_only_what_the_host_was_told_of() -> None:
    status = Status(
        host="h1",
        generation=1,
        instances=(inst("web"), inst("db"), inst("web", host="h2")),
        digests=(("web:2", "sha256:a"), ("db:9", "sha256:b")),
        problems=(AppProblem("api", 1, "pull_failed", "x"), AppProblem("db", 9, "exited", "y")),
    )
    kept, cut = confine_status(status, "h1", TOLD)
    assert [i.app for i in kept.instances] == ["web"]
    assert kept.digests == (("web:2", "sha256:a"),)
    assert [p.app for p in kept.problems] == ["api"]
    assert cut == 3  # two instances and a problem; the foreign digest is dropped uncounted
    whole = Status(host="h1", generation=1, instances=(inst("web"),))
    assert confine_status(whole, "h1", TOLD) == (whole, 0)  # nothing to cut: the same object


@pytest.mark.parametrize(
    ("event", "refusal"),
    [
        (Event("h1", "drift_healed", "web", "restarted"), None),
        (Event("h1", "drift_healed", "db", "restarted"), "foreign"),
        (Event("h1", "deployment_succeeded", "web", "forged"), "kind"),
        (Event("h1", "host_connected", "web", "forged"), "kind"),
    ],
)
def test_an_agent_emits_only_what_it_can_witness(event: Event, refusal: str | None) -> None:
    assert event_refusal(event, TOLD) == refusal


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_past_the_rate_the_newest_status_waits_and_is_not_lost() -> None:
    metrics = create_metrics()
    store = StatusStore(None, Turns())  # type: ignore[arg-type]  # nothing is written
    recorded: list[int] = []
    clock = Clock()
    intake = Intake(
        7, "h1", store, metrics, lambda s: recorded.append(s.generation), lambda e: None,
        lambda e: None, rate=10.0, burst=2.0, clock=clock,
    )  # fmt: skip
    intake.told(TOLD)
    for generation in range(1, 6):  # 5 statuses at once: 2 taken, the newest waits
        intake.take(encode(Status(host="h1", generation=generation, instances=(inst("web"),))))
    assert recorded == [1, 2]
    refused = metrics.registry.get_sample_value
    assert refused("flotilla_agent_reports_refused_total", {"reason": "rate"}) == 3
    clock.now += 1.0
    await asyncio.sleep(0.15)  # the timer for the next token (0.1 s at 10 a second)
    assert recorded == [1, 2, 5]
    latest = store.latest("h1")
    assert latest is not None and latest.status is not None and latest.status.generation == 5


async def test_a_status_sent_before_the_push_is_recorded_again_when_the_host_is_told() -> None:
    store = StatusStore(None, Turns())  # type: ignore[arg-type]
    intake = Intake(7, "h1", store, create_metrics(), lambda s: None, print, lambda e: None)
    intake.take(encode(Status(host="h1", generation=1, instances=(inst("web"),))))
    before = store.latest("h1")
    assert before is not None and before.status is not None and before.status.instances == ()
    intake.told(TOLD)  # the push that assigned web reached it
    after = store.latest("h1")
    assert after is not None and after.status is not None
    assert [i.app for i in after.status.instances] == ["web"]
    assert after.seq > before.seq


async def test_the_engine_going_down_and_back_is_told_once_each() -> None:
    """Issue 20: an agent's status says its Docker Engine does not answer; the hub hears of
    each change once (an event and a webhook each), not of every status."""
    store = StatusStore(None, Turns())  # type: ignore[arg-type]
    changes: list[str | None] = []
    intake = Intake(7, "h1", store, create_metrics(), lambda s: None, changes.append, print)
    down = "Docker Engine unavailable: connection refused"
    for generation, error in enumerate([None, down, down, None, None], start=1):
        intake.take(encode(Status(host="h1", generation=generation, engine_error=error)))
        await asyncio.sleep(0.06)  # within the host's rate
    assert changes == [down, None]
