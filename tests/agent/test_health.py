"""When a new instance is probed, when it is ready, and which failed probes count.

A new instance is probed as soon as the agent sees it running, again after 0.05 and 0.12 s
until a probe passes, and from 0.25 s on every `interval`: only those later failures count
toward `retries`. The pass that starts an instance with a probe (and no minimum healthy time)
probes it at once, so a deploy whose new instance is up at once is one pass and one status.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from agent.health import EARLY_PROBE_OFFSETS, FIRST_PROBE_SECONDS, HealthTracker
from agent.protocol import (
    Assignment,
    ContainerSpec,
    DesiredState,
    HealthSpec,
    Instance,
    PublishedPort,
)
from agent.reconcile import Remove, Run, Start, Stop, ready_at_probe

PROBE = HealthSpec(type="cmd", command=("true",), interval=0.5, retries=1)
PROBED = ContainerSpec(image="web:2", health=PROBE)
UNPROBED = ContainerSpec(image="web:2")
SETTLING = ContainerSpec(image="web:2", health=PROBE, min_healthy_time=5.0)
T0 = 1000.0


def desired(spec: ContainerSpec) -> DesiredState:
    return DesiredState("h1", 1, assignments=(Assignment("web", 2, 7, 1, spec),))


def instance() -> Instance:
    return Instance("c2", "web-2-0", "h1", "web", 2, 0, 7, "running")


class Probe:
    """A command probe that answers from a script of results and records when it ran."""

    def __init__(self, *results: bool) -> None:
        self.results = list(results)
        self.calls = 0

    async def __call__(self, container_id: str, command: tuple[str, ...], limit: float) -> bool:
        self.calls += 1
        return self.results.pop(0)


def check(tracker: HealthTracker, now: float, spec: ContainerSpec = PROBED) -> frozenset[str]:
    state = desired(spec)
    return asyncio.run(tracker.check(state.assignments, [instance()], now))


def test_an_instance_that_answers_at_once_is_ready_at_first_sight() -> None:
    probe = Probe(True)
    tracker = HealthTracker(command_probe=probe)
    tracker.seen_running([instance()], T0)
    assert check(tracker, T0 + 0.001) == {"c2"}
    assert probe.calls == 1


def test_early_probes_come_quickly_and_their_failures_do_not_count() -> None:
    probe = Probe(False, False, False, True)
    tracker = HealthTracker(command_probe=probe)
    tracker.seen_running([instance()], T0)
    for offset in EARLY_PROBE_OFFSETS:
        assert check(tracker, T0 + offset) == frozenset()
        assert tracker.failing("c2", PROBE, T0 + offset) is None  # retries=1, yet no failure
    assert tracker.next_due() == T0 + FIRST_PROBE_SECONDS
    assert check(tracker, T0 + FIRST_PROBE_SECONDS) == {"c2"}
    assert probe.calls == len(EARLY_PROBE_OFFSETS) + 1


def test_the_next_early_probe_is_due_after_a_failed_one() -> None:
    tracker = HealthTracker(command_probe=Probe(False))
    tracker.seen_running([instance()], T0)
    check(tracker, T0)
    assert tracker.next_due() == T0 + EARLY_PROBE_OFFSETS[1]


def test_failures_count_from_the_first_counted_probe_on() -> None:
    probe = Probe(*[False] * (len(EARLY_PROBE_OFFSETS) + 1))
    tracker = HealthTracker(command_probe=probe)
    tracker.seen_running([instance()], T0)
    for offset in EARLY_PROBE_OFFSETS:
        check(tracker, T0 + offset)
    check(tracker, T0 + FIRST_PROBE_SECONDS)
    assert tracker.failing("c2", PROBE, T0 + FIRST_PROBE_SECONDS) == "command failed"
    assert tracker.next_due() == T0 + FIRST_PROBE_SECONDS + PROBE.interval


def test_a_probe_is_not_repeated_before_it_is_due() -> None:
    probe = Probe(False)
    tracker = HealthTracker(command_probe=probe)
    tracker.seen_running([instance()], T0)
    check(tracker, T0)
    check(tracker, T0 + 0.01)  # a pass for something else, between early probes
    assert probe.calls == 1


def test_a_pass_probes_at_once_what_may_be_ready_at_once() -> None:
    state = desired(PROBED)
    assert ready_at_probe(Run(state.assignments[0], 0, "n"), state)
    assert ready_at_probe(Start("c1", "web", 2), state)


def test_an_instance_that_must_run_a_while_is_not_probed_in_its_pass() -> None:
    for spec in (UNPROBED, SETTLING):
        state = desired(spec)
        assert not ready_at_probe(Run(state.assignments[0], 0, "n"), state)
        assert not ready_at_probe(Start("c1", "web", 2), state)


def test_other_actions_and_unknown_releases_are_not_probed_in_their_pass() -> None:
    state = desired(PROBED)
    assert not ready_at_probe(Start("c1", "web", 1), state)  # not the assigned release
    assert not ready_at_probe(Stop("c0", "web", 1), state)
    assert not ready_at_probe(Remove("c0", "web", 1), state)


def test_http_and_tcp_probes_dial_the_address_the_port_is_published_on() -> None:
    """A port published on 127.0.0.2 (or a LAN address) is probed there, not on 127.0.0.1,
    where nothing listens; one published on every address is probed on the loopback one."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def main() -> list[bool]:
        server = await asyncio.start_server(answer, "127.0.0.2", 0)
        port = server.sockets[0].getsockname()[1]
        tracker = HealthTracker()
        results = []
        try:
            for host_ip, kind in [("127.0.0.2", "http"), ("127.0.0.2", "tcp"), ("", "http")]:
                published = (PublishedPort(container=80, host_ip=host_ip, host_port=port),)
                inst = replace(instance(), ports=published)
                health = HealthSpec(type=kind, port=80, path="/", timeout=2.0)
                results.append((await tracker.probe(inst, health)).ok)
        finally:
            server.close()
            await server.wait_closed()
        return results

    # on 127.0.0.1 nothing listens on that port: the last probe fails
    assert asyncio.run(main()) == [True, True, False]
