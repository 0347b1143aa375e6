"""The rollout controller loop: a thin I/O shell around `plan_rollout`.

Each pass, in one transaction, reads every active deployment and what its hosts report (the
hosts with news; see below), asks the planner for the next step, and writes it (host states,
assignments, status, events). Then it wakes the hub for hosts whose assignment changed. A new
deployment, or an agent's status while a rollout runs, only wakes the loop; a timer covers
deadlines.

At 10,000 hosts a pass must not cost 10,000 of anything it can avoid: the controller keeps
a running deployment's target rows between passes (it is their only writer) and judges
again only the hosts the hub says changed, and the rows it changed itself; all of them once
a second.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from server.db import rollouts, store
from server.db.models import App, Deployment
from server.db.session import Sessions
from server.loops import timed, unit_of_work, wait_set
from server.metrics import Metrics
from server.rollout.planner import (
    TERMINAL,
    Strategy,
    View,
    plan_rollout,
    rollback_targets,
)
from server.rollout.planner import Target as PlannedTarget

log = logging.getLogger(__name__)

Push = Callable[[set[str]], None]

# After a pass, rest this share of its duration before the next one: while thousands of
# statuses arrive, back-to-back passes would take the event loop from the hub that
# receives them, and each pass over 10,000 targets costs tens of milliseconds whatever it
# finds (at a share of 1, passes were a third of a 10,000-host deploy's server CPU).
REST_SHARE = 2.0
MAX_REST_SECONDS = 0.25
# ...but once hosts have had news since the pass began, a rest ends when none has had any for
# this long: the flood is over, and the last hosts of a rollout should not wait out a rest
# taken while the others reported (a 1,000-host deploy waited 0.14 s for nothing at its end).
# A rest without any host's news is taken whole: new deployments arriving (API load) are
# still planned in batches.
QUIET_SECONDS = 0.02
# ...and a rest ends at once when every host the running rollouts wait on (updating) has had
# news since the last pass: nothing more is coming to judge together with theirs. At the end
# of a deploy to 1,000 hosts the last statuses waited out a quiet step for nothing.
# Between passes only the hosts that reported, connected or went away (the hub says which)
# and the rows this controller changed are judged again; every host is, at least this often,
# so a change that slipped by is seen within a second.
FULL_VIEW_SECONDS = 1.0
# After a pass that assigned hosts, the next one waits (this long at most) until the hub has
# sent them their desired state: no host can report on an assignment before it hears of it,
# and a pass in the meantime only takes the event loop from the push. At 10,000 hosts the pass
# after the first one judged every newly assigned host again (130 ms) while the push read
# their desired states, which then took 200-500 ms instead of 60-90.
PUSH_WAIT_SECONDS = 1.0
# After a pass that ended a deployment, the clients waiting for it (GET /v1/deployments/{id}
# ?wait=, as `flotilla deploy --wait` does) are answered before background work: the hub's
# write of statuses and the fleet metrics wait this long (`answered`). At the end of a deploy
# to 10,000 hosts both began with the reply to the waiting client, which took 220 ms instead
# of its 45-60 in-process.
ANSWER_SECONDS = 0.25


@dataclass
class _Targets:
    """A running deployment's target rows, kept between passes.

    This controller is the only writer of a deployment's targets (one server process drives
    all deployments), so after the first read it changes its own copy and writes only what
    changed, instead of re-reading 10,000 rows on every pass. `written` is the newest
    `updated_at` it wrote: a pass compares it with the database's (one aggregate query) and
    reads the rows again if they changed. That check trusts clocks: several servers driving
    one deployment (not built; see ARCHITECTURE.md's leases) would need a version column.
    """

    rows: list[store.Target]
    position: dict[str, int]  # host name -> index in rows
    written: float | None
    last_change: float  # newest updated_at of a target that left `pending`
    # per row, the planner's target and what it was judged on: (status object, state,
    # assigned_at, connected, target); valid for one question (app, release, replicas, image)
    judged: list[tuple[Any, str, Any, bool, PlannedTarget] | None] = field(default_factory=list)
    question: tuple[str, int, int, str] | None = None
    judged_all_at: float = float("-inf")  # monotonic
    touched: set[str] = field(default_factory=set)  # rows changed since they were judged
    updating: set[str] = field(default_factory=set)  # hosts whose rows are `updating`

    @classmethod
    def of(cls, rows: list[store.Target]) -> _Targets:
        times = [_ts(r.updated_at) or 0.0 for r in rows]
        moved = [t for r, t in zip(rows, times, strict=True) if r.state != "pending"]
        return cls(
            rows=rows,
            position={r.host_name: i for i, r in enumerate(rows)},
            written=max(times, default=None),
            last_change=max(moved, default=0.0),
            updating={r.host_name for r in rows if r.state == "updating"},
        )

    def row(self, name: str) -> store.Target:
        return self.rows[self.position[name]]

    def to_judge(self, question: tuple[str, int, int, str], changed: set[str]) -> Iterable[int]:
        """Positions of the rows to judge this pass: all of them now and then, else those
        whose host or row changed."""
        now = time.monotonic()
        if question != self.question:
            self.question = question
            self.judged = [None] * len(self.rows)
            self.judged_all_at = float("-inf")
        if now - self.judged_all_at >= FULL_VIEW_SECONDS:
            self.judged_all_at = now
            self.touched.clear()
            return range(len(self.rows))  # unchanged ones are still not judged afresh
        names = changed | self.touched
        self.touched = set()
        return [p for n in names if (p := self.position.get(n)) is not None]


class Controller:
    """Drives every active deployment to a terminal state."""

    def __init__(
        self,
        sessions: Sessions,
        metrics: Metrics,
        is_connected: Callable[[str], bool],
        interval: float = 1.0,
        observed_of: Callable[[str], dict[str, Any] | None] = lambda _: None,
    ) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.is_connected = is_connected
        self.observed_of = observed_of
        self.interval = interval
        self.wake = asyncio.Event()
        self.push: Push | None = None
        self.pushed: asyncio.Event | None = None  # set while the hub has nothing left to push
        # set, and replaced by a fresh one, after a pass that ended a deployment: what
        # GET /v1/deployments/{id}?wait= waits on
        self.finished = asyncio.Event()
        self._ended_any = False
        self._gauged: set[str] = set()
        self._targets: dict[int, _Targets] = {}  # deployment id -> its rows, between passes
        self._changed: set[str] = set()  # hosts with news since the last pass
        self._news = 0  # how many times hosts had news (see QUIET_SECONDS)
        # set while no running rollout has news to judge and no pass runs: the hub holds
        # its writes back otherwise (Hub.judged)
        self.judged = asyncio.Event()
        self.judged.set()
        # set while no rollout is under way (as of the last pass, and no deployment was
        # requested since it began; a paused one is not under way): fleet metrics refresh
        # then; and its opposite (the collector waits for the end of a rollout:
        # server.gc_tuning)
        self.idle = asyncio.Event()
        self.idle.set()
        self.busy = asyncio.Event()
        self._rolling = False  # the last pass left a deployment pending or running
        self._requests = 0  # deployments requested (rollout_requested), ever
        # clear for ANSWER_SECONDS after a pass that ended a deployment
        self.answered = asyncio.Event()
        self.answered.set()
        self._answering: asyncio.TimerHandle | None = None
        self._awaited: set[str] = set()  # updating hosts without news since the last pass
        self._all_reported = asyncio.Event()  # set when the last of them had news

    def rollout_requested(self) -> None:
        """A deployment was created: pass at once; what waits for rollouts to end (fleet
        metrics, the collector's catch-up) waits from now, not from the end of that pass."""
        self._requests += 1
        self._under_way(True)
        self.wake.set()

    def _under_way(self, rollouts: bool) -> None:
        """Set `busy` or `idle` and clear the other: two events, as one can only be awaited
        set, and waiters want either."""
        if rollouts:
            self.idle.clear()
            self.busy.set()
        else:
            self.busy.clear()
            self.idle.set()

    def host_changed(self, name: str) -> None:
        """A host sent a status, connected or went away: judge it again, soon, if a rollout
        is running. Without one there is nothing to judge (a new deployment wakes the loop
        itself, and its first pass judges every host); waking for each of the statuses an
        idle fleet sends was most of an idle server's CPU at 10,000 hosts."""
        if self._targets:
            self._changed.add(name)
            self._news += 1
            self.wake.set()
            self.judged.clear()
            if self._awaited:
                self._awaited.discard(name)
                if not self._awaited:
                    self._all_reported.set()

    async def run(self) -> None:
        while True:
            await wait_set(self.wake, self.interval)
            self.wake.clear()
            started, news = time.monotonic(), self._news
            pushed = False
            try:
                pushed = await unit_of_work(self.run_once())
            except Exception:
                log.exception("rollout controller pass failed")
            rest = min(MAX_REST_SECONDS, REST_SHARE * (time.monotonic() - started))
            if pushed:
                await self._await_push()
            await self._rest(rest, news)

    async def _await_push(self) -> None:
        """Wait, at most PUSH_WAIT_SECONDS, until the hub has sent what the last pass assigned."""
        if self.pushed is not None:
            await wait_set(self.pushed, PUSH_WAIT_SECONDS)

    async def _rest(self, seconds: float, news: int) -> None:
        """Sleep up to `seconds`, in steps of QUIET_SECONDS; stop early once hosts have had
        news since `news` (the count when the pass began) and then a step brought none, or
        once every updating host has had news."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0.002:
            if self._all_reported.is_set():
                return
            before = self._news
            await wait_set(self._all_reported, min(QUIET_SECONDS, left))
            if self._news == before and before != news:
                return

    async def run_once(self) -> bool:
        """One pass over all active deployments; whether it asked the hub to push."""
        pushes: set[str] = set()
        changed, self._changed = self._changed, set()
        requests = self._requests
        self.judged.clear()
        try:
            await self._pass(changed, pushes)
        except BaseException:
            self._targets.clear()  # the copies may hold changes that were rolled back
            self._rolling = False
            raise
        finally:
            if not (self._targets and self._changed):  # else news came during the pass
                self.judged.set()
            # a deployment requested during the pass (by the API, or its own automatic
            # rollback) may not be in what it read: still busy
            self._under_way(self._rolling or self._requests != requests)
            self._await_news()
        if self._ended_any:  # committed: waiters now read the final status
            self._ended_any = False
            ended, self.finished = self.finished, asyncio.Event()
            ended.set()
            self._answer_first()
        if pushes and self.push is not None:
            self.push(pushes)
            return True
        return False

    def _answer_first(self) -> None:
        """Hold background work back while the clients waiting for an end are answered."""
        self.answered.clear()
        if self._answering is not None:
            self._answering.cancel()
        self._answering = asyncio.get_running_loop().call_later(ANSWER_SECONDS, self.answered.set)

    def _await_news(self) -> None:
        """Note the updating hosts without news since this pass (see QUIET_SECONDS)."""
        waiting = set().union(*(kept.updating for kept in self._targets.values()))
        self._awaited = waiting - self._changed
        if waiting and not self._awaited:  # the last of them reported during the pass
            self._all_reported.set()
        else:  # without a host to wait on, rests are taken as before (API load)
            self._all_reported.clear()

    async def _pass(self, changed: set[str], pushes: set[str]) -> None:
        """Drive the newest deployment of each app, in one transaction; collect pushes."""
        with timed(log, "controller pass") as fields:
            async with self.sessions.begin() as session:
                active = await rollouts.active_deployments(session)
                fields["deployments"] = len(active)
                by_app: dict[int, list[Deployment]] = defaultdict(list)
                for deployment in active:
                    by_app[deployment.app_id].append(deployment)
                rolling = False
                for app_id, deployments in by_app.items():
                    app = await session.get(App, app_id)
                    assert app is not None
                    newest = deployments[-1]
                    for older in deployments[:-1]:
                        await self._finish(
                            session, app, older, "superseded", f"superseded by {newest.id}"
                        )
                    pushes |= await self._drive(session, app, newest, changed)
                    rolling = rolling or newest.status in ("pending", "running")
                self._rolling = rolling
                for gone in set(self._targets) - {d.id for d in active}:
                    del self._targets[gone]  # ended by this pass, or by someone else
                await self._gauge_in_progress(session, by_app)
                fields["pushes"] = len(pushes)

    async def _drive(
        self, session: AsyncSession, app: App, deployment: Deployment, changed: set[str]
    ) -> set[str]:
        now = store.now()
        pushes: set[str] = set()
        created = deployment.status == "pending"  # and so the targets' generations bumped
        existing: set[int] | None = None  # hosts with an assignment of the app, if read
        if created:
            picked, existing = await rollouts.target_hosts(session, deployment)
            # planned in memory, inserted once as this pass leaves them (ids set then)
            rows = [
                store.Target(0, host_id, name, "pending", previous, None, {}, None, now)
                for host_id, name, previous in picked
            ]
            targets = self._targets[deployment.id] = _Targets.of(rows)
            pushes |= {r.host_name for r in rows}  # their desired state now lists a pre-pull
            deployment.status = "running"
            deployment.started_at = now
            await store.add_event(
                session,
                f"{deployment.kind}_started",
                deployment.trigger,
                f"{deployment.kind} of release {deployment.release} started",
                app=app.name,
                deployment_id=deployment.id,
            )
        else:
            targets = await self._targets_of(session, deployment.id)
            rows = targets.rows
        question = targets.question
        if question is None:  # a release's spec and image never change: read once
            release = await rollouts.release_row(session, app.id, deployment.release)
            replicas = int(release.spec.get("replicas", 1)) if release is not None else 1
            image = release.image if release is not None else ""
            question = (app.name, deployment.release, replicas, image)
        positions = targets.to_judge(question, changed)
        observed = await self._statuses(session, [rows[p] for p in positions])
        view = self._view(deployment, targets, positions, observed)
        step = plan_rollout(view, now.timestamp())
        changes: dict[str, dict[str, Any]] = {}  # host name -> changed columns of its row
        for name, (state, error) in step.host_states.items():
            row = targets.row(name)
            row.state, row.error, row.updated_at = state, error, now
            targets.touched.add(name)
            if state == "updating":
                targets.updating.add(name)
            else:
                targets.updating.discard(name)
            change = {"id": row.id, "state": state, "error": error, "updated_at": now}
            if state == "failed":  # the evidence is the status the planner judged
                judged = targets.judged[targets.position[name]]
                evidence = _evidence((judged and judged[0]) or {}, app.name, deployment.release)
                row.evidence = change["evidence"] = evidence
            changes[name] = change
        done = [n for n, (s, _) in step.host_states.items() if s == "healthy"]
        if done and not step.updating:
            await store.add_event(
                session,
                "deployment_batch_done",
                "controller",
                f"{deployment.kind} {deployment.id}: {', '.join(sorted(done))} healthy on "
                f"release {deployment.release}",
                app=app.name,
                deployment_id=deployment.id,
            )
        for name in step.assign:
            row = targets.row(name)
            targets.touched.add(name)
            row.assigned_at = now
            changes[name]["assigned_at"] = now
            pushes.add(name)
        if created:
            await rollouts.insert_targets(session, deployment.id, rows)
        else:
            await rollouts.save_targets(session, list(changes.values()))
        if changes:
            targets.written = targets.last_change = now.timestamp()
        if step.assign:
            every = len(step.assign) == len(rows)  # a single batch: all of them
            ids = [] if every else [targets.row(n).host_id for n in step.assign]
            await rollouts.assign(
                session, ids, deployment, bump=not created, existing=existing, every_target=every
            )
        if step.promoted and not deployment.promoted:
            deployment.promoted = True
        if step.status != deployment.status:
            if step.status == "failed":
                await self._fail(session, app, deployment, step.error or "failed", rows)
            elif step.status in TERMINAL:
                await self._finish(session, app, deployment, step.status, step.error)
            else:
                deployment.status = step.status
                await store.add_event(
                    session,
                    f"deployment_{step.status}",
                    "controller",
                    f"{deployment.kind} {deployment.id} is {step.status}",
                    app=app.name,
                    deployment_id=deployment.id,
                )
        return pushes

    async def _targets_of(self, session: AsyncSession, deployment_id: int) -> _Targets:
        """The deployment's rows: this controller's copy, unless the database has newer."""
        kept = self._targets.get(deployment_id)
        if kept is not None and _ts(await rollouts.targets_written(session, deployment_id)) == (
            kept.written
        ):
            return kept
        rows = await store.deployment_hosts(session, deployment_id, evidence=False)
        kept = self._targets[deployment_id] = _Targets.of(rows)
        return kept

    async def _statuses(
        self, session: AsyncSession, rows: Sequence[store.Target]
    ) -> dict[int, dict[str, Any] | None]:
        """Each row's host's newest status: the hub's live copy, else the database's."""
        observed = {r.host_id: self.observed_of(r.host_name) for r in rows}
        missing = [host_id for host_id, seen in observed.items() if seen is None]
        observed.update(await rollouts.observed_by_id(session, missing) if missing else {})
        return observed

    def _view(
        self,
        deployment: Deployment,
        kept: _Targets,
        positions: Iterable[int],
        observed: dict[int, dict[str, Any] | None],
    ) -> View:
        """The planner's view, judging again only the rows at `positions`. A row is judged
        afresh only if its status object, state, assigned_at or connection changed (the hub
        replaces the status object on each report, so the same object means nothing new)."""
        assert kept.question is not None
        app, release, replicas, image = kept.question
        is_connected = self.is_connected
        judged = kept.judged
        for p in positions:
            row = kept.rows[p]
            seen = observed.get(row.host_id)
            connected = is_connected(row.host_name)
            before = judged[p]
            if (
                before is not None
                and before[0] is seen
                and before[1] == row.state
                and before[2] == row.assigned_at
                and before[3] == connected
            ):
                continue
            status = seen or {}
            # each question matters in one state only (planner._judge): convergence and the
            # agent's problem while updating, the pre-pull while pending
            converged, problem, pulled, pull_error = False, None, True, None
            if row.state == "updating":
                converged, problem = _observed(status, app, release, replicas)
            elif row.state == "pending":
                pulled, pull_error = _pulled(status, app, release, image)
            target = PlannedTarget(
                name=row.host_name,
                state=row.state,
                assigned_at=_ts(row.assigned_at),
                connected=connected,
                converged=converged,
                problem=problem,
                pulled=pulled,
                pull_error=pull_error,
            )
            judged[p] = (seen, row.state, row.assigned_at, connected, target)
        if None in judged:  # a bug: fail the pass (and drop the copies) instead
            raise RuntimeError(f"deployment {deployment.id}: a target host was never judged")
        # in C, not a generator: this runs for every pass, over 10,000 entries at 10,000 hosts
        targets = tuple(map(_PLANNED, cast(list[tuple[Any, ...]], judged)))
        started = _ts(deployment.started_at) or 0.0
        progress = _ts(deployment.progress_at) or 0.0
        return View(
            status=deployment.status,
            strategy=Strategy.from_dict(deployment.strategy),
            targets=targets,
            started_at=started,
            last_progress_at=max(started, kept.last_change, progress),
            promoted=deployment.promoted,
            cancel_requested=deployment.cancel_requested,
        )

    async def _fail(
        self,
        session: AsyncSession,
        app: App,
        deployment: Deployment,
        error: str,
        rows: list[store.Target],
    ) -> None:
        """Fail a deployment; with auto_rollback, start a rollback to the last good release."""
        strategy = Strategy.from_dict(deployment.strategy)
        good = None
        if deployment.kind == "deploy" and strategy.auto_rollback:
            good = await rollouts.last_good_release(session, app.id, deployment.release)
        if good is None:
            await self._finish(session, app, deployment, "failed", error)
            return
        names = list(rollback_targets({r.host_name: r.state for r in rows}))
        await self._finish(session, app, deployment, "rolled_back", error)
        release = await rollouts.release_row(session, app.id, deployment.release)
        if release is not None:
            release.outcome = "bad"
        await store.create_deployment(
            session,
            app,
            good,
            kind="rollback",
            trigger="auto",
            strategy={
                "max_parallel": max(1, len(names)),
                "healthy_deadline": strategy.healthy_deadline,
                "progress_deadline": strategy.progress_deadline,
                "auto_rollback": False,
            },
            selector={"names": names},
            reason=f"automatic rollback of deployment {deployment.id}: {error}",
            rollback_of=deployment.id,
        )
        self.metrics.rollbacks.labels(app.name, "auto").inc()
        log.warning(
            "auto rollback app=%s deployment=%s release=%s to release=%s hosts=%s",
            app.name, deployment.id, deployment.release, good, ",".join(names),
        )  # fmt: skip
        self.rollout_requested()

    async def _finish(
        self,
        session: AsyncSession,
        app: App,
        deployment: Deployment,
        status: str,
        error: str | None,
    ) -> None:
        now = store.now()
        deployment.status = status
        deployment.error = error
        deployment.finished_at = now
        self._ended_any = True
        self._targets.pop(deployment.id, None)
        release = None  # read only where its outcome changes: a superseded one needs no query
        if status in ("succeeded", "failed"):
            release = await rollouts.release_row(session, app.id, deployment.release)
        if status == "succeeded":
            previous = app.current_release
            if deployment.kind == "rollback" and previous and previous != deployment.release:
                rolled = await rollouts.release_row(session, app.id, previous)
                if rolled is not None and rolled.outcome in (None, "succeeded"):
                    rolled.outcome = "rolled_back"
            app.current_release = deployment.release
            self.metrics.app_release.labels(app.name).set(deployment.release)
            if release is not None and release.outcome != "bad":
                release.outcome = "succeeded"
        elif status == "failed" and release is not None and release.outcome is None:
            release.outcome = "failed"
        await store.add_event(
            session,
            f"deployment_{status}",
            "controller",
            f"{deployment.kind} {deployment.id} of release {deployment.release} {status}"
            + (f": {error}" if error else ""),
            app=app.name,
            deployment_id=deployment.id,
        )
        self.metrics.deployments.labels(app.name, deployment.kind, status).inc()
        if deployment.started_at is not None:
            elapsed = (now - (store.as_utc(deployment.started_at) or now)).total_seconds()
            self.metrics.deployment_duration.labels(app.name, deployment.kind, status).observe(
                elapsed
            )
        log.info(
            "deployment finished app=%s deployment=%s release=%s status=%s",
            app.name, deployment.id, deployment.release, status,
        )  # fmt: skip

    async def _gauge_in_progress(
        self, session: AsyncSession, by_app: dict[int, list[Deployment]]
    ) -> None:
        names = await store.app_names(session, set(by_app)) if by_app else {}
        now_active = {
            names[i]: sum(d.status not in TERMINAL for d in ds) for i, ds in by_app.items()
        }
        for name in self._gauged - set(now_active):
            self.metrics.in_progress.labels(name).set(0)
        for name, count in now_active.items():
            self.metrics.in_progress.labels(name).set(count)
        self._gauged = set(now_active)


@functools.lru_cache(maxsize=1024)
def _ts(value: Any) -> float | None:
    """Seconds since the epoch; cached, as the rows a pass changed share one timestamp (half
    of building a view of 10,000 hosts was converting the same few datetimes)."""
    value = store.as_utc(value)
    return value.timestamp() if value is not None else None


_PLANNED = operator.itemgetter(4)  # a judged entry's planner target


def _observed(
    observed: dict[str, Any], app: str, release: int, replicas: int
) -> tuple[bool, str | None]:
    """From the host's last status: are all replicas of `release` ready and every older
    instance stopped (the host is done); and the agent's problem report, if any. One walk
    over the instances: this runs for each status of a rollout, 10,000 per fan-out."""
    ready = 0
    stale = False
    for i in observed.get("instances", ()):
        if i.get("app") == app and i.get("state") == "running":
            if i.get("release") != release:
                stale = True
            elif i.get("ready"):
                ready += 1
    problem = None
    for p in observed.get("problems", ()):
        if p.get("app") == app and p.get("release") == release:
            problem = str(p.get("message"))
    return ready >= replicas and not stale and problem is None, problem


def _evidence(observed: dict[str, Any], app: str, release: int) -> dict[str, Any]:
    problems = [
        p
        for p in observed.get("problems", [])
        if p.get("app") == app and p.get("release") == release
    ]
    instances = [i for i in observed.get("instances", []) if i.get("app") == app]
    return {"problems": problems, "instances": instances}


def _pulled(
    observed: dict[str, Any], app: str, release: int, image: str
) -> tuple[bool, str | None]:
    """Has the host got the release's image (pre-pull); the pull error if it failed."""
    have = any(pair[0] == image for pair in observed.get("digests", []))
    for p in observed.get("problems", []):
        if (p.get("app"), p.get("release"), p.get("reason")) == (app, release, "pull_failed"):
            return have, str(p.get("message"))
    return have, None
