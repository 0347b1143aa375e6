"""Properties and examples of the pure rollout planner (`server.rollout.planner`).

The property tests play the controller: plan a step, apply its host states and assignments,
let hosts converge, fail or stall as time passes, sometimes promote or cancel, and plan again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from server.rollout.planner import (
    Step,
    Strategy,
    Target,
    View,
    plan_rollout,
    rollback_targets,
    skipped_at_start,
)
from server.states import TERMINAL

SETTINGS = settings(max_examples=200, deadline=None)
HEALTHY_DEADLINE = 60.0
PROGRESS_DEADLINE = 600.0


def strategy(**kw: Any) -> Strategy:
    return replace(
        Strategy(healthy_deadline=HEALTHY_DEADLINE, progress_deadline=PROGRESS_DEADLINE), **kw
    )


def view(*targets: Target, status: str = "running", **kw: Any) -> View:
    base = View(
        status=status,
        strategy=strategy(),
        targets=targets,
        started_at=0.0,
        last_progress_at=0.0,
    )
    return replace(base, **kw)


# --- a small controller, for the property tests -----------------------------------------------


@dataclass
class Rollout:
    strategy: Strategy
    targets: dict[str, Target]
    status: str = "running"
    now: float = 0.0
    last_progress_at: float = 0.0
    promoted: bool = False
    cancel_requested: bool = False
    assigned: list[str] = field(default_factory=list)

    def view(self) -> View:
        return View(
            status=self.status,
            strategy=self.strategy,
            targets=tuple(self.targets.values()),
            started_at=0.0,
            last_progress_at=self.last_progress_at,
            promoted=self.promoted,
            cancel_requested=self.cancel_requested,
        )

    def apply(self, step: Step) -> None:
        """What the controller writes: host states, assignments, promotion, status."""
        for name, (state, _error) in step.host_states.items():
            self.targets[name] = replace(self.targets[name], state=state)
        for name in step.assign:
            self.targets[name] = replace(self.targets[name], assigned_at=self.now)
            self.assigned.append(name)
        if step.host_states:
            self.last_progress_at = self.now
        self.promoted = self.promoted or step.promoted
        self.status = step.status

    def states(self) -> dict[str, str]:
        return {n: t.state for n, t in self.targets.items()}


strategies = st.builds(
    strategy,
    max_parallel=st.integers(1, 4),
    canary=st.integers(0, 3),
    auto_promote=st.booleans(),
)


def play(data: st.DataObject, rollout: Rollout, passes: int = 40) -> list[tuple[View, Step]]:
    """Drive a rollout to the end (or `passes`), checking the invariants of every pass."""
    history = []
    canaries = list(rollout.targets)[: rollout.strategy.canary]
    for _ in range(passes):
        before = rollout.view()
        pending = {n for n, s in rollout.states().items() if s == "pending"}
        step = plan_rollout(before, rollout.now)
        history.append((before, step))
        rollout.apply(step)
        states = rollout.states()

        assert set(step.assign) <= pending, "only pending hosts are assigned"
        assert len(set(step.assign)) == len(step.assign)
        updating = [n for n, s in states.items() if s == "updating"]
        assert len(updating) <= rollout.strategy.max_parallel, (step, states)
        if before.status not in TERMINAL and before.targets:  # what the controller counts on
            assert step.updating == len(set(updating) - set(step.assign)), (step, states)
        if canaries and any(n not in canaries for n in step.assign):
            assert all(states[c] == "healthy" for c in canaries), (step, states)
            assert before.promoted, "non-canaries wait for the promotion to be recorded"
        if before.cancel_requested:
            assert step.assign == ()
        unpulled = [t for t in before.targets if t.name in pending and not t.pulled]
        if step.assign and unpulled and len(before.targets) > 1:
            # pre-pull gate: only a step that takes every waiting host at once may skip it
            assert set(step.assign) == pending, (step, unpulled)
        if (
            canaries
            and not rollout.strategy.auto_promote
            and not before.promoted
            and all(states[c] == "healthy" for c in canaries)
            and step.status not in TERMINAL
        ):
            assert step.status == "paused"

        if step.status in TERMINAL:
            again = plan_rollout(rollout.view(), rollout.now + data.draw(st.floats(0, 1e6)))
            assert (again.status, again.assign, again.host_states) == (step.status, (), {})
            break

        # The world moves on: promote by hand, cancel, time passes, hosts report.
        if step.status == "paused" and data.draw(st.booleans(), label="promote"):
            rollout.promoted, rollout.status = True, "running"
        if data.draw(st.integers(0, 15), label="cancel") == 0:
            rollout.cancel_requested = True
        rollout.now += data.draw(st.floats(0, 45), label="elapsed")
        for name, t in rollout.targets.items():
            if not t.pulled and data.draw(st.booleans(), label=f"pulled {name}"):
                rollout.targets[name] = replace(t, pulled=True)
        for name in updating:
            outcome = data.draw(
                st.sampled_from(
                    ["wait", "converge", "converge", "converge", "problem", "disconnect"]
                ),
                label=f"outcome {name}",
            )
            t = rollout.targets[name]
            if outcome == "converge":
                rollout.targets[name] = replace(t, converged=True)
            elif outcome == "problem":
                rollout.targets[name] = replace(t, problem="exited with code 1")
            elif outcome == "disconnect":
                rollout.targets[name] = replace(t, connected=False)
    return history


@st.composite
def rollouts(draw: st.DrawFn) -> Rollout:
    n = draw(st.integers(1, 8))
    names = [f"host-{i}" for i in range(n)]
    pulled = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    targets = {
        name: Target(name=name, state="pending", pulled=p)
        for name, p in zip(names, pulled, strict=True)
    }
    return Rollout(strategy=draw(strategies), targets=targets)


# --- properties -------------------------------------------------------------------------------


@SETTINGS
@given(rollout=rollouts(), data=st.data())
def test_rollout_invariants_hold_on_every_pass(rollout: Rollout, data: st.DataObject) -> None:
    """Over any run: at most `max_parallel` hosts updating, only pending hosts assigned, canaries
    healthy and promoted before any other host, `paused` while canaries await a manual
    promotion, no assignment once cancel is asked, nothing assigned before every waiting host
    pulled the image unless one step takes them all, and a terminal status is final."""
    play(data, rollout)


@SETTINGS
@given(rollout=rollouts(), data=st.data())
def test_every_host_is_assigned_at_most_once(rollout: Rollout, data: st.DataObject) -> None:
    """A host gets the release once per deployment; success means every host was assigned."""
    history = play(data, rollout, passes=60)
    assert len(rollout.assigned) == len(set(rollout.assigned))
    if history[-1][1].status == "succeeded":
        assert sorted(rollout.assigned) == sorted(rollout.targets)
        assert set(rollout.states().values()) == {"healthy"}


@SETTINGS
@given(
    status=st.sampled_from(sorted(TERMINAL)),
    states=st.lists(st.sampled_from(["pending", "updating", "healthy", "failed"]), max_size=6),
    converged=st.booleans(),
    problem=st.none() | st.just("exited"),
    cancel=st.booleans(),
    promoted=st.booleans(),
    now=st.floats(0, 1e7),
    strat=strategies,
)
def test_terminal_status_never_changes(
    status: str,
    states: list[str],
    converged: bool,
    problem: str | None,
    cancel: bool,
    promoted: bool,
    now: float,
    strat: Strategy,
) -> None:
    """A finished deployment stays finished: same status, no assignments, no host changes."""
    targets = tuple(
        Target(f"h{i}", s, assigned_at=0.0, converged=converged, problem=problem)
        for i, s in enumerate(states)
    )
    v = view(*targets, status=status, strategy=strat, cancel_requested=cancel, promoted=promoted)
    step = plan_rollout(v, now)
    assert (step.status, step.assign, step.host_states) == (status, (), {})


# --- examples ---------------------------------------------------------------------------------


def test_all_hosts_healthy_succeeds() -> None:
    """The last host to converge turns the deployment `succeeded`."""
    step = plan_rollout(
        view(
            Target("a", "healthy"),
            Target("b", "updating", assigned_at=10.0, converged=True),
        ),
        now=20.0,
    )
    assert step.status == "succeeded"
    assert step.host_states == {"b": ("healthy", None)}
    assert step.error is None


def test_problem_while_updating_fails_naming_the_host() -> None:
    """The agent's evidence fails the deployment, and the error says which host and why."""
    step = plan_rollout(
        view(
            Target("a", "healthy"),
            Target("web-7", "updating", assigned_at=10.0, problem="exited with code 3"),
            Target("c", "pending"),
        ),
        now=20.0,
    )
    assert step.status == "failed"
    assert step.host_states == {"web-7": ("failed", "exited with code 3")}
    assert step.error is not None
    assert "web-7" in step.error and "exited with code 3" in step.error
    assert step.assign == ()


