"""The rollout controller: a level-triggered loop around the pure planner.

Woken by news (`Wakeups`: a host reported, a deployment was requested or acted on) or by a
timer (deadlines), each pass takes, in one transaction, every active deployment, supersedes
all but the newest of each app, and for each newest one that has news (or has not been looked
at for `interval` seconds: deadlines need no news) reads its targets, judges its hosts (`judgement.judge`, on what
`server.statuses` holds), plans (`plan_rollout`) and writes once: target rows, assignments,
status, events. Then it asks the hub to push to the hosts it assigned, and waits for its turn
(`server.turns`) before the next pass.

What makes it cheap at 10,000 hosts lives behind two interfaces: `targets.Targets`, a
read-only copy of a deployment's rows valid while its `targets_version` is unchanged, and
`targets.Judged`, which judges a row again only when its status, state or connection changed;
`kept.Kept` holds both between passes (`kept.start` begins a pending deployment).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from agent.protocol import Status
from server.db import assignments, rollouts, store, target_rows
from server.db.models import App, Deployment, Release
from server.db.session import Sessions
from server.loops import log_failure, timed, unit_of_work
from server.metrics import Metrics
from server.rollout import endings, steps
from server.rollout.kept import Kept, keep, start
from server.rollout.planner import Strategy, View, plan_rollout
from server.rollout.targets import Targets, replaced, seconds_of
from server.rollout.wakeups import Wakeups
from server.states import (
    TERMINAL,
    UNDER_WAY,
    DeploymentStatus,
    EventKind,
    ended,
)
from server.statuses import StatusReader
from server.turns import Phase, Turns, Work

log = logging.getLogger(__name__)

# After a pass that assigned hosts, the next one waits (this long at most) until the hub has
# sent them their desired state: no host can report on an assignment before it hears of it.
PUSH_WAIT_SECONDS = 1.0


class Hosts(Protocol):
    """What the controller needs of the hub: who is connected, and pushing to hosts."""

    def presence(self, host: str) -> tuple[bool, float | None]:
        """Is the host's agent connected to this process, and since when (seconds since the
        epoch) it is, or has been away (None: not since this process started)?"""
        ...

    def push_now(self, hosts: Iterable[str]) -> None:
        """Send these hosts their desired state at once."""
        ...


class Controller:
    """Drives every active deployment to a terminal state."""

    def __init__(
        self,
        sessions: Sessions,
        metrics: Metrics,
        statuses: StatusReader,
        hosts: Hosts,
        turns: Turns,
        wakeups: Wakeups,
        interval: float = 1.0,
    ) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.statuses = statuses
        self.hosts = hosts
        self.turns = turns
        self.interval = interval
        self.wakeups = wakeups
        # set, and replaced by a fresh one, after a pass that ended a deployment: what
        # GET /v1/deployments/{id}?wait= waits on
        self.finished = asyncio.Event()
        self._kept: dict[int, Kept] = {}  # deployment id -> its rows, between passes
        self._requests = 0  # deployments requested, ever
        self._gauged: set[str] = set()
        self.resumed_at = time.time()  # the server was down (or not this one) before

    def rollout_requested(self) -> None:
        """A deployment was created: pass at once; work that yields to rollouts yields from
        now, not from the end of that pass."""
        self._requests += 1
        self.turns.begin(Phase.ROLLING)
        self.wakeups.deployment(None)

    def release_waiters(self) -> None:
        """Wake the clients waiting for a deployment's end (GET ...?wait=): one ended, or
        the server is stopping and answers them with what is now."""
        done, self.finished = self.finished, asyncio.Event()
        done.set()

    def deployment_changed(self, deployment_id: int) -> None:
        """An operator acted on a deployment: drive it soon."""
        self.wakeups.deployment(deployment_id)

    async def run(self) -> None:
        """Pass whenever woken, and at least every `interval` seconds, until cancelled."""
        while True:
            await self.wakeups.next(self.interval)
            began, news = time.monotonic(), self.wakeups.news
            assigned = False
            try:
                assigned = await unit_of_work(self.run_once())
            except Exception as exc:
                log_failure(log, "rollout controller pass", exc)
            took = time.monotonic() - began
            if assigned:
                await self.turns.wait(Work.NEXT_PASS, PUSH_WAIT_SECONDS)
            await self.wakeups.rest(took, news)

    async def run_once(self) -> bool:
        """One pass over the active deployments; whether it asked the hub to push."""
        queued, news = self.wakeups.take()
        self.turns.begin(Phase.JUDGING)
        requests = self._requests
        pushes: set[str] = set()
        rolling = ended = False
        try:
            with timed(log, "controller pass") as fields:
                async with self.sessions.begin() as session:
                    # the pass's changes to rows are written once, at the commit: no query
                    # in it reads what it changed (each autoflush was a statement of its own)
                    with session.no_autoflush:
                        rolling, ended = await self._pass(session, queued, news, pushes)
                fields.update(pushes=len(pushes))
        except BaseException:
            self._kept.clear()  # the copies may hold changes that were rolled back
            raise
        finally:
            if not self.wakeups.pending():  # else news came during the pass
                self.turns.end(Phase.JUDGING)
            # a deployment requested during the pass (by the API, or its own automatic
            # rollback) may not be in what it read: still rolling
            self.turns.set(Phase.ROLLING, rolling or self._requests != requests)
            kept = self._kept.values()
            self.wakeups.watch(
                set().union(*(k.targets.position for k in kept)),
                set().union(*(k.targets.updating for k in kept)),
            )
        if ended:  # committed: waiters now read the final status
            self.release_waiters()
            self.turns.answer()
        if pushes:
            self.hosts.push_now(pushes)
        return bool(pushes)

    async def _pass(
        self, session: AsyncSession, queued: set[int | None], news: set[str], pushes: set[str]
    ) -> tuple[bool, bool]:
        """Drive the newest deployment of each app; whether one is under way, one ended."""
        active = await rollouts.active_deployments(session)  # with their apps and releases
        by_app: dict[App, list[Deployment]] = defaultdict(list)
        releases: dict[int, Release | None] = {}
        for deployment, app, release in active:
            by_app[app].append(deployment)
            releases[deployment.id] = release
        rolling = ended = False
        now = time.monotonic()
        for app, deployments in by_app.items():
            newest = deployments[-1]
            for older in deployments[:-1]:
                self._kept.pop(older.id, None)
                why = f"superseded by {newest.id}"
                await endings.finish(
                    session, self.metrics, app, older, None, DeploymentStatus.SUPERSEDED, why
                )
                ended = True
            kept = self._kept.get(newest.id)
            due = (  # level-triggered: news of it, or a look at least every interval
                kept is None
                or newest.id in queued
                or bool(kept.touched)
                or now - kept.driven_at >= self.interval
                or any(host in kept.targets.position for host in news)
            )
            if due:
                release = releases[newest.id]
                ended |= await self._drive(session, app, newest, release, news, pushes)
            rolling = rolling or newest.status in UNDER_WAY
        for gone in set(self._kept) - {d.id for d, _, _ in active if d.status not in TERMINAL}:
            del self._kept[gone]
        counts = {a.name: sum(d.status not in TERMINAL for d in ds) for a, ds in by_app.items()}
        self._gauged = endings.gauge_in_progress(self.metrics, counts, self._gauged)
        return rolling, ended

    async def _drive(
        self,
        session: AsyncSession,
        app: App,
        deployment: Deployment,
        release: Release | None,
        news: set[str],
        pushes: set[str],
    ) -> bool:
        """Read, judge, plan and write one deployment (of `release`); whether it ended."""
        created = deployment.status == DeploymentStatus.PENDING
        kept = self._kept.get(deployment.id)
        if created:
            kept = await start(
                session, app, deployment, release, self.hosts.presence, self.resumed_at
            )
            pushes.update(kept.targets.position)  # their desired state now lists a pre-pull
        elif kept is None or kept.targets.version != deployment.targets_version:
            rows = await target_rows.deployment_hosts(session, deployment.id, evidence=False)
            kept = keep(app, deployment, release, Targets.of(deployment.targets_version, rows))
        self._kept[deployment.id] = kept
        kept.driven_at = time.monotonic()
        targets = kept.targets
        now = store.now()
        step = plan_rollout(await self._view(session, deployment, kept, news), now.timestamp())
        changes = steps.row_changes(step, self._latest, app.name, deployment.release, now)
        pushes.update(step.assign)
        if created or changes:
            new = {n: replaced(targets.row(n), **columns) for n, columns in changes.items()}
            deployment.targets_version += 1
            kept.targets = targets.changed(deployment.targets_version, new, now.timestamp())
            kept.touched = set(changes)
        if created:
            await target_rows.insert_targets(session, deployment.id, kept.targets.rows)
        elif changes:
            writes = {targets.row(n).host_id: columns for n, columns in changes.items()}
            await target_rows.save_targets(session, deployment.id, writes)
        if step.assign:
            every = len(step.assign) == len(targets.rows)  # a single batch: all of them
            ids = [] if every else [targets.row(n).host_id for n in step.assign]
            await assignments.assign(session, ids, deployment, bump=not created, every_target=every)
        if (done := steps.batch_done(step, deployment.release)) is not None:
            await endings.note(session, app, deployment, EventKind.BATCH_DONE, done)
        if step.promoted:
            deployment.promoted = True
        if step.status == deployment.status:
            return False
        if step.status not in TERMINAL:
            deployment.status = step.status
            await endings.note(session, app, deployment, ended(step.status), f" is {step.status}")
            return False
        ended_by = await endings.conclude(
            session, self.metrics, app, deployment, release, step, kept.targets
        )
        pushes.update(ended_by.pushes)
        if ended_by.rollback:
            self.rollout_requested()
        self._kept.pop(deployment.id, None)
        return True

    async def _view(
        self, session: AsyncSession, deployment: Deployment, kept: Kept, news: set[str]
    ) -> View:
        """The planner's view, judging again only rows whose basis changed."""
        targets, judged = kept.targets, kept.judged
        seen = judged.to_judge(targets, news | kept.touched, time.monotonic())
        positions = judged.unsettled(targets, seen)
        kept.touched = set()
        rows = targets.rows
        hosts = [(rows[p].host_id, rows[p].host_name) for p in positions]
        statuses = await self.statuses.read(session, hosts) if hosts else {}
        judged.judge(targets, positions, statuses, self.hosts.presence)
        began = seconds_of(deployment.started_at) or 0.0
        return View(
            status=deployment.status,
            strategy=Strategy.from_dict(deployment.strategy),
            targets=judged.complete(),
            started_at=began,
            last_progress_at=max(
                began, targets.last_change, seconds_of(deployment.progress_at) or 0.0
            ),
            resumed_at=self.resumed_at,
            promoted=deployment.promoted,
            cancel_requested=deployment.cancel_requested,
        )

    def _latest(self, host: str) -> Status | None:
        """What the host last reported, if anything."""
        seen = self.statuses.latest(host)
        return seen.status if seen is not None else None
