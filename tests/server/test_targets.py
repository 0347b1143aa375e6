"""The controller's copy of a deployment's targets and what it judged them on
(server/rollout/targets.py): at 10,000 hosts a pass looks again only at the hosts with news,
yet every host at least every FULL_VIEW_SECONDS, and a row is judged afresh only when what
it was judged on changed. A copy is never changed in place."""

from __future__ import annotations

import datetime as dt

import pytest

from agent.protocol import Instance, Status
from server.db.target_rows import Target
from server.rollout.judgement import Wanted
from server.rollout.targets import FULL_VIEW_SECONDS, Judged, Targets, replaced
from server.statuses import Reported

AT = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
WANTED = Wanted("web", 2, 1, "web:2")


def targets(*names: str, state: str = "updating") -> Targets:
    return Targets.of(
        1, [Target(100 + i, n, state, 1, None, {}, AT, AT) for i, n in enumerate(names)]
    )


def ready(host: str, seq: int) -> Reported:
    instance = Instance("c", "n", host, "web", 2, 1, 1, "running", ready=True)
    return Reported(seq, Status(host=host, generation=1, instances=(instance,)))


def test_the_first_look_takes_every_row_then_only_news() -> None:
    kept = targets("a", "b", "c", "d")
    judged = Judged(WANTED, 4)
    assert list(judged.to_judge(kept, set(), now=1000.0)) == [0, 1, 2, 3]
    again = judged.to_judge(kept, {"b", "d", "elsewhere"}, now=1000.0 + FULL_VIEW_SECONDS / 2)
    assert sorted(again) == [1, 3]
    assert list(judged.to_judge(kept, set(), now=1000.0 + FULL_VIEW_SECONDS / 2)) == []


def test_every_row_is_looked_at_again_within_a_second() -> None:
    kept = targets("a", "b")
    judged = Judged(WANTED, 2)
    list(judged.to_judge(kept, set(), now=1000.0))
    assert list(judged.to_judge(kept, set(), now=1000.0 + FULL_VIEW_SECONDS)) == [0, 1]


def test_a_row_is_judged_afresh_only_when_its_basis_changed() -> None:
    kept = targets("a", "b")
    judged = Judged(WANTED, 2)
    statuses = {"a": ready("a", 1), "b": Reported(2, None)}
    judged.judge(kept, [0, 1], statuses, lambda _: (True, None))
    first = judged.complete()
    assert [t.converged for t in first] == [True, False]
    judged.judge(kept, [0, 1], statuses, lambda _: (True, None))  # nothing new: the same targets
    assert all(x is y for x, y in zip(judged.complete(), first, strict=True))
    judged.judge(kept, [1], {"b": ready("b", 3)}, lambda _: (True, None))  # b's news
    assert [t.converged for t in judged.complete()] == [True, True]
    judged.judge(kept, [0], statuses, lambda _: (False, 1.0))  # a went away
    assert judged.complete()[0].connected is False


def test_a_changed_copy_leaves_the_old_one_as_it_was() -> None:
    kept = targets("a", "b")
    row = replaced(kept.row("a"), state="healthy", updated_at=AT)
    newer = kept.changed(2, {"a": row}, at=AT.timestamp() + 5)
    assert (kept.version, kept.row("a").state, kept.updating) == (1, "updating", {"a", "b"})
    assert (newer.version, newer.row("a").state, newer.updating) == (2, "healthy", {"b"})
    assert newer.last_change == AT.timestamp() + 5


def test_a_healthy_row_needs_no_status_to_be_judged() -> None:
    kept = targets("a", "b")
    judged = Judged(WANTED, 2)
    judged.judge(kept, [0, 1], {"a": ready("a", 1), "b": ready("b", 2)}, lambda _: (True, None))
    row = replaced(kept.row("a"), state="healthy", updated_at=AT)
    newer = kept.changed(2, {"a": row}, at=AT.timestamp())
    assert judged.unsettled(newer, [0, 1]) == [1]  # only b's status is read and judged
    assert judged.complete()[0].state == "healthy"


def test_a_replaced_row_keeps_every_column_it_does_not_change() -> None:
    row = Target(7, "h", "failed", 3, "crashed", {"why": 1}, AT, AT + dt.timedelta(seconds=1))
    assert replaced(row) == row and replaced(row) is not row
    later = AT + dt.timedelta(seconds=2)
    changed = replaced(row, state="updating", error=None, updated_at=later)
    assert changed == Target(7, "h", "updating", 3, None, {"why": 1}, AT, later)
    assert row.state == "failed"  # the original is untouched


def test_a_kept_row_cannot_be_changed_in_place() -> None:
    """The controller keeps rows between passes: a change is a new row, never an edit."""
    row = Target(7, "h", "failed", 3, "crashed", {"why": 1}, AT, AT)
    with pytest.raises(AttributeError):
        row.state = "healthy"  # type: ignore[misc]
    assert row.state == "failed"