def test_updating_past_healthy_deadline_fails() -> None:
    """A host not healthy by `healthy_deadline` fails it; just before the deadline it waits."""
    targets = (Target("web-2", "updating", assigned_at=100.0), Target("b", "pending"))
    waiting = plan_rollout(view(*targets), now=100.0 + HEALTHY_DEADLINE)
    assert waiting.status == "running" and waiting.host_states == {}

    late = plan_rollout(view(*targets), now=100.0 + HEALTHY_DEADLINE + 1)
    assert late.status == "failed"
    assert late.error is not None and "web-2" in late.error and "healthy_deadline" in late.error
    assert late.host_states["web-2"][0] == "failed"


def test_disconnected_host_past_healthy_deadline_says_so() -> None:
    """The error tells the operator the host was unreachable, not merely slow."""
    t = Target("web-2", "updating", assigned_at=0.0, connected=False)
    step = plan_rollout(view(t), now=HEALTHY_DEADLINE + 1)
    assert step.status == "failed"
    assert step.error is not None and "disconnected" in step.error


def test_no_progress_past_progress_deadline_fails() -> None:
    """A rollout that stalls longer than `progress_deadline` fails with that reason."""
    v = view(
        Target("a", "healthy"),
        Target("b", "updating", assigned_at=None),
        strategy=strategy(healthy_deadline=1e9),
        last_progress_at=50.0,
    )
    assert plan_rollout(v, now=50.0 + PROGRESS_DEADLINE).status == "running"
    step = plan_rollout(v, now=50.0 + PROGRESS_DEADLINE + 1)
    assert step.status == "failed"
    assert step.error is not None and "progress_deadline" in step.error


