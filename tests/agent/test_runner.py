"""The agent's reconcile loop (`agent.runner.Agent`) through its public interface.

Each test gives the agent a desired state (`accept`), lets it act (`run_once`, or the `run`
loop woken by the push) and looks at what a user would see: the statuses and events it sent
and the containers in the engine. The engine is tests/agent/fake_driver.py, an in-memory
stand-in for the runner's logic only; the Docker integration is tested end to end against a
real engine (tests/e2e). The clock is the test's: a health probe's timing moves only when a
test advances it, so nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from agent.health import FIRST_PROBE_SECONDS, HealthTracker
from agent.protocol import (
    AppProblem,
    Assignment,
    ContainerSpec,
    DesiredState,
    Event,
    HealthSpec,
    Instance,
    Message,
    PortSpec,
    Status,
)
from agent.reconcile import container_name
from agent.runner import Agent
from tests.agent.fake_driver import FakeDriver, FakeEngine, digest_of

HOST = "h1"
PROBE = HealthSpec(type="cmd", command=("ready",), interval=0.5, retries=1)
WAIT_SECONDS = 5.0  # for the `run` loop to do what a test waits for; it takes milliseconds


def web(
    release: int, replicas: int = 1, *, stop_first: bool = False, keep: tuple[int, ...] = ()
) -> Assignment:
    """Release `release` of app web: image web:<release>, a command probe, start-first."""
    spec = ContainerSpec(image=f"web:{release}", health=PROBE, stop_first=stop_first)
    return Assignment("web", release, release, replicas, spec, keep)


def name(release: int, replica: int = 0, host: str = HOST) -> str:
    return container_name("web", release, replica, host)


class Clock:
    """The agent's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Inbox:
    """Where the agent's messages go: what the server would receive."""

    messages: list[Message] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)
        self.arrived.set()

    @property
    def statuses(self) -> list[Status]:
        return [m for m in self.messages if isinstance(m, Status)]

    @property
    def events(self) -> list[Event]:
        return [m for m in self.messages if isinstance(m, Event)]

    @property
    def status(self) -> Status:
        """The last status sent."""
        assert self.statuses, "no status was sent"
        return self.statuses[-1]

    async def wait_for(self, seen: Callable[[Status], bool]) -> Status:
        """Wait until a status that `seen` accepts arrives; return it."""
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                for status in reversed(self.statuses):
                    if seen(status):
                        return status
                self.arrived.clear()
                await self.arrived.wait()


@dataclass
class Host:
    """One agent on the shared fake engine, and what it sent."""

    agent: Agent
    inbox: Inbox
    clock: Clock

    async def apply(self, desired: DesiredState) -> Status:
        """Push `desired`, let one pass act on it, and return the status it ended with."""
        assert self.agent.accept(desired)
        await self.agent.run_once()
        return self.inbox.status

    async def deploy(self, generation: int, *assignments: Assignment) -> Status:
        """`apply` a desired state of these assignments."""
        return await self.apply(DesiredState(self.agent.host, generation, assignments))


def running(status: Status, release: int) -> list[Instance]:
    """The instances of web `release` in `status` that run."""
    return [i for i in status.instances if i.release == release and i.state == "running"]


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    e = FakeEngine()
    yield e
    e.release_all()  # no pull thread is left waiting


@pytest.fixture
def make_host(engine: FakeEngine) -> Callable[..., Host]:
    def make(
        host: str = HOST, retain: int = 2, poll_interval: float = 60.0, pull_timeout: float = 300.0
    ) -> Host:
        driver = FakeDriver(engine, host)

        async def command_probe(container_id: str, command: tuple[str, ...], _: float) -> bool:
            return await asyncio.to_thread(driver.exec_ok, container_id, command)

        clock = Clock()
        agent = Agent(
            host,
            driver,
            retain=retain,
            poll_interval=poll_interval,
            health=HealthTracker(command_probe=command_probe),
            clock=clock,
            pull_timeout=pull_timeout,
        )
        inbox = Inbox()
        agent.attach(inbox)
        return Host(agent, inbox, clock)

    return make


@pytest.fixture
def h1(make_host: Callable[..., Host]) -> Host:
    return make_host()


