"""The rollout planner: a deployment and what its hosts report -> the next step. Pure, no I/O.

Hosts move pending -> updating -> healthy | failed. Nothing is assigned until every target
host has pulled the new image (unless one batch takes them all); then canaries go first, then
at most `max_parallel` hosts are updating at once. A terminal deployment never changes. The
clock is an argument (`now`, seconds), so every deadline is testable without waiting.

A fault is never a verdict on a release. A host's `healthy_deadline` counts from the latest
of: its assignment, the server's start (`View.resumed_at`: the server was down or restarting
before it), and the host's current connection (time spent reconnecting does not count). A host
that went away is given `reconnect_grace` before its deadline can fail it. The deployment's
`progress_deadline` also counts from the server's start at the earliest.

A host away for longer than `reconnect_grace` when a deployment starts is `skipped` (with
`strategy.disconnected: "skip"`, the default; `"wait"` waits for it as above): it is not
waited for, counts as done for the deployment's success, is no canary, and gets the release
when the deployment succeeds (`skipped_at_start`; the controller writes its assignment then,
and its agent converges when it comes back). A deployment whose targets are all skipped
succeeds: nothing failed, and each of them gets the release when it comes back.

A cancel lets the hosts that are updating finish, but not one that does not have the new
image yet (`Target.pulled`: it is still pulling, perhaps from a registry that never answers,
and has changed nothing): such a host goes back to `pending` and to its previous release
(`Step.revert`), and the deployment is cancelled at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from server.states import ACTIVE as ACTIVE
from server.states import TERMINAL as TERMINAL
from server.states import DeploymentStatus, Disconnected, TargetState

# module names for the members: the loop below compares every target's state, 10,000 a pass
PENDING, UPDATING, HEALTHY, FAILED, SKIPPED = TargetState
_RUNNING, _PAUSED = DeploymentStatus.RUNNING, DeploymentStatus.PAUSED
_SUCCEEDED, _FAILED = DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED
_CANCELLED = DeploymentStatus.CANCELLED


@dataclass(frozen=True)
class Strategy:
    """How a deployment rolls out: batch size, canaries, deadlines, automatic rollback."""

    max_parallel: int = 1
    canary: int = 0
    auto_promote: bool = False
    healthy_deadline: float = 60.0
    progress_deadline: float = 600.0
    auto_rollback: bool = True
    reconnect_grace: float = 30.0  # a host away this long at most is reconnecting, not failing
    disconnected: str = Disconnected.SKIP  # a host away longer at the start

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> Strategy:
        """A strategy from a deployment's stored strategy (unknown keys ignored)."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in raw.items() if k in names})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Target:
    """One target host as the controller sees it this pass."""

    name: str
    state: str  # pending | updating | healthy | failed | skipped
    assigned_at: float | None = None
    connected: bool = True
    since: float | None = None  # when the host's connection came up, or went away if not
    converged: bool = False  # all replicas of the target release are running and ready
    problem: str | None = None  # the agent's evidence of failure for the target release
    pulled: bool = True  # the host has the release's image (pre-pull done, or pulled since)
    pull_error: str | None = None
    engine_down: bool = False  # its Docker Engine does not answer: a fault, not a verdict


@dataclass(frozen=True)
class View:
    """What the planner sees of one deployment this pass."""

    status: str
    strategy: Strategy
    targets: tuple[Target, ...]
    started_at: float
    last_progress_at: float
    resumed_at: float = 0.0  # when this server (process) started: it was down before
    promoted: bool = False  # canaries were promoted (by hand or automatically)
    cancel_requested: bool = False


@dataclass(frozen=True)
class Step:
    """What the controller does next for one deployment: its status, the hosts to assign, the hosts' new states."""

    status: str
    assign: tuple[str, ...] = ()
    host_states: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    error: str | None = None
    promoted: bool = False
    updating: int = 0  # hosts updating after this step, besides those it assigns
    revert: tuple[str, ...] = ()  # hosts to return to their previous release (a cancel)


