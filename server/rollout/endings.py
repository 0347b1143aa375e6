"""Writing a deployment's end: its status, its release's outcome, events, metrics, and the
automatic rollback a failure starts; and the gauge of deployments in progress. The rules are
`server.rollout.transitions`' (pure); this module reads and writes what they need, inside
the controller's transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from server.db import assignments, rollouts, store
from server.db.models import App, Deployment, Release
from server.metrics import Metrics
from server.rollout.planner import Step, Strategy, rollback_targets
from server.rollout.targets import Targets
from server.rollout.transitions import ending, rollback_strategy, rolls_back
from server.states import (
    DeploymentKind,
    DeploymentStatus,
    EventKind,
    Outcome,
    TargetState,
    ended,
)

log = logging.getLogger(__name__)


async def finish(
    session: AsyncSession,
    metrics: Metrics,
    app: App,
    deployment: Deployment,
    release: Release | None,
    status: DeploymentStatus,
    error: str | None,
) -> None:
    """End a deployment (of `release`) with `status`: the app's current release, the
    releases' outcomes, an event, the deployment metrics."""
    now = store.now()
    deployment.status = status
    deployment.error = error
    deployment.finished_at = now
    previous = None
    if status not in (DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED):
        release = None  # its outcome changes only then: not for a superseded deployment
    current = app.current_release
    rollback = deployment.kind == DeploymentKind.ROLLBACK
    if (
        status == DeploymentStatus.SUCCEEDED
        and rollback
        and current
        and current != deployment.release
    ):
        previous = await rollouts.release_row(session, app.id, current)
    end = ending(
        deployment.kind,
        status,
        deployment.release,
        current,
        release.outcome if release is not None else None,
        previous.outcome if previous is not None else None,
    )
    if status == DeploymentStatus.SUCCEEDED and end.current_release is not None:
        app.current_release = end.current_release
        metrics.app_release.labels(app.name).set(end.current_release)
    if release is not None and end.outcome is not None:
        release.outcome = end.outcome
    if previous is not None and end.previous_outcome is not None:
        previous.outcome = end.previous_outcome
    await store.add_event(
        session,
        ended(status),
        "controller",
        f"{deployment.kind} {deployment.id} of release {deployment.release} {status}"
        + (f": {error}" if error else ""),
        app=app.name,
        deployment_id=deployment.id,
    )
    metrics.deployments.labels(app.name, deployment.kind, status).inc()
    if deployment.started_at is not None:
        elapsed = (now - (store.as_utc(deployment.started_at) or now)).total_seconds()
        metrics.deployment_duration.labels(app.name, deployment.kind, status).observe(elapsed)
    log.info(
        "deployment finished app=%s deployment=%s release=%s status=%s",
        app.name, deployment.id, deployment.release, status,
    )  # fmt: skip


@dataclass(frozen=True)
class Ended:
    """What ending a deployment asks of the controller: pushes, and a rollback it created."""

    pushes: frozenset[str]
    rollback: bool


async def conclude(
    session: AsyncSession,
    metrics: Metrics,
    app: App,
    deployment: Deployment,
    release: Release | None,
    step: Step,
    targets: Targets,
) -> Ended:
    """End a deployment as the planner's `step` says (a terminal status): a failure (and
    its automatic rollback), or a success (hosts its release no longer selects lose the app,
    skipped hosts get it) or a cancel (hosts still pulling go back to where they were)."""
    if step.status == DeploymentStatus.FAILED:
        states = {r.host_name: r.state for r in targets.rows}
        error = step.error or "failed"
        failed = await fail(session, metrics, app, deployment, release, error, states)
        return Ended(frozenset(), failed)
    status = DeploymentStatus(step.status)
    await finish(session, metrics, app, deployment, release, status, step.error)
    pushes: set[str] = set()
    if step.revert:
        pushes.update(await revert(session, deployment, targets, step.revert))
    if status == DeploymentStatus.SUCCEEDED:
        pushes.update(await drop_unselected(session, app, deployment))
        pushes.update(await assign_skipped(session, deployment, targets))
    return Ended(frozenset(pushes), False)