@contextlib.asynccontextmanager
async def looping(host: Host) -> AsyncIterator[Host]:
    """`host` with its `run` loop going, as in a real agent, until the block ends."""
    task = asyncio.create_task(host.agent.run())
    try:
        yield host
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_new_release_is_pulled_started_and_reported_with_its_instances(
    h1: Host, engine: FakeEngine
) -> None:
    status = await h1.deploy(1, web(1, replicas=2))

    assert engine.steps == [("pull", "web:1"), ("run", name(1, 0)), ("run", name(1, 1))]
    assert status.host == HOST and status.generation == 1
    assert sorted((i.name, i.state, i.ready) for i in status.instances) == [
        (name(1, 0), "running", True),
        (name(1, 1), "running", True),
    ]
    assert status.digests == (("web:1", digest_of("web:1")),)
    assert status.problems == ()


async def test_a_push_wakes_the_running_loop(h1: Host, engine: FakeEngine) -> None:
    async with looping(h1):  # its poll interval is a minute: only the push can wake it
        h1.agent.accept(DesiredState(HOST, 1, (web(1),)))

        status = await h1.inbox.wait_for(lambda s: any(i.ready for i in running(s, 1)))

    assert status.generation == 1
    assert [i.name for i in engine.of(HOST)] == [name(1)]


async def test_the_loop_tries_again_after_a_pass_that_failed(
    make_host: Callable[..., Host], engine: FakeEngine
) -> None:
    host = make_host(poll_interval=0.05)
    engine.list_failures = 1  # the first pass cannot read the engine
    async with looping(host):
        host.agent.accept(DesiredState(HOST, 1, (web(1),)))

        await host.inbox.wait_for(lambda s: any(i.ready for i in running(s, 1)))

    assert engine.list_failures == 0


async def test_start_first_runs_the_new_release_then_stops_the_old_one(
    h1: Host, engine: FakeEngine
) -> None:
    await h1.deploy(1, web(1))
    engine.steps.clear()

    status = await h1.deploy(2, web(2))

    assert engine.steps == [("pull", "web:2"), ("run", name(2)), ("stop", name(1))]
    assert [(i.name, i.ready) for i in running(status, 2)] == [(name(2), True)]
    assert running(status, 1) == []


async def test_start_first_keeps_the_old_release_serving_until_the_new_one_is_ready(
    h1: Host, engine: FakeEngine
) -> None:
    await h1.deploy(1, web(1))
    engine.unhealthy.add("web:2")

    status = await h1.deploy(2, web(2))

    assert [i.ready for i in running(status, 2)] == [False]
    assert [i.name for i in running(status, 1)] == [name(1)]  # still serving

    engine.unhealthy.clear()  # its process now answers its probe
    h1.clock.advance(FIRST_PROBE_SECONDS)
    await h1.agent.run_once()

    assert [i.ready for i in running(h1.inbox.status, 2)] == [True]
    assert running(h1.inbox.status, 1) == []
    assert engine.steps[-2:] == [("run", name(2)), ("stop", name(1))]


async def test_stop_first_stops_the_old_release_before_running_the_new_one(
    h1: Host, engine: FakeEngine
) -> None:
    await h1.deploy(1, web(1))
    engine.steps.clear()

    status = await h1.deploy(2, web(2, stop_first=True))

    # the image is pulled before anything stops: a failing pull must leave the old one up
    assert engine.steps == [("pull", "web:2"), ("stop", name(1)), ("run", name(2))]
    assert [(i.name, i.ready) for i in running(status, 2)] == [(name(2), True)]
    assert running(status, 1) == []


async def test_a_pull_that_fails_is_reported_and_stop_first_stops_nothing(
    h1: Host, engine: FakeEngine
) -> None:
    await h1.deploy(1, web(1))
    engine.steps.clear()
    engine.pull_errors["web:2"] = "manifest for web:2 not found"

    status = await h1.deploy(2, web(2, stop_first=True))

    assert engine.steps == []
    assert [i.name for i in running(status, 1)] == [name(1)]
    assert status.problems == (AppProblem("web", 2, "pull_failed", "manifest for web:2 not found"),)


