"""One judgement, three readers: the rollout controller, GET /v1/apps/{app} and the fleet
gauges all take a host's state for an assigned release from `judgement.judge`. One table of
cases, run against the function and against what each reader shows."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from agent.protocol import AppProblem, Instance, Status
from server.api.views import app_out
from server.db.fleet import FleetSnapshot
from server.fleet_metrics import FleetMetrics
from server.metrics import create_metrics
from server.rollout.judgement import Wanted, judge
from server.states import TargetState
from server.statuses import Reported
from server.turns import Turns

NOW = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


def inst(release: int, state: str = "running", ready: bool = True, app: str = "web") -> Instance:
    return Instance(
        container_id=f"c{release}{state}{ready}{app}",
        name="n",
        host="h",
        app=app,
        release=release,
        replica=1,
        deployment=1,
        state=state,
        ready=ready,
    )


def problem(
    release: int, reason: str = "unhealthy", message: str = "health check failed"
) -> AppProblem:
    return AppProblem(app="web", release=release, reason=reason, message=message)


def status(*instances: Instance, problems: tuple[AppProblem, ...] = ()) -> Status:
    return Status(host="h", generation=1, instances=instances, problems=problems)


# (status, replicas, verdict) for release 2 of app "web"
CASES = [
    (None, 1, TargetState.PENDING),
    (status(), 1, TargetState.PENDING),
    (status(inst(1)), 1, TargetState.PENDING),  # only the old release
    (status(inst(2), inst(2)), 2, TargetState.HEALTHY),
    (status(inst(2)), 2, TargetState.UPDATING),  # one replica of two
    (status(inst(2), inst(2, ready=False)), 2, TargetState.UPDATING),  # one not ready yet
    (status(inst(2), inst(1)), 1, TargetState.UPDATING),  # the old release still runs
    (status(inst(2), inst(1, "exited")), 1, TargetState.HEALTHY),  # kept, stopped
    (status(inst(2), inst(1, app="db")), 1, TargetState.HEALTHY),  # another app's
    (status(inst(2, "exited", ready=False)), 1, TargetState.UPDATING),
    (status(inst(2), problems=(problem(2),)), 1, TargetState.FAILED),
    (status(inst(2), problems=(problem(1),)), 1, TargetState.HEALTHY),  # an old problem
    (status(problems=(problem(2, "pull_failed", "no such image"),)), 1, TargetState.FAILED),
]
GAUGED = {"healthy": "healthy", "failed": "unhealthy", "updating": "pending", "pending": "pending"}


@pytest.mark.parametrize(("seen", "replicas", "verdict"), CASES)
def test_the_judgement(seen: Status | None, replicas: int, verdict: TargetState) -> None:
    assert judge(Wanted("web", 2, replicas), seen).state == verdict


@pytest.mark.parametrize(("seen", "replicas", "verdict"), CASES)
def test_get_app_shows_the_judgement(
    seen: Status | None, replicas: int, verdict: TargetState
) -> None:
    app = SimpleNamespace(name="web", current_release=2, created_at=NOW)
    host = SimpleNamespace(id=7, name="h")
    out = app_out(app, None, [host], {7: 2}, {"h": Reported(1, seen)}, lambda _: replicas)  # type: ignore[arg-type]
    assert [h.state for h in out.hosts] == [verdict]


@pytest.mark.parametrize(("seen", "replicas", "verdict"), CASES)
def test_the_fleet_gauges_count_the_judgement(
    seen: Status | None, replicas: int, verdict: TargetState
) -> None:
    metrics = create_metrics()
    statuses = SimpleNamespace(latest=lambda _: Reported(1, seen), seq=1)
    presence = SimpleNamespace(is_connected=lambda _: True)
    fleet = FleetMetrics(None, metrics, statuses, presence, Turns(), 30.0)  # type: ignore[arg-type]
    snapshot = FleetSnapshot(
        hosts=[SimpleNamespace(name="h", last_seen=NOW, connected=True)],
        current={"web": 2},
        assigned={"h": {"web": 2}},
        replicas={("web", 2): replicas},
    )
    fleet.publish(snapshot, NOW)
    value = metrics.registry.get_sample_value(
        "flotilla_app_hosts", {"app": "web", "state": GAUGED[verdict]}
    )
    assert value == 1


def test_the_judgement_carries_the_evidence() -> None:
    seen = status(inst(2), problems=(problem(2, "pull_failed", "no such image"),))
    verdict = judge(Wanted("web", 2, 1, "web:2"), seen)
    assert (verdict.problem, verdict.pull_error, verdict.pulled) == (
        "no such image",
        "no such image",
        False,
    )
    pulled = Status(host="h", generation=1, digests=(("web:2", "sha256:x"),))
    assert judge(Wanted("web", 2, 1, "web:2"), pulled).pulled
