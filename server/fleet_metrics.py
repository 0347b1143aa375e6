"""Fleet gauges (hosts, releases per host, app progress), refreshed from the database.

Prometheus collects synchronously, so the gauges are a snapshot refreshed every few seconds
by a thin loop; the database stays the source of truth when several servers share it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter
from typing import Any, Protocol

from prometheus_client import Gauge

from agent.protocol import ContainerState
from server.db import fleet
from server.db.session import Sessions
from server.db.store import as_utc, now
from server.loops import log_failure, unit_of_work
from server.metrics import Metrics
from server.rollout import judgement
from server.rollout.judgement import Wanted, judge
from server.states import HostStatus, TargetState, host_status
from server.statuses import StatusReader
from server.turns import Turns, Work

log = logging.getLogger(__name__)

REFRESH_SHARE = 40  # wait at least this many times as long as the last refresh took
MAX_PAUSE_SECONDS = 15.0  # but never longer than a usual Prometheus scrape interval
# A refresh yields to a rollout under way, and then to the answer to its end, this long at
# most each (server.turns): longer than a fan-out to 10,000 hosts takes.
MAX_DEFER_SECONDS = 3.0
# flotilla_app_hosts' states, from the judgement's verdicts
_GAUGED = {
    TargetState.HEALTHY: "healthy",
    TargetState.FAILED: "unhealthy",
    TargetState.UPDATING: "pending",
    TargetState.PENDING: "pending",
}


class Presence(Protocol):
    """Who is connected: the hub."""

    def is_connected(self, host: str) -> bool:
        """Does this process hold the host's agent connection?"""
        ...


class FleetMetrics:
    """Refreshes the fleet gauges from the database and the hosts' statuses."""

    def __init__(
        self,
        sessions: Sessions,
        metrics: Metrics,
        statuses: StatusReader,
        presence: Presence,
        turns: Turns,
        host_timeout: float,
        interval: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.statuses = statuses
        self.presence = presence
        self.turns = turns
        self.host_timeout = host_timeout
        self.interval = interval
        self._children: dict[Gauge, dict[tuple[str, ...], Any]] = {}

    async def run(self) -> None:
        """Refresh at the fleet gauges' turn (server.turns), until cancelled."""
        while True:
            await self.turns.wait(Work.METRICS, MAX_DEFER_SECONDS)
            started = time.perf_counter()
            try:
                await unit_of_work(self.refresh())
            except Exception as exc:
                log_failure(log, "fleet metrics refresh", exc)
            # a refresh reads every host: on a large fleet, wait longer between them so they
            # never take more than 1/REFRESH_SHARE of the time (20% of an idle server at
            # 10,000 hosts with a fixed 5 s)
            took = time.perf_counter() - started
            pause = min(max(self.interval, REFRESH_SHARE * took), MAX_PAUSE_SECONDS)
            await asyncio.sleep(pause)

    async def refresh(self) -> None:
        """Read a fleet snapshot and publish it."""
        async with self.sessions() as session:
            snapshot = await fleet.fleet_snapshot(session)
        self.publish(snapshot, now())

    def publish(self, snapshot: fleet.FleetSnapshot, at: dt.datetime) -> None:
        """Set every fleet gauge from the snapshot (no await in between: a scrape sees all of
        it or none). Children are updated in place and only vanished ones removed: creating
        ten thousand labelled children every few seconds was most of an idle server's CPU."""
        m = self.metrics
        values: dict[Gauge, dict[tuple[str, ...], float]] = {
            g: {} for g in (m.host_app_release, m.app_hosts, m.hosts, m.host_last_seen, m.instances)
        }
        statuses: Counter[str] = Counter()
        app_states: Counter[tuple[str, str]] = Counter()
        instance_states: Counter[tuple[str, str]] = Counter()
        for host in snapshot.hosts:
            seen = as_utc(host.last_seen)
            fresh = seen is not None and (at - seen).total_seconds() <= self.host_timeout
            if seen is not None:
                values[m.host_last_seen][(host.name,)] = seen.timestamp()
            # what a host runs comes from its last status, for connected hosts only: what a
            # disconnected host runs is unknown, and it shows in flotilla_hosts
            reported = (
                self.statuses.latest(host.name) if self.presence.is_connected(host.name) else None
            )
            status = reported.status if reported is not None else None
            error = status.engine_error if status is not None else None
            statuses[host_status(host.connected and fresh, error)] += 1
            running: dict[str, int] = {}
            for inst in status.instances if status is not None else ():
                shown = "ready" if judgement.ready(inst) else inst.state
                instance_states[(inst.app, shown)] += 1
                if inst.state == ContainerState.RUNNING:
                    running[inst.app] = max(running.get(inst.app, 0), inst.release)
            for app, release in running.items():
                values[m.host_app_release][(host.name, app)] = release
            for app, assigned in snapshot.assigned.get(host.name, {}).items():
                current = snapshot.current.get(app)
                if current is not None and running.get(app) == current:
                    app_states[(app, "updated")] += 1
                verdict = judge(
                    Wanted(app, assigned, snapshot.replicas.get((app, assigned), 1)), status
                )
                app_states[(app, _GAUGED[verdict.state])] += 1
        for host_state in HostStatus:
            values[m.hosts][(host_state.value,)] = statuses[host_state]
        for app in snapshot.current:
            for state in ("updated", "healthy", "unhealthy", "pending"):
                values[m.app_hosts][(app, state)] = app_states[(app, state)]
        for (app, state), count in instance_states.items():
            values[m.instances][(app, state)] = count
        for gauge, wanted in values.items():
            known = self._children.setdefault(gauge, {})
            for labels in set(known) - set(wanted):
                gauge.remove(*labels)
                del known[labels]
            for labels, value in wanted.items():
                child = known.get(labels)
                if child is None:
                    child = known[labels] = gauge.labels(*labels)
                child.set(value)
