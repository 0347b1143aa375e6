"""Readiness of instances: health probes and `min_healthy_time`, judged from the agent's host.

An instance is ready once its probe (or, without one, its running state) has held for
`min_healthy_time`. Readiness is sticky for a container id while it keeps running, so a
retired instance is stopped only after its replacement proved itself once.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from agent import metrics
from agent.protocol import Assignment, ContainerState, HealthSpec, Instance

log = logging.getLogger(__name__)

# Without a probe, an instance must keep running this long: a process that crashes at once
# is often seen "running" for a moment, and must not pass for healthy.
SETTLE_SECONDS = 1.0

CommandProbe = Callable[[str, tuple[str, ...], float], Awaitable[bool]]


# A new instance is probed as soon as the agent sees it running, and until a probe passes,
# again at these offsets from then: a process often listens within milliseconds of its start,
# and a deploy must not wait a fixed quarter second for it. These early probes can only pass:
# a failure counts toward `retries` from FIRST_PROBE_SECONDS on (as in Docker's start
# period), since a process that needs a moment to listen is no failure.
EARLY_PROBE_OFFSETS = (0.0, 0.05, 0.12)
FIRST_PROBE_SECONDS = 0.25  # the first probe whose failure counts


@dataclass
class _Track:
    first_running: float
    passing_since: float | None = None
    failures: int = 0
    last_probe: float = float("-inf")
    last_result: str = ""
    ready: bool = False
    due: float | None = None  # when this instance's readiness can next change

    @property
    def counted_from(self) -> float:
        """From then on, a failed probe counts toward `retries`."""
        return self.first_running + FIRST_PROBE_SECONDS

    def next_probe(self, health: HealthSpec) -> float:
        """When this instance is next probed: early while no probe has passed yet, then from
        `counted_from` every `interval`."""
        if self.passing_since is None:
            for offset in EARLY_PROBE_OFFSETS:
                if (at := self.first_running + offset) > self.last_probe:
                    return at
        if self.last_probe < self.counted_from:
            return self.counted_from
        return self.last_probe + health.interval


@dataclass
class ProbeResult:
    """The outcome of one probe, with a line saying why."""

    ok: bool
    detail: str


@dataclass
class HealthTracker:
    """Remembers, per container, how long it has been running and healthy."""

    command_probe: CommandProbe | None = None
    _tracks: dict[str, _Track] = field(default_factory=dict)

    async def check(
        self, assignments: Iterable[Assignment], instances: Iterable[Instance], now: float
    ) -> frozenset[str]:
        """Probe what is due and return the ids of ready containers."""
        wanted = {(a.app, a.release): a for a in assignments}
        seen: set[str] = set()
        ready: set[str] = set()
        probes = []
        unproven: list[tuple[str, _Track, HealthSpec | None, float]] = []
        for inst in instances:
            assignment = wanted.get((inst.app, inst.release))
            if assignment is None or inst.state != ContainerState.RUNNING:
                continue
            seen.add(inst.container_id)
            track = self._tracks.setdefault(inst.container_id, _Track(first_running=now))
            if track.ready:
                ready.add(inst.container_id)
                continue
            health = assignment.spec.health
            needed = assignment.spec.min_healthy_time
            if health is None:
                track.passing_since = track.first_running
                needed = max(needed, SETTLE_SECONDS)
            elif now >= track.next_probe(health):
                track.last_probe = now
                probes.append(self._probe(inst, health, track, now))
            unproven.append((inst.container_id, track, health, needed))
        if len(probes) == 1:
            await probes[0]  # the usual case, one new instance: no task to schedule
        elif probes:
            await asyncio.gather(*probes)
        for cid, track, health, needed in unproven:  # a probe that just passed counts now
            if track.passing_since is not None and now - track.passing_since >= needed:
                track.ready = True
                ready.add(cid)
            else:
                track.due = self._due(track, health, needed)
        for cid in list(self._tracks):
            if cid not in seen:
                del self._tracks[cid]
        return frozenset(ready)

    def seen_running(self, instances: Iterable[Instance], now: float) -> None:
        """Note when new instances were first seen running, without probing them: the
        agent looks right after it starts one, and the settle time counts from there."""
        for inst in instances:
            if inst.state == ContainerState.RUNNING and inst.container_id not in self._tracks:
                # its first probe is due at once: the pass that started it runs it, or
                # (the instance must run a while first) the look after acting
                self._tracks[inst.container_id] = _Track(first_running=now)

    def next_due(self) -> float | None:
        """When the readiness of some instance that has not proved itself can next change
        (its probe is due, or its min_healthy_time ends): the agent looks again then."""
        dues = [t.due for t in self._tracks.values() if not t.ready and t.due is not None]
        return min(dues, default=None)

    @staticmethod
    def _due(track: _Track, health: HealthSpec | None, needed: float) -> float:
        if health is None:
            return track.first_running + needed
        next_probe = track.next_probe(health)
        if track.passing_since is not None:
            return min(next_probe, track.passing_since + needed)
        return next_probe

    def failing(self, container_id: str, health: HealthSpec | None, now: float) -> str | None:
        """The last probe result if the instance has used up its retries, else None."""
        track = self._tracks.get(container_id)
        if track is None or health is None or track.ready:
            return None
        if now - track.first_running < health.start_period:
            return None
        if track.failures >= health.retries:
            return track.last_result
        return None

    async def _probe(self, inst: Instance, health: HealthSpec, track: _Track, now: float) -> None:
        result = await self.probe(inst, health)
        metrics.child(metrics.HEALTH_PROBES, health.type, "ok" if result.ok else "fail").inc()
        track.last_result = result.detail
        if result.ok:
            track.failures = 0
            if track.passing_since is None:
                track.passing_since = now
        else:
            if now >= track.counted_from:  # an early probe that fails is no failure yet
                track.failures += 1
            track.passing_since = None

    async def probe(self, inst: Instance, health: HealthSpec) -> ProbeResult:
        """Run one probe of `inst` now."""
        if health.type == "cmd":
            if self.command_probe is None:
                return ProbeResult(False, "command probes are not available")
            ok = await self.command_probe(inst.container_id, health.command, health.timeout)
            return ProbeResult(ok, "command exited 0" if ok else "command failed")
        published = _published(inst, health.port)
        if published is None:
            return ProbeResult(False, f"container port {health.port} is not published")
        address, port = published
        if health.type == "tcp":
            return await _tcp(address, port, health.timeout)
        return await self._http(address, port, health)

    async def _http(self, address: str, port: int, health: HealthSpec) -> ProbeResult:
        try:
            async with asyncio.timeout(health.timeout):
                status = await asyncio.to_thread(
                    _http_get, address, port, health.path, health.timeout
                )
        except (http.client.HTTPException, TimeoutError, OSError) as exc:
            return ProbeResult(False, f"GET {health.path}: {type(exc).__name__} {exc}")
        return ProbeResult(200 <= status < 400, f"GET {health.path}: HTTP {status}")


def _http_get(address: str, port: int, path: str, timeout: float) -> int:
    """GET http://address:port/path; the status code. Blocking: call it through a thread.

    The stdlib client, which the Docker SDK loads anyway: an agent that imported an async
    HTTP client for its probes alone would carry several MiB more."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "flotilla-agent health probe"})
        return conn.getresponse().status
    finally:
        conn.close()


def _published(inst: Instance, container_port: int | None) -> tuple[str, int] | None:
    """Where a probe dials the container's port: the address Docker published it on (the
    loopback address when it listens on every one), and the host port."""
    for p in inst.ports:
        if container_port is None or p.container == container_port:
            return _ANY.get(p.host_ip, p.host_ip), p.host_port
    return None


# a port published on every address is probed on the loopback one of its family
_ANY = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


async def _tcp(address: str, port: int, limit: float) -> ProbeResult:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), limit)
    except (OSError, TimeoutError) as exc:
        return ProbeResult(False, f"tcp {port}: {type(exc).__name__} {exc}")
    writer.close()
    return ProbeResult(True, f"tcp {port}: connected")
