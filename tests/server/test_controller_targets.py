"""Which target hosts the rollout controller judges again on a pass.

At 10,000 hosts the controller judges only the hosts with news; these tests pin down that
nothing with news is skipped, and that every host is judged again within a second anyway.
"""

from __future__ import annotations

import datetime as dt

import pytest

from server.db.store import Target
from server.rollout import controller
from server.rollout.controller import FULL_VIEW_SECONDS, _Targets

AT = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
QUESTION = ("web", 2, 1, "web:2")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(controller.time, "monotonic", fake)
    return fake


def targets(*names: str) -> _Targets:
    rows = [
        Target(i, 100 + i, name, "pending", 1, None, {}, None, AT) for i, name in enumerate(names)
    ]
    return _Targets.of(rows)


def test_first_pass_judges_every_host(clock: Clock) -> None:
    kept = targets("a", "b", "c")
    assert list(kept.to_judge(QUESTION, set())) == [0, 1, 2]


def test_later_passes_judge_hosts_with_news_and_rows_the_controller_changed(
    clock: Clock,
) -> None:
    kept = targets("a", "b", "c", "d")
    list(kept.to_judge(QUESTION, set()))
    clock.now += FULL_VIEW_SECONDS / 2
    kept.touched.add("d")  # the controller assigned it last pass
    again = kept.to_judge(QUESTION, {"b", "elsewhere"})  # a host of another deployment
    assert sorted(again) == [1, 3]
    assert list(kept.to_judge(QUESTION, set())) == []  # nothing new since


def test_every_host_is_judged_again_within_a_second(clock: Clock) -> None:
    kept = targets("a", "b")
    list(kept.to_judge(QUESTION, set()))
    clock.now += FULL_VIEW_SECONDS
    assert list(kept.to_judge(QUESTION, set())) == [0, 1]


def test_a_new_question_judges_every_host_afresh(clock: Clock) -> None:
    kept = targets("a", "b")
    list(kept.to_judge(QUESTION, set()))
    assert list(kept.to_judge(("web", 2, 3, "web:2"), set())) == [0, 1]  # replicas changed
    assert kept.judged == [None, None]  # nothing judged for the old question is kept


def test_judgments_survive_the_once_a_second_pass(clock: Clock) -> None:
    """Every host is looked at again, but what was judged on the same status is kept."""
    kept = targets("a", "b")
    list(kept.to_judge(QUESTION, set()))
    kept.judged = ["kept-a", "kept-b"]  # type: ignore[list-item]  # stand-ins for judgments
    clock.now += FULL_VIEW_SECONDS
    assert list(kept.to_judge(QUESTION, set())) == [0, 1]
    assert kept.judged == ["kept-a", "kept-b"]
