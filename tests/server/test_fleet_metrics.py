"""Fleet gauges: set from a snapshot, updated in place, vanished hosts removed; a refresh
waits, for a bounded time, while a rollout runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from types import SimpleNamespace
from typing import Any

from server import fleet_metrics
from server.db.rollouts import FleetSnapshot
from server.fleet_metrics import FleetMetrics
from server.metrics import create_metrics
from tests.harness import running, settle


def _host(name: str, at: dt.datetime) -> SimpleNamespace:
    return SimpleNamespace(name=name, last_seen=at, connected=True)


def test_publish_sets_updates_and_removes_children() -> None:
    metrics = create_metrics()
    now = dt.datetime.now(dt.UTC)
    live = {
        "a": {"instances": [{"app": "web", "release": 2, "state": "running", "ready": True}]},
        "b": {"instances": [{"app": "web", "release": 1, "state": "running", "ready": True}]},
    }
    fleet = FleetMetrics(None, metrics, 30.0, observed_of=live.get)  # type: ignore[arg-type]
    snapshot = FleetSnapshot(
        hosts=[_host("a", now), _host("b", now)],  # type: ignore[list-item]
        current={"web": 2},
        assigned={"a": {"web": 2}, "b": {"web": 2}},
    )
    fleet.publish(snapshot, now)
    r = metrics.registry
    assert r.get_sample_value("flotilla_host_app_release", {"host": "b", "app": "web"}) == 1
    assert r.get_sample_value("flotilla_app_hosts", {"app": "web", "state": "updated"}) == 1
    assert r.get_sample_value("flotilla_app_hosts", {"app": "web", "state": "pending"}) == 1
    assert r.get_sample_value("flotilla_hosts", {"status": "connected"}) == 2

    live["b"] = live["a"]
    fleet.publish(FleetSnapshot([_host("b", now)], {"web": 2}, {"b": {"web": 2}}), now)  # type: ignore[list-item]
    assert r.get_sample_value("flotilla_host_app_release", {"host": "b", "app": "web"}) == 2
    assert r.get_sample_value("flotilla_host_app_release", {"host": "a", "app": "web"}) is None
    assert r.get_sample_value("flotilla_host_last_seen_timestamp_seconds", {"host": "a"}) is None
    assert r.get_sample_value("flotilla_hosts", {"status": "connected"}) == 1


def _fleet_refreshing_into(
    refreshes: list[float],
    idle: asyncio.Event,
    refreshed: asyncio.Event | None = None,
    answered: asyncio.Event | None = None,
) -> FleetMetrics:
    """Fleet metrics that wait on `idle` (and `answered`) and whose refreshes only note when
    they ran (and set `refreshed`)."""
    fleet = FleetMetrics(
        None,  # type: ignore[arg-type]
        create_metrics(),
        30.0,
        interval=3600,
        rollouts_idle=idle,
        answered=answered,
    )

    async def refresh() -> None:
        refreshes.append(time.monotonic())
        if refreshed is not None:
            refreshed.set()

    fleet.refresh = refresh  # type: ignore[method-assign]
    return fleet


async def test_a_refresh_waits_while_a_rollout_runs() -> None:
    refreshes: list[float] = []
    idle = asyncio.Event()  # a rollout runs
    async with running(_fleet_refreshing_into(refreshes, idle).run()):
        assert not await settle(lambda: bool(refreshes))
        idle.set()
        assert await settle(lambda: bool(refreshes))


async def test_a_refresh_waits_while_the_end_of_a_deployment_is_answered() -> None:
    refreshes: list[float] = []
    idle, answered = asyncio.Event(), asyncio.Event()
    idle.set()
    async with running(_fleet_refreshing_into(refreshes, idle, answered=answered).run()):
        assert not await settle(lambda: bool(refreshes))
        answered.set()
        assert await settle(lambda: bool(refreshes))


async def test_a_rollout_holds_a_refresh_back_for_a_bounded_time(monkeypatch: Any) -> None:
    monkeypatch.setattr(fleet_metrics, "MAX_DEFER_SECONDS", 0.05)
    refreshes: list[float] = []
    refreshed = asyncio.Event()
    fleet = _fleet_refreshing_into(refreshes, asyncio.Event(), refreshed)  # idle: never set
    started = time.monotonic()
    async with running(fleet.run()):
        await asyncio.wait_for(refreshed.wait(), 5)
    assert refreshes[0] - started >= 0.05