async def note(
    session: AsyncSession, app: App, deployment: Deployment, kind: EventKind, what: str
) -> None:
    """The controller's event about a deployment under way: "deploy 12" followed by `what`."""
    message = f"{deployment.kind} {deployment.id}{what}"
    await store.add_event(
        session, kind, "controller", message, app=app.name, deployment_id=deployment.id
    )


async def drop_unselected(session: AsyncSession, app: App, deployment: Deployment) -> list[str]:
    """After a deploy succeeded: the hosts that run the app but that its new release does not
    select lose their assignment (their agents remove its containers), with an event. A
    rollback drops none: it goes only to the hosts a failed deployment touched."""
    if deployment.kind != DeploymentKind.DEPLOY:
        return []
    dropped = await assignments.unassign(session, app.id, except_targets_of=deployment.id)
    if dropped:
        await store.add_event(
            session,
            EventKind.APP_REMOVED,
            "controller",
            f"{app.name} removed from {', '.join(dropped)}: release {deployment.release} "
            "does not select them",
            app=app.name,
            deployment_id=deployment.id,
        )
    return dropped


async def assign_skipped(
    session: AsyncSession, deployment: Deployment, targets: Targets
) -> list[str]:
    """After a deployment succeeded: the hosts it skipped (away when it started) are assigned
    its release, which their agents apply when they come back; their names."""
    rows = [r for r in targets.rows if r.state == TargetState.SKIPPED]
    if rows:
        await assignments.assign(session, [r.host_id for r in rows], deployment)
    return [r.host_name for r in rows]


async def revert(
    session: AsyncSession, deployment: Deployment, targets: Targets, names: Sequence[str]
) -> list[str]:
    """After a cancel: the hosts that were still pulling the deployment's image (nothing of
    theirs changed) go back to their previous release, or lose the app if they had none;
    their names."""
    rows = [targets.row(n) for n in names]
    await assignments.reassign(
        session, deployment.app_id, [(r.host_id, r.previous_release) for r in rows]
    )
    return [r.host_name for r in rows]


async def fail(
    session: AsyncSession,
    metrics: Metrics,
    app: App,
    deployment: Deployment,
    release: Release | None,
    error: str,
    states: dict[str, str],
) -> bool:
    """Fail a deployment (of `release`; target host -> state in `states`); with auto_rollback,
    mark its release bad and create a rollback to the last good release on the hosts it touched.
    Whether a rollback was created."""
    strategy = Strategy.from_dict(deployment.strategy)
    good = None
    if deployment.kind == DeploymentKind.DEPLOY and strategy.auto_rollback:
        good = await rollouts.last_good_release(session, app.id, deployment.release)
    if not rolls_back(deployment.kind, strategy, good) or good is None:
        await finish(session, metrics, app, deployment, release, DeploymentStatus.FAILED, error)
        return False
    names: Sequence[str] = list(rollback_targets(states))
    await finish(session, metrics, app, deployment, release, DeploymentStatus.ROLLED_BACK, error)
    if release is not None:
        release.outcome = Outcome.BAD
    await store.create_deployment(
        session,
        app,
        good,
        kind=DeploymentKind.ROLLBACK,
        trigger="auto",
        strategy=rollback_strategy(strategy, len(names)),
        selector={"names": list(names)},
        reason=f"automatic rollback of deployment {deployment.id}: {error}",
        rollback_of=deployment.id,
    )
    metrics.rollbacks.labels(app.name, "auto").inc()
    log.warning(
        "auto rollback app=%s deployment=%s release=%s to release=%s hosts=%s",
        app.name, deployment.id, deployment.release, good, ",".join(names),
    )  # fmt: skip
    return True


def gauge_in_progress(metrics: Metrics, active: dict[str, int], gauged: set[str]) -> set[str]:
    """Set flotilla_deployments_in_progress to each app's count of active deployments (and 0
    for the apps in `gauged`, the last call's, that have none now); the apps gauged now."""
    for name in gauged - set(active):
        metrics.in_progress.labels(name).set(0)
    for name, count in active.items():
        metrics.in_progress.labels(name).set(count)
    return set(active)
