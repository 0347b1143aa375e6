"""Properties and examples of the pure reconcile planner (`agent.reconcile`).

The planner is driven here the way the agent's loop drives it: plan, apply the actions with
`simulate`, mark running containers ready (their health gate passed), plan again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.protocol import Assignment, ContainerSpec, Instance, PortSpec, PublishedPort
from agent.reconcile import (
    Action,
    Pull,
    Remove,
    Run,
    Start,
    Stop,
    plan_reconcile,
    simulate,
)

HOST = "h1"
OTHER_HOSTS = ("h2", "h3")
APPS = ("api", "cache", "db", "web")
FIXED_PORT = {app: 8080 + n for n, app in enumerate(APPS)}

SETTINGS = settings(max_examples=200, deadline=None)


def image(app: str, release: int) -> str:
    return f"registry.local/{app}:v{release}"


def spec(app: str, release: int, port: str = "none", stop_first: bool = False) -> ContainerSpec:
    """A release's spec; `port` is "none", "ephemeral" or "fixed" (a host port of its own)."""
    ports: tuple[PortSpec, ...] = ()
    if port == "ephemeral":
        ports = (PortSpec(container=80),)
    elif port == "fixed":
        ports = (PortSpec(container=80, host=FIXED_PORT[app]),)
    return ContainerSpec(image=image(app, release), ports=ports, stop_first=stop_first)


def assignment(
    app: str, release: int, replicas: int = 1, port: str = "none", stop_first: bool = False
) -> Assignment:
    return Assignment(app, release, 100 + release, replicas, spec(app, release, port, stop_first))


def instance(
    cid: str,
    app: str,
    release: int,
    replica: int = 0,
    state: str = "running",
    host: str = HOST,
    holds_port: bool = False,
) -> Instance:
    ports = (PublishedPort(80, "127.0.0.1", FIXED_PORT[app]),) if holds_port else ()
    return Instance(
        container_id=cid,
        name=f"flotilla-{app}-{release}-{replica}.{host}",
        host=host,
        app=app,
        release=release,
        replica=replica,
        deployment=100 + release,
        state=state,
        image=image(app, release),
        ports=ports,
    )


# --- generators -------------------------------------------------------------------------------


@st.composite
def desired_states(draw: st.DrawFn) -> tuple[Assignment, ...]:
    """0-3 apps, releases 1-5, replicas 1-3, no/ephemeral/fixed host port, stop_first or not."""
    apps = draw(st.lists(st.sampled_from(APPS), max_size=3, unique=True))
    return tuple(
        assignment(
            app,
            draw(st.integers(1, 5)),
            draw(st.integers(1, 3)),
            draw(st.sampled_from(["none", "ephemeral", "fixed"])),
            draw(st.booleans()),
        )
        for app in apps
    )


@st.composite
def instance_lists(
    draw: st.DrawFn, hosts: Sequence[str] = (HOST,), prefix: str = "c"
) -> list[Instance]:
    """Pre-existing containers: any release, replica and state, some holding their app's port."""
    count = draw(st.integers(0, 8))
    return [
        instance(
            f"{prefix}{n}",
            draw(st.sampled_from(APPS)),
            draw(st.integers(1, 5)),
            draw(st.integers(0, 3)),
            draw(st.sampled_from(["running", "exited", "created"])),
            draw(st.sampled_from(hosts)),
            draw(st.booleans()),
        )
        for n in range(count)
    ]


ALL_IMAGES = [image(app, r) for app in APPS for r in range(1, 6)]
image_sets = st.frozensets(st.sampled_from(ALL_IMAGES))
retains = st.integers(0, 3)


# --- driving the planner like the agent loop does --------------------------------------------


@dataclass
class World:
    instances: list[Instance]
    images: frozenset[str]


def running(instances: Sequence[Instance]) -> frozenset[str]:
    return frozenset(i.container_id for i in instances if i.state == "running")


def plan(world: World, desired: Sequence[Assignment], retain: int) -> list[Action]:
    """Plan with every running container counted as ready (its health check passed)."""
    return plan_reconcile(
        HOST, desired, world.instances, world.images, running(world.instances), retain
    )


def apply(world: World, actions: Sequence[Action]) -> World:
    """Execute `actions` as the engine would, pulled images included."""
    pulled = {a.image for a in actions if isinstance(a, Pull)}
    return World(simulate(HOST, world.instances, actions), world.images | pulled)


def converge(world: World, desired: Sequence[Assignment], retain: int, rounds: int) -> World:
    for _ in range(rounds):
        world = apply(world, plan(world, desired, retain))
    return world


def ids(actions: Sequence[Action], kind: type[Start | Stop | Remove]) -> list[str]:
    return [a.container_id for a in actions if isinstance(a, kind)]


