"""Which report pins a release (server/pins.py, pure): only a host assigned it unpinned,
from a status of the generation that told it so or later, for the release's own image."""

from __future__ import annotations

from sqlalchemy import select

from agent.protocol import Assignment, ContainerSpec, DesiredState, Prepull, Status
from server.confine import told_of
from server.db import deploys, store
from server.db.models import App, Host, Release
from server.db.session import Sessions
from server.host_log import HostLog
from server.pins import NONE, found, unpinned
from server.rollout.judgement import Wanted, judge
from server.turns import Turns

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def desired(generation: int, *assignments: Assignment) -> DesiredState:
    return DesiredState("h", generation, assignments, prepull=(Prepull("db", 3, "db:1"),))


def test_only_what_an_assignment_awaits_and_only_from_a_status_that_heard_of_it():
    waiting = unpinned(
        desired(
            5,
            Assignment("web", 2, 7, 1, ContainerSpec("web:v1")),
            Assignment("api", 4, 8, 1, ContainerSpec("api:v1", digest=D1)),  # pinned already
        )
    )
    assert waiting.releases == (("web", 2, "web:v1"),)
    report = (("web:v1", D2), ("api:v1", D2), ("db:1", D2))
    assert found(Status("h", 5, digests=report), waiting) == {("web", 2, D2)}
    assert found(Status("h", 4, digests=report), waiting) == set()  # before it was told
    assert found(Status("h", 6, digests=(("web:v2", D2),)), waiting) == set()


def test_a_host_only_pre_pulling_or_with_every_release_pinned_is_not_asked():
    assert unpinned(desired(5)) == NONE
    pinned = Assignment("web", 2, 7, 1, ContainerSpec("web:v1", digest=D1))
    assert unpinned(desired(5, pinned)) == NONE
    assert found(Status("h", 9, digests=(("db:1", D2),)), NONE) == set()


async def test_the_first_report_pins_and_a_host_that_resolved_another_is_pushed_again(
    sessions: Sessions,
) -> None:
    for image in ("web:v1", f"api:v1@{D2}"):
        app = image.split(":")[0]
        await deploys.deploy(
            sessions, app, {"image": image}, actor="ci", message=None, strategy={},
            selector={}, idempotency_key=None, body_hash=app,
        )  # fmt: skip
        async with sessions.begin() as session:
            for host in ("a", "b", "c"):
                if app == "web":
                    await store.add_host(session, host, {})
    pushed: list[list[str]] = []
    log = HostLog(sessions, Turns(), lambda _: None, list, pushed.append)
    log.pins("a", {("web", 1, D1)})
    log.pins("b", {("web", 1, D2)})  # the tag moved between a's pull and b's
    log.pins("c", {("api", 1, D1)})  # a release given with its digest keeps it
    await log.flush()
    log.pins("a", {("web", 1, D1)})  # known: nothing to write, nobody to push
    await log.flush()
    async with sessions() as session:
        digests = dict((await session.execute(select(App.name, Release.digest).join(App))).all())
        generations = dict((await session.execute(select(Host.name, Host.generation))).all())
    assert digests == {"web": D1, "api": D2}
    assert pushed == [["b", "c"]]
    assert generations["b"] == generations["a"] + 1 == generations["c"]


def test_a_host_holding_the_pinned_image_has_pulled_it_though_it_has_no_tag():
    wanted = Wanted("web", 2, 1, "reg:5000/web:v1", D1)
    held = Status("h", 3, digests=((f"reg:5000/web@{D1}", D1),))
    assert judge(wanted, held).pulled
    assert not judge(wanted, Status("h", 3, digests=((f"reg:5000/web@{D2}", D2),))).pulled
    pinned = Assignment("web", 2, 7, 1, ContainerSpec("reg:5000/web:v1", digest=D1))
    assert f"reg:5000/web@{D1}" in told_of(desired(3, pinned)).images  # not cut at the door
