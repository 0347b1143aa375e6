"""Which report pins a release (server/pins.py, pure): only a host assigned it unpinned,
from a status of the generation that told it so or later, for the release's own image."""

from __future__ import annotations

from agent.protocol import Assignment, ContainerSpec, DesiredState, Prepull, Status
from server.pins import NONE, found, unpinned

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
