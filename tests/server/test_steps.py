"""What a pass writes for a planner step (server/rollout/steps.py), table-driven."""

from __future__ import annotations

import datetime as dt

from agent.protocol import AppProblem, Status
from server.rollout.planner import Step
from server.rollout.steps import AWAY, away_at_start, batch_done, first_rows, row_changes
from server.states import TargetState

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def test_first_rows_are_pending_but_the_skipped() -> None:
    picked = [(1, "a", None, None), (2, "b", 3, None)]
    rows = first_rows(picked, frozenset({"b"}), NOW)
    assert [(r.host_name, r.state, r.previous_release, r.error) for r in rows] == [
        ("a", TargetState.PENDING, None, None),
        ("b", TargetState.SKIPPED, 3, AWAY),
    ]


def test_away_hosts_past_the_grace_are_skipped_and_connected_ones_never() -> None:
    seen = dt.datetime.fromtimestamp(1000.0, dt.UTC)
    picked = [(1, "up", None, seen), (2, "gone", None, seen), (3, "blip", None, seen)]
    presence = {"up": (True, 1000.0), "gone": (False, None), "blip": (False, 1990.0)}
    strategy = {"disconnected": "skip", "reconnect_grace": 30}
    assert away_at_start(picked, strategy, presence.__getitem__, 2000.0, 0.0) == {"gone"}
    wait = {"disconnected": "wait", "reconnect_grace": 30}
    assert away_at_start(picked, wait, presence.__getitem__, 2000.0, 0.0) == frozenset()


def test_row_changes_carry_states_assignments_and_a_failed_hosts_evidence() -> None:
    problem = AppProblem(app="web", release=4, reason="exited", message="exited 1")
    status = Status(host="b", generation=1, problems=(problem,))
    step = Step(
        status="running",
        assign=("c",),
        host_states={"a": (TargetState.HEALTHY, None), "b": (TargetState.FAILED, "crashed")},
    )
    changes = row_changes(step, {"b": status}.get, "web", 4, NOW)
    assert changes["a"] == {"state": TargetState.HEALTHY, "error": None, "updated_at": NOW}
    assert changes["b"]["error"] == "crashed"
    assert changes["b"]["evidence"]["problems"][0]["message"] == "exited 1"  # type: ignore[index]
    assert changes["c"] == {"assigned_at": NOW}


def test_a_batch_is_done_when_hosts_turned_healthy_and_none_is_updating() -> None:
    healthy = {"b": (TargetState.HEALTHY, None), "a": (TargetState.HEALTHY, None)}
    assert batch_done(Step(status="running", host_states=healthy), 7) == (
        ": a, b healthy on release 7"
    )
    assert batch_done(Step(status="running", host_states=healthy, updating=1), 7) is None
    assert batch_done(Step(status="running"), 7) is None