def test_progress_in_this_pass_beats_the_progress_deadline() -> None:
    """A host turning healthy in this very pass is progress, however late it is."""
    v = view(
        Target("a", "updating", assigned_at=0.0, converged=True),
        Target("b", "pending"),
        strategy=strategy(healthy_deadline=1e9),
    )
    step = plan_rollout(v, now=PROGRESS_DEADLINE * 2)
    assert step.status == "running"
    assert step.assign == ("b",)


def test_empty_targets_fail_with_a_clear_error() -> None:
    """No host matches the selector: fail at once, and say so."""
    step = plan_rollout(view(), now=0.0)
    assert step.status == "failed"
    assert step.error is not None and "no host" in step.error
    assert step.assign == ()


def test_cancel_with_nothing_updating_is_cancelled() -> None:
    """Cancel stops the rollout where it is: no new assignments."""
    v = view(Target("a", "healthy"), Target("b", "pending"), cancel_requested=True)
    step = plan_rollout(v, now=1.0)
    assert step.status == "cancelled"
    assert step.assign == ()


def test_cancel_waits_for_updating_hosts_without_assigning_more() -> None:
    """Cancel lets hosts in flight finish, assigns nothing new, then is cancelled."""
    updating = Target("a", "updating", assigned_at=0.0)
    v = view(updating, Target("b", "pending"), cancel_requested=True)
    step = plan_rollout(v, now=1.0)
    assert step.status == "running" and step.assign == ()

    done = plan_rollout(replace(v, targets=(replace(updating, converged=True), v.targets[1])), 2.0)
    assert done.status == "cancelled" and done.assign == ()
    assert done.host_states == {"a": ("healthy", None)}


def test_first_pass_assigns_the_canaries_only() -> None:
    """Canaries go first, `max_parallel` at a time, in target order."""
    v = view(
        *(Target(f"h{i}", "pending") for i in range(5)),
        strategy=strategy(canary=2, max_parallel=3),
    )
    step = plan_rollout(v, now=0.0)
    assert step.status == "running"
    assert step.assign == ("h0", "h1")


def test_healthy_canaries_pause_for_manual_promotion() -> None:
    """Without auto_promote the rollout pauses once the canaries are healthy."""
    canary = Target("h0", "updating", assigned_at=0.0, converged=True)
    v = view(canary, Target("h1", "pending"), strategy=strategy(canary=1))
    step = plan_rollout(v, now=5.0)
    assert step.status == "paused"
    assert step.assign == ()
    assert step.host_states == {"h0": ("healthy", None)}


def test_promoted_rollout_assigns_the_rest() -> None:
    """After a promotion the remaining hosts go out, `max_parallel` at a time."""
    v = view(
        Target("h0", "healthy"),
        Target("h1", "pending"),
        Target("h2", "pending"),
        Target("h3", "pending"),
        strategy=strategy(canary=1, max_parallel=2),
        promoted=True,
    )
    step = plan_rollout(v, now=5.0)
    assert step.status == "running"
    assert step.assign == ("h1", "h2")


