"""Which apps' volumes an agent removes, and when (agent/volumes.py), and the wire field."""

from __future__ import annotations

from agent.codec import decode, encode
from agent.protocol import Assignment, ContainerSpec, DesiredState, Instance, Prepull
from agent.volumes import VolumePurges, due
from tests.agent.fake_driver import FakeDriver, FakeEngine


def _instance(app: str, host: str = "h") -> Instance:
    return Instance("c1", "n", host, app, 1, 0, 1, "exited")


def test_only_apps_listed_with_no_container_left_and_not_wanted_again():
    desired = DesiredState(
        "h",
        3,
        assignments=(Assignment("back", 2, 9, 1, ContainerSpec("img:2")),),
        prepull=(Prepull("soon", 4, "img:4"),),
        purge_volumes=("back", "gone", "soon", "stopping"),
    )
    instances = [_instance("stopping"), _instance("gone", host="other")]
    assert due(desired, instances, set()) == ["gone"]
    assert due(desired, instances, {"gone"}) == []


def test_the_purge_list_travels_and_is_omitted_when_empty():
    desired = DesiredState("h", 3, purge_volumes=("web",))
    assert decode(encode(desired)) == desired
    assert "purge_volumes" not in encode(DesiredState("h", 3))


async def test_removes_this_hosts_volumes_of_the_app_once():
    engine = FakeEngine()
    engine.volumes = {
        "flotilla-web-data": ("web", "h"),
        "flotilla-web-cache": ("web", "other"),
        "flotilla-db-data": ("db", "h"),
    }
    purges = VolumePurges("h", FakeDriver(engine, "h"))
    desired = DesiredState("h", 3, purge_volumes=("web",))
    await purges.run(desired, [])
    await purges.run(desired, [])
    assert engine.steps == [("volume rm", "flotilla-web-data")]
    assert set(engine.volumes) == {"flotilla-web-cache", "flotilla-db-data"}
