"""When the rollout controller calls a host done with a release, from the host's status."""

from __future__ import annotations

from typing import Any

import pytest

from server.rollout.controller import _observed


def instance(release: int, state: str = "running", ready: bool = True, app: str = "web") -> Any:
    return {"app": app, "release": release, "state": state, "ready": ready}


@pytest.mark.parametrize(
    ("instances", "done"),
    [
        ([instance(2), instance(2)], True),
        ([instance(2)], False),  # one replica of two
        ([instance(2), instance(2, ready=False)], False),  # one not ready yet
        ([instance(2), instance(2), instance(1)], False),  # the old release still runs
        ([instance(2), instance(2), instance(1, "exited")], True),  # kept, stopped
        ([instance(2), instance(2), instance(1, app="db")], True),  # another app's
        ([instance(2), instance(2, "exited")], False),
    ],
)
def test_a_host_is_done_when_every_replica_is_ready_and_no_old_one_runs(
    instances: list[Any], done: bool
) -> None:
    assert _observed({"instances": instances}, "web", 2, 2) == (done, None)


def test_the_agents_problem_with_the_release_keeps_a_host_from_done() -> None:
    status = {
        "instances": [instance(2)],
        "problems": [
            {"app": "web", "release": 1, "message": "old"},
            {"app": "web", "release": 2, "message": "health check failed"},
        ],
    }
    assert _observed(status, "web", 2, 1) == (False, "health check failed")