async def test_an_older_or_repeated_generation_is_ignored(h1: Host, engine: FakeEngine) -> None:
    await h1.deploy(5, web(2))

    assert not h1.agent.accept(DesiredState(HOST, 4, (web(1),)))
    assert not h1.agent.accept(DesiredState(HOST, 5, (web(1),)))
    assert not h1.agent.accept(DesiredState("h2", 6, (web(1),)))  # not this host's
    await h1.agent.run_once()

    assert [(i.release, i.state) for i in engine.of(HOST)] == [(2, "running")]
    assert h1.inbox.status.generation == 5


async def test_retained_releases_are_kept_stopped_and_a_rollback_starts_one_again(
    h1: Host, engine: FakeEngine
) -> None:
    for release in (1, 2, 3, 4):
        await h1.deploy(release, web(release))

    # the two newest old releases stay (stopped) for rollbacks; the oldest and its image go
    assert sorted((i.release, i.state) for i in h1.inbox.status.instances) == [
        (2, "exited"),
        (3, "exited"),
        (4, "running"),
    ]
    assert "web:1" not in engine.images and ("remove_image", "web:1") in engine.steps
    (kept,) = [i for i in engine.of(HOST) if i.release == 3]
    engine.steps.clear()

    status = await h1.deploy(5, web(3))

    # the kept container is started again: no pull, no new container
    assert engine.steps == [("start", name(3)), ("stop", name(4))]
    assert [(i.container_id, i.ready) for i in running(status, 3)] == [(kept.container_id, True)]


async def test_the_releases_the_server_names_good_are_the_ones_retained(
    make_host: Callable[..., Host], engine: FakeEngine
) -> None:
    h1 = make_host(retain=1)
    await h1.deploy(1, web(1))
    await h1.deploy(2, web(2))

    # release 2 failed its rollout: the server names release 1 the good one to keep
    status = await h1.deploy(3, web(3, keep=(1,)))

    assert sorted((i.release, i.state) for i in status.instances) == [
        (1, "exited"),
        (3, "running"),
    ]


async def test_a_crashing_instance_is_reported_with_its_exit_code_and_logs(
    h1: Host, engine: FakeEngine
) -> None:
    await h1.deploy(1, web(1))
    (inst,) = engine.of(HOST)
    engine.crash(inst.container_id, 3, ["starting", "panic: no config"], state="restarting")

    h1.clock.advance(1.0)
    await h1.agent.run_once()

    assert h1.inbox.status.problems == (
        AppProblem(
            "web",
            1,
            "exited",
            f"container {name(1)} exited with code 3",
            exit_code=3,
            logs=("starting", "panic: no config"),
        ),
    )

    engine.containers[inst.container_id] = inst  # it runs again: the evidence is dropped
    h1.clock.advance(1.0)
    await h1.agent.run_once()

    assert h1.inbox.status.problems == ()


async def test_a_failing_health_probe_is_reported_as_unhealthy(
    h1: Host, engine: FakeEngine
) -> None:
    engine.unhealthy.add("web:1")
    await h1.deploy(1, web(1))

    assert h1.inbox.status.problems == ()  # a probe before FIRST_PROBE_SECONDS does not count

    h1.clock.advance(FIRST_PROBE_SECONDS)
    await h1.agent.run_once()

    assert h1.inbox.status.problems == (
        AppProblem("web", 1, "unhealthy", "health check failing: command failed"),
    )
    assert [i.ready for i in running(h1.inbox.status, 1)] == [False]


async def test_an_instance_stopped_behind_its_back_is_started_again_as_drift(
    h1: Host, engine: FakeEngine
) -> None:
    await h1.deploy(1, web(1))
    (inst,) = engine.of(HOST)
    engine.crash(inst.container_id, 137, [], state="exited")  # `docker kill` by hand
    engine.steps.clear()

    h1.clock.advance(1.0)
    await h1.agent.run_once()

    assert engine.steps == [("start", name(1))]  # the same container, not a new one
    assert h1.inbox.events == [
        Event(HOST, "drift_healed", "web", "instance 0 of release 1 was exited (exit code 137); "
              "started again"),
    ]  # fmt: skip
    assert [(i.container_id, i.ready) for i in running(h1.inbox.status, 1)] == [
        (inst.container_id, True)
    ]