def index(actions: Sequence[Action], pred: Callable[[Action], bool]) -> int:
    return next(n for n, a in enumerate(actions) if pred(a))


# --- properties -------------------------------------------------------------------------------


@SETTINGS
@given(
    desired=desired_states(),
    mine=instance_lists(),
    foreign=instance_lists(hosts=OTHER_HOSTS, prefix="f"),
    images=image_sets,
    retain=retains,
    ready_foreign=st.booleans(),
)
def test_never_touches_another_hosts_containers(
    desired: tuple[Assignment, ...],
    mine: list[Instance],
    foreign: list[Instance],
    images: frozenset[str],
    retain: int,
    ready_foreign: bool,
) -> None:
    """Containers labelled with another host (same apps and releases too) are never acted on."""
    foreign_ids = {i.container_id for i in foreign}
    ready = running(mine) | (running(foreign) if ready_foreign else frozenset())
    actions = plan_reconcile(HOST, desired, [*foreign, *mine], images, ready, retain)
    touched = {a.container_id for a in actions if isinstance(a, Start | Stop | Remove)}
    assert not touched & foreign_ids
    assert all(a.name.endswith(f".{HOST}") for a in actions if isinstance(a, Run))
    after = simulate(HOST, [*foreign, *mine], actions)
    assert [i for i in after if i.container_id in foreign_ids] == foreign


@SETTINGS
@given(desired=desired_states(), mine=instance_lists(), images=image_sets, retain=retains)
def test_replanning_after_applying_a_plan_does_not_redo_it(
    desired: tuple[Assignment, ...], mine: list[Instance], images: frozenset[str], retain: int
) -> None:
    """Idempotence: a plan that was carried out is not carried out again.

    After one plan is applied, the next plan never pulls, runs or starts anything again (no
    duplicate containers); it may only retire old instances whose successors are now ready,
    which start-first deliberately defers to the pass after the new instances run. A plan that
    brings nothing up leaves nothing to do, and a third plan is always empty (a fixed point).
    """
    world = World(list(mine), images)
    first = plan(world, desired, retain)
    world = apply(world, first)
    second = plan(world, desired, retain)
    assert not [a for a in second if isinstance(a, Pull | Run | Start)], second
    if not [a for a in first if isinstance(a, Pull | Run | Start)]:
        assert second == []
    world = apply(world, second)
    assert plan(world, desired, retain) == []


@SETTINGS
@given(desired=desired_states(), mine=instance_lists(), images=image_sets, retain=retains)
def test_converges_within_three_rounds(
    desired: tuple[Assignment, ...], mine: list[Instance], images: frozenset[str], retain: int
) -> None:
    """Each assigned app ends with exactly `replicas` running instances of its release, one per
    replica slot, and nothing else running; apps with no desired state have nothing running."""
    world = converge(World(list(mine), images), desired, retain, rounds=3)
    wanted = {a.app: a for a in desired}
    for app in APPS:
        up = [i for i in world.instances if i.app == app and i.state == "running"]
        a = wanted.get(app)
        if a is None:
            assert up == []
            continue
        assert all(i.release == a.release for i in up), up
        assert sorted(i.replica for i in up) == list(range(a.replicas))


@SETTINGS
@given(desired=desired_states(), mine=instance_lists(), images=image_sets, retain=retains)
def test_retains_only_the_newest_old_releases(
    desired: tuple[Assignment, ...], mine: list[Instance], images: frozenset[str], retain: int
) -> None:
    """After convergence, exactly the newest `retain` old releases of an assigned app keep
    (stopped) containers; an app no longer assigned to the host keeps none (issue 20)."""
    world = converge(World(list(mine), images), desired, retain, rounds=3)
    wanted = {a.app: a.release for a in desired}
    for app in APPS:
        current = wanted.get(app)
        old_before = {i.release for i in mine if i.app == app and i.release != current}
        old_after = [i for i in world.instances if i.app == app and i.release != current]
        if current is None:
            assert old_after == []
            continue
        assert {i.release for i in old_after} == set(sorted(old_before, reverse=True)[:retain])
        assert all(i.state != "running" for i in old_after)


# --- examples ---------------------------------------------------------------------------------


def test_start_first_runs_new_before_stopping_old_and_waits_for_ready() -> None:
    """Start-first: the old instance keeps serving until the new one passed its health gate."""
    desired = [assignment("web", 2, port="ephemeral")]
    old = instance("old", "web", 1)
    world = World([old], frozenset({image("web", 2)}))

    first = plan_reconcile(HOST, desired, world.instances, world.images, frozenset({"old"}))
    assert [type(a) for a in first] == [Run]
    world = apply(world, first)
    new = next(i.container_id for i in world.instances if i.release == 2)

    not_ready = plan_reconcile(HOST, desired, world.instances, world.images, frozenset({"old"}))
    assert "old" not in ids(not_ready, Stop) + ids(not_ready, Remove)
    assert not_ready == []

    ready = plan_reconcile(HOST, desired, world.instances, world.images, frozenset({"old", new}))
    assert ready == [Stop("old", "web", 1)]


