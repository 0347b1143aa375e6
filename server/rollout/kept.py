"""What the controller keeps of a running deployment between passes, and how it starts.

A deployment's first pass picks its target hosts, marks it running and plans its rows in
memory (`start`); every later pass reuses the kept copy while the deployment's
`targets_version` is unchanged (`targets.Targets`), and rebuilds it (`keep`) when it is not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from server.db import store, target_rows
from server.db.models import App, Deployment, Release
from server.rollout import steps
from server.rollout.judgement import Wanted
from server.rollout.targets import Judged, Targets
from server.states import DeploymentStatus, started

# whether a host's agent is connected, and since when (`Hosts.presence` of the controller)
Presence = Callable[[str], tuple[bool, float | None]]


@dataclass
class Kept:
    """A running deployment's rows and judgements, between passes."""

    targets: Targets
    judged: Judged
    touched: set[str]  # rows the last pass changed: judged again on the next
    driven_at: float = float("-inf")  # monotonic


def keep(app: App, deployment: Deployment, release: Release | None, targets: Targets) -> Kept:
    """A deployment's rows with a fresh set of judgements, against what its release wants."""
    replicas = int(release.spec.get("replicas", 1)) if release is not None else 1
    image = release.image if release is not None else ""
    digest = release.digest if release is not None else None
    wanted = Wanted(app.name, deployment.release, replicas, image, digest)
    return Kept(targets, Judged(wanted, len(targets.rows)), set())


async def start(
    session: AsyncSession,
    app: App,
    deployment: Deployment,
    release: Release | None,
    presence: Presence,
    resumed_at: float,
) -> Kept:
    """A pending deployment's first pass: it runs from now, with its target rows planned in
    memory (the controller inserts them once, as the pass leaves them). A host away at the
    start is skipped if the strategy says so (`steps.away_at_start`)."""
    picked = await target_rows.target_hosts(session, deployment)
    at = store.now()
    skipped = steps.away_at_start(picked, deployment.strategy, presence, at.timestamp(), resumed_at)
    deployment.status = DeploymentStatus.RUNNING
    deployment.started_at = at
    await store.add_event(
        session,
        started(deployment.kind),
        deployment.trigger,
        f"{deployment.kind} of release {deployment.release} started",
        app=app.name,
        deployment_id=deployment.id,
    )
    return keep(app, deployment, release, Targets.of(-1, steps.first_rows(picked, skipped, at)))