async def test_another_hosts_containers_on_the_same_engine_are_never_touched(
    make_host: Callable[..., Host], engine: FakeEngine
) -> None:
    h1, h2 = make_host("h1"), make_host("h2")
    api = Assignment("api", 1, 1, 1, ContainerSpec(image="api:1", health=PROBE))
    await h2.deploy(1, api, web(1))
    (crashing,) = engine.of("h2", "api")
    engine.crash(crashing.container_id, 1, ["boom"], state="restarting")
    theirs = engine.of("h2")
    mark = len(engine.steps)

    await h1.deploy(1, web(1))
    await h1.deploy(2, web(2))
    status = await h1.apply(DesiredState("h1", 3))  # nothing wanted here any more

    assert engine.of("h2") == theirs
    assert engine.steps[mark:]  # h1 did act: it ran and stopped its own
    images = ("pull", "remove_image")  # an engine refuses to remove an image a container uses
    assert all(target.endswith(".h1") for verb, target in engine.steps[mark:] if verb not in images)
    assert status.instances == ()  # nothing wanted: its own are stopped and removed
    assert status.problems == ()


async def test_an_unchanged_status_is_sent_once_and_again_to_a_new_connection(
    h1: Host,
) -> None:
    await h1.deploy(1, web(1))
    sent = len(h1.inbox.statuses)

    await h1.agent.run_once()
    assert len(h1.inbox.statuses) == sent  # nothing changed: nothing to send

    reconnected = Inbox()
    h1.agent.attach(reconnected)
    await h1.agent.report(force=True)  # what the connection does after its hello
    assert reconnected.statuses == [h1.inbox.status]


async def test_an_engine_that_is_down_is_reported_and_never_blamed_on_the_release(
    h1: Host, engine: FakeEngine
) -> None:
    """Issue 20: while the Docker Engine does not answer, the agent says so in its status
    (`engine_error`) and records no problem against the release it was deploying; once the
    Engine answers again, the deploy goes on as if nothing happened."""
    engine.images.add("web:1")
    engine.down = True
    status = await h1.deploy(1, web(1))
    assert status.engine_error is not None and "Docker Engine unavailable" in status.engine_error
    assert status.problems == () and status.instances == ()

    engine.list_failures = 0
    engine.down = False
    await h1.agent.run_once()
    status = h1.inbox.status
    assert status.engine_error is None and status.problems == ()
    assert [i.release for i in status.instances] == [1]


async def test_an_engine_lost_while_acting_is_no_problem_of_the_release(
    h1: Host, engine: FakeEngine
) -> None:
    """The Engine goes away during a pull: the failed call is the Engine's, not the
    release's, and nothing else is tried in that pass."""
    engine.dies_on_pull = True
    status = await h1.deploy(1, web(1))
    assert status.problems == ()
    assert status.engine_error is not None
    assert engine.steps == []


TAKEN = (
    "start failed: driver failed programming external connectivity on endpoint web: "
    "listen tcp4 127.0.0.1:34567: bind: address already in use"
)


def published(release: int, host_port: int) -> Assignment:
    """web `release` with container port 80 published on `host_port` (0: Docker picks)."""
    spec = ContainerSpec(image=f"web:{release}", ports=(PortSpec(container=80, host=host_port),))
    return Assignment("web", release, release, 1, spec)


async def test_a_port_docker_picked_and_found_taken_is_tried_again_not_blamed(
    h1: Host, engine: FakeEngine
) -> None:
    engine.run_errors = [TAKEN, TAKEN]

    first = await h1.deploy(1, published(1, 0))
    assert first.problems == ()  # the host's doing: no verdict on the release
    for _ in range(3):  # the passes after each retry's backoff
        h1.clock.advance(5)
        await h1.agent.run_once()
    status = h1.inbox.status
    assert [i.name for i in running(status, 1)] == [name(1)]
    assert status.problems == ()


async def test_a_fixed_host_port_in_use_is_the_releases_problem(
    h1: Host, engine: FakeEngine
) -> None:
    engine.run_errors = [TAKEN]

    status = await h1.deploy(1, published(1, 8080))

    assert [p.reason for p in status.problems] == ["create_failed"]
    assert "address already in use" in status.problems[0].message
