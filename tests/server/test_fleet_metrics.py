"""Fleet gauges: set from a snapshot, updated in place, vanished hosts removed."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from server.db.rollouts import FleetSnapshot
from server.fleet_metrics import FleetMetrics
from server.metrics import create_metrics


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
