"""What a controller pass writes for one deployment, decided without I/O.

The planner (`planner.plan_rollout`) says what happens next in its own terms: host states,
hosts to assign, the deployment's status. These functions turn that into the columns of the
target rows that change, the rows a deployment starts with, and the events a step is worth;
the controller only reads and writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping

from agent.protocol import Status
from server.db.target_rows import Changes, Target
from server.rollout.judgement import evidence
from server.rollout.planner import Step, Strategy, skipped_at_start
from server.rollout.planner import Target as Planned
from server.rollout.targets import seconds_of
from server.states import TargetState

AWAY = "host disconnected when the deployment started: skipped"

# a target host as `db/target_rows.target_hosts` picks it: id, name, the release it had, last seen
Picked = tuple[int, str, int | None, dt.datetime | None]


def first_rows(picked: Iterable[Picked], skipped: frozenset[str], at: dt.datetime) -> list[Target]:
    """A starting deployment's target rows: pending, or skipped (an away host)."""
    return [
        Target(host_id, name, TargetState.PENDING, previous, None, {}, None, at)
        if name not in skipped
        else Target(host_id, name, TargetState.SKIPPED, previous, AWAY, {}, None, at)
        for host_id, name, previous, _ in picked
    ]


def away_at_start(
    picked: Iterable[Picked],
    strategy: Mapping[str, object],
    presence: Callable[[str], tuple[bool, float | None]],
    now: float,
    resumed_at: float,
) -> frozenset[str]:
    """The hosts a deployment starting at `now` skips (`planner.skipped_at_start`): each
    host as `presence` says (connected, and since when), or, away since before this process
    started, since it was last seen. Only away hosts are looked at: a fan-out to 10,000
    connected hosts builds no object for them."""
    away = []
    for _, name, _, last_seen in picked:
        connected, since = presence(name)
        if connected:
            continue
        if since is None:
            since = seconds_of(last_seen)
        away.append(Planned(name=name, state=TargetState.PENDING, connected=False, since=since))
    return skipped_at_start(Strategy.from_dict(strategy), away, now, resumed_at)


def row_changes(
    step: Step,
    latest: Callable[[str], Status | None],
    app: str,
    release: int,
    now: dt.datetime,
) -> dict[str, Changes]:
    """The columns of each target row `step` changes, by host: a new state (a failed host's
    evidence is its last status, `latest`), and the assignment time of the hosts it assigns."""
    changes: dict[str, Changes] = {}
    for name, (state, error) in step.host_states.items():
        changes[name] = {"state": state, "error": error, "updated_at": now}
        if state == TargetState.FAILED:
            changes[name]["evidence"] = evidence(latest(name), app, release)
    for name in step.assign:
        changes.setdefault(name, {})["assigned_at"] = now
    return changes


def batch_done(step: Step, release: int) -> str | None:
    """The message of a `batch_done` event, if this step finished a batch: hosts turned
    healthy and none is updating any longer."""
    done = [n for n, (s, _) in step.host_states.items() if s == TargetState.HEALTHY]
    if not done or step.updating:
        return None
    return f": {', '.join(sorted(done))} healthy on release {release}"
