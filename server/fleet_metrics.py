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
from collections.abc import Callable
from typing import Any

from prometheus_client import Gauge

from server.db import rollouts
from server.db.session import Sessions
from server.db.store import as_utc, now
from server.loops import unit_of_work, wait_all_set, wait_set
from server.metrics import Metrics

log = logging.getLogger(__name__)

REFRESH_SHARE = 40  # wait at least this many times as long as the last refresh took
MAX_PAUSE_SECONDS = 15.0  # but never longer than a usual Prometheus scrape interval
# While a rollout runs, a refresh waits for it to end (this long at most): both need the one
# event loop. A refresh at 10,000 hosts costs 115-165 ms of CPU in-process, and up to 235 ms
# inside a deploy to them, which it slowed by as much (py-spy; waiting only while statuses
# were to judge, it still ran in the gap between the first pass and the first status). A
# fan-out to 10,000 hosts takes 1.1-2 s; a rolling deploy's refreshes come this much later.
# Nor does it run while the clients waiting for a deployment's end are answered.
MAX_DEFER_SECONDS = 3.0


class FleetMetrics:
    def __init__(
        self,
        sessions: Sessions,
        metrics: Metrics,
        host_timeout: float,
        interval: float = 5.0,
        observed_of: Callable[[str], dict[str, Any] | None] = lambda _: None,
        rollouts_idle: asyncio.Event | None = None,
        answered: asyncio.Event | None = None,
    ) -> None:
        self.observed_of = observed_of
        self.rollouts_idle = rollouts_idle  # the controller's: set while no rollout runs
        self.answered = answered  # the controller's: clear while an end's waiters are answered
        self._children: dict[Gauge, dict[tuple[str, ...], Any]] = {}
        self.sessions = sessions
        self.metrics = metrics
        self.host_timeout = host_timeout
        self.interval = interval
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            await wait_all_set((self.rollouts_idle, self.answered), MAX_DEFER_SECONDS)
            started = time.perf_counter()
            try:
                await unit_of_work(self.refresh())
            except Exception:
                log.exception("fleet metrics refresh failed")
            # a refresh reads every host: on a large fleet, wait longer between them so they
            # never take more than 1/REFRESH_SHARE of the time (20% of an idle server at
            # 10,000 hosts with a fixed 5 s)
            took = time.perf_counter() - started
            pause = min(max(self.interval, REFRESH_SHARE * took), MAX_PAUSE_SECONDS)
            await wait_set(self.wake, pause)
            self.wake.clear()

    async def refresh(self) -> None:
        async with self.sessions() as session:
            snapshot = await rollouts.fleet_snapshot(session)
        self.publish(snapshot, now())

    def publish(self, snapshot: rollouts.FleetSnapshot, at: dt.datetime) -> None:
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
            statuses["connected" if host.connected and fresh else "disconnected"] += 1
            if seen is not None:
                values[m.host_last_seen][(host.name,)] = seen.timestamp()
            # a host's instances come from its live status (connected hosts only: what a
            # disconnected host runs is unknown, and it shows in flotilla_hosts)
            live = self.observed_of(host.name) or {}
            instances: list[dict[str, Any]] = live.get("instances", [])
            problems = {(p.get("app"), p.get("release")) for p in live.get("problems", [])}
            running: dict[str, int] = {}
            for inst in instances:
                app = str(inst.get("app"))
                state = str(inst.get("state"))
                instance_states[(app, "ready" if inst.get("ready") else state)] += 1
                if state == "running":
                    running[app] = max(running.get(app, 0), int(inst.get("release", 0)))
            for app, release in running.items():
                values[m.host_app_release][(host.name, app)] = release
            for app, assigned in snapshot.assigned.get(host.name, {}).items():
                current = snapshot.current.get(app)
                mine = [
                    i for i in instances if i.get("app") == app and i.get("release") == assigned
                ]
                if current is not None and running.get(app) == current:
                    app_states[(app, "updated")] += 1
                if not mine or not all(i.get("state") == "running" for i in mine):
                    app_states[(app, "pending")] += 1
                elif (app, assigned) in problems or not all(i.get("ready") for i in mine):
                    app_states[(app, "unhealthy")] += 1
                else:
                    app_states[(app, "healthy")] += 1
        for status in ("connected", "disconnected"):
            values[m.hosts][(status,)] = statuses[status]
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
