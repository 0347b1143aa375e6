"""Pinned digests on the agent (agent/pins.py, agent/reconcile.py): the planner's part pure,
the runner's through its public calls on the fake engine (tests/agent/fake_driver.py)."""

from __future__ import annotations

from collections.abc import Callable

from agent.codec import decode, encode
from agent.pins import mismatched
from agent.protocol import (
    Assignment,
    ContainerSpec,
    DesiredState,
    Instance,
    Prepull,
    digest_in,
    pinned_ref,
    run_ref,
)
from agent.reconcile import Pull, Remove, Run, plan_reconcile
from tests.agent.fake_driver import FakeEngine
from tests.agent.test_runner import Host, engine, make_host  # noqa: F401 (fixtures)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
IMAGE = "127.0.0.1:5000/app:v1"


def app(release: int, digest: str | None = None, image: str = IMAGE) -> Assignment:
    return Assignment("app", release, release, 1, ContainerSpec(image=image, digest=digest))


def inst(cid: str, release: int, image: str = IMAGE) -> Instance:
    return Instance(cid, f"n{cid}", "h", "app", release, 0, release, "running", image=image)


def test_references():
    assert pinned_ref(IMAGE, D1) == f"127.0.0.1:5000/app@{D1}"
    assert pinned_ref(f"127.0.0.1:5000/app:v1@{D2}", D1) == f"127.0.0.1:5000/app@{D1}"
    assert pinned_ref("127.0.0.1:5000/app", D1) == f"127.0.0.1:5000/app@{D1}"
    assert run_ref(IMAGE, None) == IMAGE
    assert digest_in(f"app:v1@{D1}") == D1 and digest_in("app:v1") is None


def test_the_pin_travels_and_a_bad_one_is_refused():
    desired = DesiredState("h", 2, (app(1, D1),), prepull=(Prepull("app", 2, IMAGE, D2),))
    assert decode(encode(desired)) == desired
    text = encode(DesiredState("h", 2, (app(1, "latest"),)))
    try:
        decode(text)
    except ValueError as exc:
        assert "digest" in str(exc)
    else:
        raise AssertionError("a pin that is not a digest was taken")


def test_a_pinned_release_pulls_its_digest_when_the_tag_is_another():
    plan = plan_reconcile("h", [app(1, D1)], [], frozenset({IMAGE}), digests={IMAGE: D2})
    assert plan[0] == Pull("app", 1, pinned_ref(IMAGE, D1)) and isinstance(plan[1], Run)
    # the tag's local image is the pinned one: nothing to pull
    plan = plan_reconcile("h", [app(1, D1)], [], frozenset({IMAGE}), digests={IMAGE: D1})
    assert [type(a) for a in plan] == [Run]


def test_a_container_on_another_digest_is_replaced_once_the_pin_is_here():
    running = [inst("c1", 1)]
    pinned = pinned_ref(IMAGE, D1)
    plan = plan_reconcile(
        "h", [app(1, D1)], running, frozenset({IMAGE}), digests={IMAGE: D2},
        mismatched=frozenset({"c1"}),
    )  # fmt: skip
    assert plan == [Pull("app", 1, pinned)]  # it keeps serving meanwhile
    plan = plan_reconcile(
        "h", [app(1, D1)], running, frozenset({IMAGE, pinned}), digests={IMAGE: D2},
        mismatched=frozenset({"c1"}),
    )  # fmt: skip
    assert [type(a) for a in plan] == [Remove, Run] and plan[0].container_id == "c1"


def test_mismatched_is_judged_by_the_image_a_container_runs():
    pinned = {("app", 1): "id-1"}
    instances = [inst("c1", 1), inst("c2", 1), inst("c3", 2), inst("c4", 1)]
    images = {"c1": "id-1", "c2": "id-2", "c3": "id-2"}  # c4's image is not known: not judged
    assert mismatched(instances, images, pinned) == {"c2"}


async def test_a_pin_that_arrives_after_the_start_recreates_nothing(
    engine: FakeEngine,  # noqa: F811
    make_host: Callable[..., Host],  # noqa: F811
):
    engine.images.add(IMAGE)
    engine.tags[IMAGE] = D1
    host = make_host("h")
    await host.deploy(1, app(1))
    (first,) = engine.of("h", "app")
    await host.deploy(2, app(1, D1))  # the server pinned what this host pulled
    assert engine.of("h", "app") == [first]
    assert ("remove", first.name) not in engine.steps


async def test_the_tag_moved_before_this_host_ran_it_runs_the_pin(
    engine: FakeEngine,  # noqa: F811
    make_host: Callable[..., Host],  # noqa: F811
):
    engine.images.add(IMAGE)
    engine.tags[IMAGE] = D2  # this host's tag is another image than the pin
    host = make_host("h")
    await host.deploy(1, app(1))  # ran before the pin arrived: on D2
    await host.deploy(2, app(1, D1))
    await host.agent.run_once()  # the pull in the background ended: replaced now
    pinned = pinned_ref(IMAGE, D1)
    assert ("pull", pinned) in engine.steps
    (now,) = engine.of("h", "app")
    assert now.image == pinned and engine.image_of[now.container_id] == D1


async def test_a_pin_its_tag_already_is_is_not_looked_up_again(
    engine: FakeEngine,  # noqa: F811
    make_host: Callable[..., Host],  # noqa: F811
):
    """An image built on the host has no `repo@digest` (its digest is its id): while its tag
    is the pin, a pass asks the engine nothing about it (it used to, every pass)."""
    engine.images.add(IMAGE)
    engine.tags[IMAGE] = D1
    host = make_host("h")
    await host.deploy(1, app(1, D1))
    assert len(engine.of("h", "app")) == 1
    engine.looked_up.clear()
    for _ in range(3):
        await host.agent.run_once()
    assert engine.looked_up == []
    status = await host.deploy(2, app(1, D1))
    assert engine.looked_up == [] and status.digests == ((IMAGE, D1),)