def test_retiring_stops_the_old_release_before_removing_older_ones() -> None:
    """Once the new instance is ready, the release it replaces stops serving first; the
    releases beyond the retained ones are removed after it (one look at the engine then)."""
    desired = [assignment("web", 4)]
    world = [
        instance("r1", "web", 1, state="exited"),
        instance("r2", "web", 2, state="exited"),
        instance("r3", "web", 3),
        instance("r4", "web", 4),
    ]
    actions = plan_reconcile(
        HOST, desired, world, frozenset({image("web", 4)}), frozenset({"r4"}), retain=2
    )
    assert [type(a) for a in actions] == [Stop, Remove]
    assert ids(actions, Stop) == ["r3"] and ids(actions, Remove) == ["r1"]


@pytest.mark.parametrize(
    ("stop_first", "port", "holds_port"),
    [
        pytest.param(True, "none", False, id="spec.stop_first"),
        pytest.param(False, "fixed", True, id="fixed-host-port-held-by-old"),
    ],
)
def test_stop_first_stops_old_before_running_new(
    stop_first: bool, port: str, holds_port: bool
) -> None:
    """Stop-first (asked for, or forced by a fixed host port the old instance holds)."""
    desired = [assignment("web", 2, port=port, stop_first=stop_first)]
    old = instance("old", "web", 1, holds_port=holds_port)
    actions = plan_reconcile(HOST, desired, [old], frozenset({image("web", 2)}), frozenset({"old"}))
    assert ids(actions, Stop) == ["old"]
    assert index(actions, lambda a: isinstance(a, Stop)) < index(
        actions, lambda a: isinstance(a, Run)
    )


def test_fixed_port_not_held_by_old_stays_start_first() -> None:
    """A fixed host port the old instance does not hold needs no downtime."""
    desired = [assignment("web", 2, port="fixed")]
    old = instance("old", "web", 1, holds_port=False)
    actions = plan_reconcile(HOST, desired, [old], frozenset({image("web", 2)}), frozenset({"old"}))
    assert [type(a) for a in actions] == [Run]


def test_missing_image_is_pulled_once_before_the_first_run() -> None:
    """Three replicas of a release whose image is absent: one Pull, then the Runs."""
    desired = [assignment("web", 2, replicas=3)]
    actions = plan_reconcile(HOST, desired, [], frozenset())
    assert actions[0] == Pull("web", 2, image("web", 2))
    assert [type(a) for a in actions] == [Pull, Run, Run, Run]
    assert [a.replica for a in actions if isinstance(a, Run)] == [0, 1, 2]


def test_present_image_is_not_pulled() -> None:
    """An image already on the engine is used as is."""
    actions = plan_reconcile(HOST, [assignment("web", 2)], [], frozenset({image("web", 2)}))
    assert [type(a) for a in actions] == [Run]


def test_app_without_desired_state_is_stopped_and_removed() -> None:
    """No desired state for an app (removed, or a release dropped this host): its running
    containers stop, then every one of them is removed; none is kept for a rollback."""
    actual = [instance("a", "web", 1), instance("b", "web", 1, replica=1, state="exited")]
    actions = plan_reconcile(HOST, [], actual, frozenset(), frozenset({"a"}))
    steps = [(type(a).__name__, getattr(a, "container_id", "")) for a in actions]
    assert steps == [("Stop", "a"), ("Remove", "a"), ("Remove", "b")]


def test_exited_container_of_desired_release_is_restarted_not_recreated() -> None:
    """Fast rollback: the retained container of the target release is started again."""
    desired = [assignment("web", 1)]
    actual = [instance("r2", "web", 2), instance("r1", "web", 1, state="exited")]
    world = World(actual, frozenset({image("web", 1), image("web", 2)}))

    first = plan(world, desired, retain=2)
    assert first == [Start("r1", "web", 1)]
    world = converge(world, desired, retain=2, rounds=3)
    up = [i for i in world.instances if i.state == "running"]
    assert [i.container_id for i in up] == ["r1"]
    assert {i.container_id: i.state for i in world.instances} == {"r1": "running", "r2": "exited"}


def test_stop_first_pulls_before_stopping_old() -> None:
    """Stop-first downtime must not include the pull, and a failed pull must not cause an outage."""
    desired = [assignment("web", 2, stop_first=True)]
    old = instance("old", "web", 1)
    actions = plan_reconcile(HOST, desired, [old], frozenset(), frozenset({"old"}))
    assert index(actions, lambda a: isinstance(a, Pull)) < index(
        actions, lambda a: isinstance(a, Stop)
    )
