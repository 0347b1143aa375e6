"""Fleet gauges: set from a snapshot, updated in place, vanished hosts removed; a refresh
waits, for a bounded time, while a rollout runs or its end is answered (server.turns)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from types import SimpleNamespace
from typing import Any

import pytest

from agent.protocol import Instance, Status
from server import fleet_metrics
from server.db.fleet import FleetSnapshot
from server.fleet_metrics import FleetMetrics
from server.metrics import create_metrics
from server.statuses import Reported
from server.turns import Phase, Turns
from tests.harness import running, settle


def _host(name: str, at: dt.datetime) -> SimpleNamespace:
    return SimpleNamespace(name=name, last_seen=at, connected=True)


def _status(release: int) -> Reported:
    instance = Instance("c", "n", "h", "web", release, 1, 1, "running", ready=True)
    return Reported(release, Status(host="h", generation=1, instances=(instance,)))


def test_publish_sets_updates_and_removes_children() -> None:
    metrics = create_metrics()
    now = dt.datetime.now(dt.UTC)
    live = {"a": _status(2), "b": _status(1)}
    fleet = FleetMetrics(
        None,  # type: ignore[arg-type]
        metrics,
        SimpleNamespace(latest=live.get),  # type: ignore[arg-type]
        SimpleNamespace(is_connected=lambda _: True),  # type: ignore[arg-type]
        Turns(),
        30.0,
    )
    snapshot = FleetSnapshot(
        hosts=[_host("a", now), _host("b", now)],  # type: ignore[list-item]
        current={"web": 2},
        assigned={"a": {"web": 2}, "b": {"web": 2}},
        replicas={("web", 2): 1},
    )
    fleet.publish(snapshot, now)
    r = metrics.registry
    assert r.get_sample_value("flotilla_host_app_release", {"host": "b", "app": "web"}) == 1
    assert r.get_sample_value("flotilla_app_hosts", {"app": "web", "state": "updated"}) == 1
    assert r.get_sample_value("flotilla_app_hosts", {"app": "web", "state": "pending"}) == 1
    assert r.get_sample_value("flotilla_hosts", {"status": "connected"}) == 2

    live["b"] = live["a"]
    again = FleetSnapshot([_host("b", now)], {"web": 2}, {"b": {"web": 2}}, {("web", 2): 1})  # type: ignore[list-item]
    fleet.publish(again, now)
    assert r.get_sample_value("flotilla_host_app_release", {"host": "b", "app": "web"}) == 2
    assert r.get_sample_value("flotilla_host_app_release", {"host": "a", "app": "web"}) is None
    assert r.get_sample_value("flotilla_host_last_seen_timestamp_seconds", {"host": "a"}) is None
    assert r.get_sample_value("flotilla_hosts", {"status": "connected"}) == 1


def _fleet_refreshing_into(
    refreshes: list[float], turns: Turns, refreshed: asyncio.Event | None = None
) -> FleetMetrics:
    """Fleet metrics on `turns` whose refreshes only note when they ran (and set `refreshed`)."""
    fleet = FleetMetrics(
        None,  # type: ignore[arg-type]
        create_metrics(),
        SimpleNamespace(latest=lambda _: None),  # type: ignore[arg-type]
        SimpleNamespace(is_connected=lambda _: True),  # type: ignore[arg-type]
        turns,
        30.0,
        interval=3600,
    )

    async def refresh() -> None:
        refreshes.append(time.monotonic())
        if refreshed is not None:
            refreshed.set()

    fleet.refresh = refresh  # type: ignore[method-assign]
    return fleet


@pytest.mark.parametrize("phase", [Phase.ROLLING, Phase.ANSWERING])
async def test_a_refresh_waits_while_a_rollout_runs_or_its_end_is_answered(phase: Phase) -> None:
    refreshes: list[float] = []
    turns = Turns()
    turns.begin(phase)
    async with running(_fleet_refreshing_into(refreshes, turns).run()):
        assert not await settle(lambda: bool(refreshes))
        turns.end(phase)
        assert await settle(lambda: bool(refreshes))


async def test_a_rollout_holds_a_refresh_back_for_a_bounded_time(monkeypatch: Any) -> None:
    monkeypatch.setattr(fleet_metrics, "MAX_DEFER_SECONDS", 0.05)
    refreshes: list[float] = []
    refreshed = asyncio.Event()
    turns = Turns()
    turns.begin(Phase.ROLLING)  # never ends
    fleet = _fleet_refreshing_into(refreshes, turns, refreshed)
    started = time.monotonic()
    async with running(fleet.run()):
        await asyncio.wait_for(refreshed.wait(), 5)
    assert refreshes[0] - started >= 0.05