def plan_rollout(view: View, now: float) -> Step:
    """Decide what the controller does next for one deployment.

    One walk over the targets: the controller calls this for every status that comes in
    during a rollout, so at 10,000 hosts each extra walk is a cost paid hundreds of times."""
    if view.status in TERMINAL:
        return Step(status=view.status)
    if not view.targets:
        return Step(status=_FAILED, error="no host matches the deployment's host selector")
    strategy = view.strategy
    changes: dict[str, tuple[str, str | None]] = {}
    states: dict[str, str] = {}
    first_failed: Target | None = None
    healthy = updating = skipped = 0
    progressed = False  # a host turned healthy in this pass
    waiting: list[Target] = []
    pulling: list[str] = []  # updating hosts that do not have the image yet
    for t in view.targets:
        if t.state == HEALTHY:  # a healthy host stays so (the common case, judged quickly)
            states[t.name] = HEALTHY
            healthy += 1
            continue
        if t.state == SKIPPED:  # not waited for: done
            states[t.name] = SKIPPED
            skipped += 1
            continue
        state, error = _judge(t, strategy, now, view)
        states[t.name] = state
        if state != t.state:
            changes[t.name] = (state, error)
        if state == HEALTHY:
            healthy += 1
            progressed = True
        elif state == UPDATING:
            updating += 1
            if not t.pulled:
                pulling.append(t.name)
        elif state == PENDING:
            waiting.append(t)
        elif state == FAILED and first_failed is None:
            first_failed = t

    if first_failed is not None:
        name = first_failed.name
        reason = changes.get(name, (None, None))[1] or first_failed.problem or "failed"
        return Step(_FAILED, host_states=changes, error=f"host {name}: {reason}", updating=updating)
    if healthy + skipped == len(states):
        return Step(_SUCCEEDED, host_states=changes)
    if view.cancel_requested and updating == len(pulling):
        for name in pulling:  # it changed nothing yet: back to where it was
            changes[name] = (PENDING, None)
        why = (
            f"{', '.join(pulling)}: still pulling, back to the previous release"
            if pulling
            else None
        )
        return Step(_CANCELLED, host_states=changes, error=why, revert=tuple(pulling))
    stalled = now - max(view.last_progress_at, view.resumed_at) > strategy.progress_deadline
    if stalled and not progressed and view.status != _PAUSED:
        return Step(
            _FAILED,
            host_states=changes,
            error=f"no progress within progress_deadline ({strategy.progress_deadline:g}s)",
            updating=updating,
        )

    canaries = _canaries(view.targets, strategy.canary, skipped)
    promoted = view.promoted
    pool: list[str] | None = None  # the hosts that may be assigned now; None: all of them
    if canaries and not promoted:
        if all(states[n] == HEALTHY for n in canaries):
            if not strategy.auto_promote:
                return Step(_PAUSED, host_states=changes, updating=updating)
            promoted = True
        pool = canaries
    if view.status == _PAUSED or view.cancel_requested:
        return Step(view.status, host_states=changes, promoted=promoted, updating=updating)
    if not waiting:  # every host is assigned already: only their states can change
        return Step(_RUNNING, host_states=changes, promoted=promoted, updating=updating)
    if pool is None:
        pool = [t.name for t in view.targets]
    room = max(0, strategy.max_parallel - updating)
    gated = len(view.targets) > 1 and not _one_batch(waiting, pool, room)
    if gated and not all(t.pulled for t in waiting):
        # pre-pull: no host stops anything before every target host has the new image
        return Step(_RUNNING, host_states=changes, promoted=promoted, updating=updating)
    assign = tuple(n for n in pool if states[n] == PENDING)[:room]
    for name in assign:
        changes[name] = (UPDATING, None)
    return Step(_RUNNING, assign=assign, host_states=changes, promoted=promoted, updating=updating)


def _canaries(targets: tuple[Target, ...], count: int, skipped: int) -> list[str]:
    """The first `count` target hosts that are not skipped."""
    if not count:
        return []
    if not skipped:
        return [t.name for t in targets[:count]]
    return [t.name for t in targets if t.state != SKIPPED][:count]


def skipped_at_start(
    strategy: Strategy, targets: Iterable[Target], now: float, resumed_at: float
) -> frozenset[str]:
    """The target hosts a deployment starting at `now` skips: with `disconnected: "skip"`,
    those away for longer than `reconnect_grace` (`since`: when each went away, or was last
    seen; time the server itself was down, before `resumed_at`, does not count)."""
    if strategy.disconnected != Disconnected.SKIP:
        return frozenset()
    grace = strategy.reconnect_grace
    return frozenset(
        t.name for t in targets if not t.connected and now - max(t.since or 0.0, resumed_at) > grace
    )


def _one_batch(waiting: list[Target], pool: list[str], room: int) -> bool:
    """Would this step assign every waiting host, each of them connected?

    Then the pre-pull gate has nothing to protect: it keeps early batches from stopping
    before later ones can pull, and every agent pulls before it stops anything, on its own
    (a single host never needed the gate). Skipping it saves a whole round of messages, which
    is most of a large fan-out. The cost: a host that cannot pull fails the deployment after
    the others switched, and the automatic rollback returns them, as for any failed batch. An
    away host keeps the gate, so that it fails the deployment before anything is touched.
    """
    if len(waiting) > room or not all(t.connected for t in waiting):
        return False
    return {t.name for t in waiting} <= set(pool)


def rollback_targets(states: Mapping[str, str]) -> tuple[str, ...]:
    """The hosts an automatic rollback goes to: those the failed deployment touched.

    A failure before any host was assigned (a pre-pull error) touched nothing; the rollback
    then goes to every target, where it just confirms the release they still run. A skipped
    host was never touched.
    """
    touched = tuple(n for n, state in states.items() if state not in (PENDING, SKIPPED))
    return touched or tuple(states)


def _judge(t: Target, strategy: Strategy, now: float, view: View) -> tuple[str, str | None]:
    """The state a target host is in now, with the reason when it failed."""
    if t.state == PENDING and t.pull_error:
        return FAILED, t.pull_error
    if t.state == UPDATING:
        if t.converged:
            return HEALTHY, None
        if t.problem:
            return FAILED, t.problem
    elif t.state != PENDING or t.pulled or t.connected:
        return t.state, None  # settled, or a pending host that pulled or is here: it waits
    if t.engine_down:
        return t.state, None  # its Engine is down: no deadline runs (progress_deadline does)
    # an updating host, or a pending one away before its pre-pull: its deadline may fail it
    if not t.connected and now - max(t.since or 0.0, view.resumed_at) <= strategy.reconnect_grace:
        return t.state, None  # reconnecting: no deadline fails it yet
    limit = f"healthy_deadline ({strategy.healthy_deadline:g}s)"
    if t.state == PENDING:
        # the pre-pull waits for every target: a host that is away cannot hold it forever
        if now - max(view.started_at, view.resumed_at) > strategy.healthy_deadline:
            return FAILED, f"host disconnected: no pre-pull within {limit}"
        return PENDING, None
    if t.assigned_at is None:
        return UPDATING, None
    here_since = (t.since or 0.0) if t.connected else 0.0
    if now - max(t.assigned_at, view.resumed_at, here_since) > strategy.healthy_deadline:
        why = "" if t.connected else " (host disconnected)"
        return FAILED, f"not healthy within {limit}{why}"
    return UPDATING, None
