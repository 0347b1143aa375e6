"""A running deployment's target rows between passes, and what each was last judged on.

At 10,000 hosts a pass must not cost 10,000 of anything it can avoid. The controller is the
only writer of a deployment's target rows, and every write bumps the deployment's
`targets_version`: so `Targets`, a read-only copy of the rows made at one version, is valid
while the deployment's row still has that version, and a pass need not read 10,000 rows
again. A pass that changes rows makes a new copy (`changed`) at the version it writes.

`Judged` remembers, per row, the planner's target and what it was judged on (the status's
sequence number, the row's state and assignment time, the connection): a row is judged
afresh only when one of those changed. Only the rows of hosts with news, and the rows the
last pass changed, are looked at; every row is, at least every FULL_VIEW_SECONDS.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Unpack

from server.db.target_rows import Changes, Target
from server.rollout.judgement import Wanted, judge
from server.rollout.planner import Target as Planned
from server.states import TargetState
from server.statuses import Reported

# Every row is judged again at least this often, so a change that slipped by (a deadline
# passing needs no news) is seen within a second.
FULL_VIEW_SECONDS = 1.0


@dataclass(frozen=True)
class Targets:
    """A deployment's target rows as of `version`: read-only."""

    version: int
    rows: tuple[Target, ...]
    position: Mapping[str, int]  # host name -> index in rows
    updating: frozenset[str]  # hosts whose rows are `updating`
    last_change: float  # newest updated_at (seconds) of a row that left `pending`

    @classmethod
    def of(cls, version: int, rows: Iterable[Target]) -> Targets:
        """A copy of rows read from the database (or planned by a deployment's first pass)."""
        kept = tuple(rows)
        moved = [seconds_of(r.updated_at) or 0.0 for r in kept if r.state != TargetState.PENDING]
        return cls(
            version=version,
            rows=kept,
            position={r.host_name: i for i, r in enumerate(kept)},
            updating=frozenset(r.host_name for r in kept if r.state == TargetState.UPDATING),
            last_change=max(moved, default=0.0),
        )

    def row(self, host: str) -> Target:
        """The row of `host`."""
        return self.rows[self.position[host]]

    def changed(self, version: int, changes: Mapping[str, Target], at: float) -> Targets:
        """A new copy at `version` with these hosts' rows replaced (changed at `at`)."""
        rows = list(self.rows)
        updating = set(self.updating)
        for host, row in changes.items():
            rows[self.position[host]] = row
            if row.state == TargetState.UPDATING:
                updating.add(host)
            else:
                updating.discard(host)
        last = max(self.last_change, at) if changes else self.last_change
        return Targets(version, tuple(rows), self.position, frozenset(updating), last)


_COLUMN = {name: i for i, name in enumerate(Target._fields)}


def replaced(row: Target, **changes: Unpack[Changes]) -> Target:
    """A copy of `row` with some columns changed, set by position: the named tuple's
    `_replace` cost twice as much (1.1 against 0.55 us) for every row a pass changes."""
    values: list[object] = list(row)
    for name, value in changes.items():
        values[_COLUMN[name]] = value
    return tuple.__new__(Target, values)


SETTLED = frozenset({TargetState.HEALTHY, TargetState.SKIPPED})  # judged on no status

# status seq, state, assigned_at, connected and since when (see Hosts.presence)
Basis = tuple[int, str, dt.datetime | None, bool, float | None]


@dataclass
class Judged:
    """Per row of one deployment: what it was last judged on, and the planner's target."""

    wanted: Wanted
    size: int
    basis: list[Basis | None] = field(default_factory=list)
    planned: list[Planned | None] = field(default_factory=list)
    judged_all_at: float = float("-inf")  # monotonic

    def __post_init__(self) -> None:
        self.basis = [None] * self.size
        self.planned = [None] * self.size

    def to_judge(self, targets: Targets, news: Iterable[str], now: float) -> Iterable[int]:
        """Positions of the rows to look at this pass: every one now and then, else those of
        hosts with news (`news`: hosts that reported, connected or went away, and the rows
        the last pass changed)."""
        if now - self.judged_all_at >= FULL_VIEW_SECONDS:
            self.judged_all_at = now
            return range(self.size)
        position = targets.position
        return [p for n in news if (p := position.get(n)) is not None]

    def unsettled(self, targets: Targets, positions: Iterable[int]) -> list[int]:
        """The positions among `positions` that need a status to be judged. A healthy or
        skipped row needs none: the planner asks nothing more of a host that turned healthy
        (it stays so) or was skipped, and the pass after 10,000 hosts turned healthy judged
        them all again."""
        rows, planned, basis = targets.rows, self.planned, self.basis
        left = []
        for p in positions:
            row = rows[p]
            if row.state not in SETTLED:
                left.append(p)
                continue
            was = basis[p]
            if was is None or was[1] != row.state:
                planned[p] = Planned(name=row.host_name, state=row.state)
                basis[p] = (-1, row.state, row.assigned_at, True, None)
        return left

    def judge(
        self,
        targets: Targets,
        positions: Iterable[int],
        statuses: Mapping[str, Reported],
        presence: Callable[[str], tuple[bool, float | None]],
    ) -> None:
        """Judge the rows at `positions` (from `unsettled`) again, from their hosts' last
        statuses, where what they were judged on changed. Each question matters in one state
        only (see the planner): convergence and the agent's problem while updating, the
        pre-pull while pending, and the image while updating (a cancel does not wait for a
        host still pulling)."""
        rows, wanted = targets.rows, self.wanted
        for p in positions:
            row = rows[p]
            reported = statuses[row.host_name]
            connected, since = presence(row.host_name)
            basis = (reported.seq, row.state, row.assigned_at, connected, since)
            if self.basis[p] == basis:
                continue
            verdict = judge(wanted, reported.status)
            updating = row.state == TargetState.UPDATING
            pending = row.state == TargetState.PENDING
            self.planned[p] = Planned(
                name=row.host_name,
                state=row.state,
                assigned_at=seconds_of(row.assigned_at),
                connected=connected,
                since=since,
                converged=updating and verdict.state == TargetState.HEALTHY,
                problem=verdict.problem if updating else None,
                pulled=verdict.pulled if pending or updating else True,
                pull_error=verdict.pull_error if pending else None,
                engine_down=reported.status is not None
                and reported.status.engine_error is not None,
            )
            self.basis[p] = basis

    def complete(self) -> tuple[Planned, ...]:
        """Every row's planner target; raises if one was never judged (a bug)."""
        if None in self.planned:
            raise RuntimeError("a target host was never judged")
        return tuple(self.planned)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=1024)
def seconds_of(value: dt.datetime | None) -> float | None:
    """Seconds since the epoch of a stored time (naive from SQLite: UTC); cached, as the rows
    a pass changed share one time (half of building a view of 10,000 hosts was converting
    the same few datetimes)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()