def test_auto_promote_records_the_promotion() -> None:
    """With auto_promote, healthy canaries promote the deployment instead of pausing it."""
    canary = Target("h0", "updating", assigned_at=0.0, converged=True)
    v = view(canary, Target("h1", "pending"), strategy=strategy(canary=1, auto_promote=True))
    step = plan_rollout(v, now=5.0)
    assert step.status == "running"
    assert step.promoted is True


def test_paused_rollout_does_not_fail_on_progress_deadline() -> None:
    """Waiting for a human to promote is not a stalled rollout."""
    v = view(
        Target("h0", "healthy"),
        Target("h1", "pending"),
        status="paused",
        strategy=strategy(canary=1),
        last_progress_at=0.0,
    )
    assert plan_rollout(v, now=PROGRESS_DEADLINE + 1).status == "paused"


def test_pre_pull_holds_every_host_while_one_lacks_the_image() -> None:
    """With more than one batch, no host is assigned before every target has the image."""
    v = view(
        Target("a", "pending"),
        Target("b", "pending", pulled=False),
        Target("c", "pending"),
        strategy=strategy(max_parallel=2),
    )
    step = plan_rollout(v, now=1.0)
    assert step.status == "running" and step.assign == ()

    pulled = replace(v, targets=tuple(replace(t, pulled=True) for t in v.targets))
    assert plan_rollout(pulled, now=2.0).assign == ("a", "b")


def test_one_batch_of_connected_hosts_skips_the_pre_pull_round() -> None:
    """When one step takes every host, each agent's own pull-before-stop is the gate."""
    v = view(
        *(Target(f"h{i}", "pending", pulled=False) for i in range(3)),
        strategy=strategy(max_parallel=3),
    )
    step = plan_rollout(v, now=0.0)
    assert step.assign == ("h0", "h1", "h2")


def test_an_away_host_keeps_the_pre_pull_gate_for_one_batch() -> None:
    """A disconnected host fails the deployment before anything is touched, not after."""
    v = view(
        Target("a", "pending", pulled=False),
        Target("b", "pending", pulled=False, connected=False),
        strategy=strategy(max_parallel=2, healthy_deadline=5.0),
    )
    assert plan_rollout(v, now=1.0).assign == ()
    assert plan_rollout(v, now=6.0).status == "running"  # away, but within reconnect_grace
    late = plan_rollout(v, now=31.0)
    assert late.status == "failed" and "no pre-pull" in (late.error or "")


# --- faults are no verdicts (issue 20) ----------------------------------------------------------


def test_the_healthy_deadline_counts_from_the_servers_start() -> None:
    """A server that was down (or restarting) while a host updated does not fail it for that."""
    t = Target("web-1", "updating", assigned_at=0.0)
    v = view(t, strategy=strategy(healthy_deadline=60.0))
    v = replace(v, resumed_at=100.0)
    assert plan_rollout(v, now=150.0).status == "running"
    assert plan_rollout(v, now=161.0).status == "failed"


def test_a_host_reconnecting_within_the_grace_is_not_failed() -> None:
    """Past its deadline, a host that went away 15 s ago is reconnecting, not failing; past
    the grace its deadline holds, and the error says it was disconnected."""
    t = Target("web-1", "updating", assigned_at=0.0, connected=False, since=55.0)
    v = view(t, strategy=strategy(healthy_deadline=60.0, reconnect_grace=30.0))
    assert plan_rollout(v, now=70.0).status == "running"
    late = plan_rollout(v, now=86.0)
    assert late.status == "failed" and "disconnected" in (late.error or "")


def test_time_spent_reconnecting_does_not_count() -> None:
    """The deadline of a host that reconnected counts from its new connection."""
    t = Target("web-1", "updating", assigned_at=0.0, connected=True, since=50.0)
    v = view(t, strategy=strategy(healthy_deadline=60.0))
    assert plan_rollout(v, now=100.0).status == "running"
    assert plan_rollout(v, now=111.0).status == "failed"


def test_the_progress_deadline_counts_from_the_servers_start() -> None:
    v = view(
        Target("b", "updating", assigned_at=None),
        strategy=strategy(healthy_deadline=1e9),
        last_progress_at=0.0,
    )
    v = replace(v, resumed_at=1000.0)
    assert plan_rollout(v, now=1000.0 + PROGRESS_DEADLINE).status == "running"
    assert plan_rollout(v, now=1001.0 + PROGRESS_DEADLINE).status == "failed"


