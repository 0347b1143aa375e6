"""Deployment transitions beside the planner: operators' actions and a deployment's end. Pure.

`plan_rollout` decides what a pass does next; these decide what an operator's pause, resume,
promote or cancel does to a deployment, what a deployment's end does to its app and
releases, and whether a failure starts an automatic rollback. Data in, data out: the API
and the controller read the rows, call these, and write what they answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from server.errors import Conflict
from server.rollout.planner import Strategy
from server.states import (
    TERMINAL,
    Action,
    DeploymentKind,
    DeploymentStatus,
    Outcome,
)


@dataclass(frozen=True)
class Control:
    """The part of a deployment that operators' actions change."""

    id: int
    status: str
    promoted: bool
    cancel_requested: bool
    canary: int  # the strategy's canaries


@dataclass(frozen=True)
class Acted:
    """A deployment after an operator's action."""

    status: str
    promoted: bool
    cancel_requested: bool
    progress_restarts: bool  # progress_deadline counts from now


def act(deployment: Control, action: Action) -> Acted:
    """What `action` does to a deployment; a Conflict if it cannot be done now."""
    status = deployment.status
    if status in TERMINAL:
        raise Conflict("deployment_finished", f"deployment {deployment.id} already {status}")
    same = Acted(status, deployment.promoted, deployment.cancel_requested, False)
    if action == Action.PAUSE:
        if status == DeploymentStatus.PENDING:
            raise Conflict("not_running", "a pending deployment cannot be paused yet; retry")
        return Acted(DeploymentStatus.PAUSED, same.promoted, same.cancel_requested, False)
    if action == Action.RESUME:
        if status != DeploymentStatus.PAUSED:
            raise Conflict("not_paused", f"deployment {deployment.id} is {status}")
        return Acted(DeploymentStatus.RUNNING, same.promoted, same.cancel_requested, True)
    if action == Action.PROMOTE:
        if not deployment.canary:
            raise Conflict("no_canary", f"deployment {deployment.id} has no canary to promote")
        resumed = DeploymentStatus.RUNNING if status == DeploymentStatus.PAUSED else status
        return Acted(resumed, True, same.cancel_requested, True)
    # cancel: finish the current batch, start no new one, roll nothing back
    return Acted(status, same.promoted, True, False)


@dataclass(frozen=True)
class Ending:
    """What a deployment's end changes besides the deployment itself."""

    current_release: int | None  # the app's, after it
    outcome: str | None  # of the deployment's release (None: unchanged)
    previous_outcome: str | None = None  # of the app's release before it (None: unchanged)


def ending(
    kind: str,
    status: str,
    release: int,
    current: int | None,
    outcome: str | None,
    previous_outcome: str | None,
) -> Ending:
    """A deployment of `release` of `kind` ends with `status`; the app's current release was
    `current`, the release's outcome `outcome`, the current release's `previous_outcome`.

    A success makes the release current and `succeeded` (a release marked bad stays bad); a
    rollback's success marks the release it went back from `rolled_back`, unless that one
    had failed. A failure marks a release with no outcome yet `failed`."""
    if status == DeploymentStatus.SUCCEEDED:
        previous = None
        went_back = kind == DeploymentKind.ROLLBACK and current and current != release
        if went_back and previous_outcome in (None, Outcome.SUCCEEDED):
            previous = Outcome.ROLLED_BACK
        mine = None if outcome == Outcome.BAD else Outcome.SUCCEEDED
        return Ending(release, mine, previous)
    if status == DeploymentStatus.FAILED and outcome is None:
        return Ending(current, Outcome.FAILED)
    return Ending(current, None)


def rolls_back(kind: str, strategy: Strategy, good: int | None) -> bool:
    """Does a failed deployment start an automatic rollback (to release `good`)?"""
    return kind == DeploymentKind.DEPLOY and strategy.auto_rollback and good is not None


def rollback_strategy(strategy: Strategy, hosts: int) -> dict[str, object]:
    """An automatic rollback's strategy: every touched host at once, the same deadlines, and
    no rollback of its own (a failing rollback stops; it never bounces back)."""
    return {
        "max_parallel": max(1, hosts),
        "healthy_deadline": strategy.healthy_deadline,
        "progress_deadline": strategy.progress_deadline,
        "auto_rollback": False,
    }


def control_of(deployment_id: int, status: str, promoted: bool, cancel: bool,
               strategy: Mapping[str, object]) -> Control:  # fmt: skip
    """The Control of a deployment row's values."""
    canary = strategy.get("canary") or 0
    return Control(deployment_id, status, promoted, cancel, int(canary))  # type: ignore[call-overload]