def test_canaries_keep_the_pre_pull_gate() -> None:
    """Canaries are a first batch: the rest must have the image before they start."""
    v = view(
        *(Target(f"h{i}", "pending", pulled=False) for i in range(3)),
        strategy=strategy(canary=1, max_parallel=3),
    )
    assert plan_rollout(v, now=0.0).assign == ()


def test_a_host_whose_engine_is_down_is_not_failed_by_its_deadline() -> None:
    """Its Docker Engine not answering is a fault of the host, not evidence on the release."""
    t = Target("web-1", "updating", assigned_at=0.0, engine_down=True)
    v = view(t, strategy=strategy(healthy_deadline=60.0))
    assert plan_rollout(v, now=500.0).status == "running"


# --- hosts away when a deployment starts: skipped (issue 20 item 2) ---------------------------


def test_hosts_away_longer_than_the_grace_are_skipped_at_the_start() -> None:
    s = strategy(reconnect_grace=30.0)
    hosts = [
        Target("here", "pending", connected=True, since=0.0),
        Target("long-gone", "pending", connected=False, since=100.0),
        Target("just-gone", "pending", connected=False, since=180.0),
        Target("never-seen", "pending", connected=False, since=None),
    ]
    assert skipped_at_start(s, hosts, now=200.0, resumed_at=0.0) == {"long-gone", "never-seen"}
    # time the server itself was down does not count: it just started
    assert skipped_at_start(s, hosts, now=200.0, resumed_at=190.0) == set()
    assert skipped_at_start(replace(s, disconnected="wait"), hosts, 200.0, 0.0) == set()


def test_skipped_hosts_count_as_done_and_are_never_assigned() -> None:
    v = view(
        Target("a", "updating", assigned_at=0.0, converged=True),
        Target("b", "skipped", connected=False, since=None, pulled=False),
    )
    step = plan_rollout(v, now=1.0)
    assert step.status == "succeeded" and step.host_states == {"a": ("healthy", None)}
    assert step.assign == ()


def test_a_deployment_whose_targets_are_all_skipped_succeeds() -> None:
    v = view(Target("a", "skipped", connected=False), Target("b", "skipped", connected=False))
    assert plan_rollout(v, now=1e6).status == "succeeded"  # no deadline fails it either


def test_a_skipped_host_neither_holds_the_pre_pull_nor_is_a_canary() -> None:
    v = view(
        Target("a", "skipped", connected=False, pulled=False),
        Target("b", "pending", pulled=True),
        Target("c", "pending", pulled=True),
        strategy=strategy(canary=1, max_parallel=1),
    )
    step = plan_rollout(v, now=1.0)
    assert step.status == "running" and step.assign == ("b",)
    paused = plan_rollout(
        replace(
            v,
            targets=(
                Target("a", "skipped", connected=False),
                Target("b", "healthy"),
                Target("c", "pending"),
            ),
        ),
        now=2.0,
    )
    assert paused.status == "paused"  # the first canary that is not skipped is healthy


def test_a_rollback_never_goes_to_skipped_hosts() -> None:
    assert rollback_targets({"a": "failed", "b": "skipped", "c": "pending"}) == ("a",)
    assert rollback_targets({"a": "pending", "b": "skipped"}) == ("a", "b")  # touched none


# --- a cancel does not wait for hosts still pulling (issue 20 item 4) -------------------------


def test_a_cancel_returns_hosts_still_pulling_and_ends_at_once() -> None:
    v = view(
        Target("a", "updating", assigned_at=0.0, pulled=False),
        Target("b", "updating", assigned_at=0.0, pulled=False),
        Target("c", "pending"),
        cancel_requested=True,
    )
    step = plan_rollout(v, now=1.0)
    assert step.status == "cancelled" and step.revert == ("a", "b")
    assert step.host_states == {"a": ("pending", None), "b": ("pending", None)}
    assert step.assign == ()


def test_a_cancel_waits_for_hosts_that_have_the_image() -> None:
    v = view(
        Target("a", "updating", assigned_at=0.0, pulled=True),
        Target("b", "updating", assigned_at=0.0, pulled=False),
        cancel_requested=True,
    )
    step = plan_rollout(v, now=1.0)
    assert step.status == "running" and step.revert == ()
    done = replace(v, targets=(Target("a", "healthy"), v.targets[1]))
    step = plan_rollout(done, now=2.0)
    assert step.status == "cancelled" and step.revert == ("b",)


def test_without_a_cancel_a_host_still_pulling_keeps_updating() -> None:
    v = view(Target("a", "updating", assigned_at=0.0, pulled=False))
    step = plan_rollout(v, now=1.0)
    assert step.status == "running" and step.revert == () and step.host_states == {}
