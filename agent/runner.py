"""The agent's reconcile loop: a thin I/O shell around `plan_reconcile`.

A push, a Docker event or a timer only wakes the loop; each pass re-reads the containers,
plans, and executes the plan one action at a time. What changed is reported within 0.1 s
while the pass acts, and at its end (quick steps share one status: agent/reports.py). A pass
that starts an instance with a health probe probes it at once, and retires the old one in
the same pass if the probe passes. Docker SDK calls run in a thread. A failed action, a
crash or a failing probe is recorded against its release, and a failed action is retried
with capped backoff (agent/evidence.py). Pulls run in the background (agent/pulls.py): a
pass waits at most PULL_INLINE_SECONDS for one, holds back only the app that needs its
image, and a pull that no desired state needs any longer is abandoned at the next pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from agent import metrics
from agent.caps import MAX_TEXT
from agent.driver import Driver
from agent.evidence import Evidence, action_key
from agent.health import HealthTracker
from agent.pins import Pins, pinned_refs
from agent.protocol import (
    DRIFT_HEALED,
    Assignment,
    DesiredState,
    Instance,
    RegistryAuth,
    Status,
    clip,
    registry_of,
    run_ref,
)
from agent.pulls import DEFAULT_PULL_TIMEOUT, Pulls
from agent.reconcile import (
    Action,
    Pull,
    Remove,
    Run,
    Start,
    Stop,
    plan_reconcile,
    ready_at_probe,
)
from agent.reports import Reporter, Send, build_status
from agent.volumes import VolumePurges

log = logging.getLogger(__name__)

AFTER_ACTION_SECONDS = 0.25
DUE_SLACK_SECONDS = 0.005  # wake just after a deadline, not a hair before it
# A pass waits this long for a pull it started: a quick one (a cached layer, a local
# registry) still makes pull-then-run one pass and one status; a slow one goes on in the
# background, and its end wakes the loop.
PULL_INLINE_SECONDS = 1.0


class Agent:
    """Holds the last desired state and makes the engine match it."""

    def __init__(
        self,
        host: str,
        driver: Driver,
        *,
        retain: int = 2,
        prune_images: bool = True,
        poll_interval: float = 5.0,
        health: HealthTracker | None = None,
        clock: Callable[[], float] = time.monotonic,
        pull_timeout: float = DEFAULT_PULL_TIMEOUT,
    ) -> None:
        self.host = host
        self.driver = driver
        self.retain = retain
        self.prune_images = prune_images
        self.poll_interval = poll_interval
        self.health = health or HealthTracker()
        self.clock = clock
        self.desired: DesiredState | None = None
        self.wake = asyncio.Event()
        self._digests: dict[str, str] = {}
        self._instances: list[Instance] = []
        self._ready: frozenset[str] = frozenset()
        self.reports = Reporter(host, self._status)
        self.evidence = Evidence(host, driver, self.health, self._auth)
        self._look_at: float | None = None  # when to look again after acting (self.clock)
        self.engine_error: str | None = None  # why the Engine does not answer; None: it does
        self.pulls = Pulls(self._pull, pull_timeout, self.wake.set)
        self.volumes = VolumePurges(host, driver)
        self.pins = Pins(driver)

    def close(self) -> None:
        """Abandon the pulls in flight (the agent is stopping)."""
        self.pulls.close()

    def attach(self, send: Send | None) -> None:
        """Set (or clear, with None) where status and events go."""
        self.reports.attach(send)

    def accept(self, desired: DesiredState) -> bool:
        """Take a pushed desired state if it is newer than the one held; wake the loop."""
        if desired.host != self.host:
            log.warning("ignoring desired state for host=%s (I am %s)", desired.host, self.host)
            return False
        if self.desired is not None and desired.generation <= self.desired.generation:
            return False
        log.info("desired state host=%s generation=%d", self.host, desired.generation)
        self.desired = desired
        self.evidence.new_desired()
        self.wake.set()
        return True

    async def run(self) -> None:
        """Reconcile on every wake-up, and at least every `poll_interval` seconds."""
        loop = asyncio.get_running_loop()
        while True:
            timeout = self.poll_interval
            due = self.health.next_due()
            if self._look_at is not None:  # one pass serves both: no second, idle look
                due = self._look_at if due is None else min(due, self._look_at)
            if due is not None:  # an instance proving itself: look exactly when it may be done
                timeout = min(timeout, max(0.0, due - self.clock()) + DUE_SLACK_SECONDS)
            # a timer that sets the wake-up event, not asyncio.timeout: no exception raised and
            # caught per poll (10,000 simulated agents in one process poll 2,000 times a second)
            timer = loop.call_later(timeout, self.wake.set)
            try:
                await self.wake.wait()
            finally:
                timer.cancel()
            self.wake.clear()
            try:
                await self.run_once()
            except Exception:
                metrics.RECONCILE_ERRORS.inc()
                log.exception("reconcile pass failed host=%s", self.host)
                self.reports.soon()  # what it changed before failing (a problem, a digest)

    async def run_once(self) -> None:
        """One pass: observe, plan, act step by step, report."""
        started = time.perf_counter()
        self._look_at = None  # this pass is the look that was due
        desired = self.desired
        try:
            await self._observe()
        except Exception as exc:
            if not await self._engine_down(exc):
                raise
            await self.report()  # the server hears the Engine is down; nothing is tried
            return
        self._engine_up()
        if desired is None:
            await self.report()  # never act before the server said what it wants
            return
        refs = {a.spec.image for a in desired.assignments} | {p.image for p in desired.prepull}
        pinned = pinned_refs(desired)  # a release's pinned image (agent/pins.py)
        for image in self.pulls.keep_only(refs | pinned):  # superseded or cancelled: not waited
            log.info("pull abandoned host=%s image=%s: no longer wanted", self.host, image)
        # images of retained instances too: the server then knows a rollback needs no pull
        refs |= {i.image for i in self._instances if i.image and not i.image.startswith("sha256:")}
        unknown = refs - set(self._digests)  # known images are not inspected again each pass
        if unknown:
            self._digests.update(await asyncio.to_thread(self.driver.present_images, unknown))
        # then the pins that their tags are not (those found are known from then on)
        unknown = pinned_refs(desired, self._digests) - set(self._digests)
        if unknown:
            self._digests.update(await asyncio.to_thread(self.driver.present_images, unknown))
        refs |= pinned
        for ref in set(self._digests) - refs:  # report (and remember) only images in use:
            del self._digests[ref]  # a status must not grow with every release ever deployed
        acted, probe_now = await self._round(desired)
        if probe_now and self.desired is desired and self.engine_error is None:
            # it started an instance whose first probe is due at once: a second round probes
            # it and, if it is ready, retires the old one, so a deploy is one pass and one
            # status ("running, ready"), not two (at 10,000 hosts each is a message the
            # server must take). That round planned after the probe: if it started nothing
            # itself, no look after acting is due (a probe that failed is due again soon,
            # and the health tracker wakes the loop for it)
            acted = (await self._round(desired))[0]
        if self.desired is desired and self.engine_error is None:
            await self.volumes.run(desired, self._instances)  # of apps removed with them
        if acted:
            # look again soon: what was just started has to prove itself, and the next step
            # (retiring the old instance) should not wait for the poll interval
            self._look_at = self.clock() + AFTER_ACTION_SECONDS
        self.reports.cancel()  # the pass's own report goes now
        await self.report()
        metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    async def _round(self, desired: DesiredState) -> tuple[bool, bool]:
        """Judge readiness, plan, and act on the plan. Returns whether a pull, run or start
        was tried (what follows may be due soon), and whether an instance was started whose
        probe may find it ready at once."""
        ready = await self.health.check(desired.assignments, self._instances, self.clock())
        if ready != self._ready:
            self._ready = ready
            self.reports.soon()  # readiness first: retiring old instances may take a while
        await self.evidence.note_unhealthy(desired, self._instances, self.clock())
        actions = plan_reconcile(
            self.host,
            desired.assignments,
            self._instances,
            frozenset(self._digests),
            ready,
            self.retain,
            desired.prepull,
            self.prune_images,
            self._digests,
            await self.pins.mismatched(desired, self._instances),
        )
        acted = False
        probe_now = False
        stale = False  # a stop or removal changed the engine since the last look
        halted: set[str] = set()  # apps whose new image is missing this pass
        for action in actions:
            if self.desired is not desired:
                break  # a newer desired state arrived: replan from scratch
            if _app(action) in halted and isinstance(action, Stop | Run | Start):
                continue  # a stop-first must not stop the old instance for nothing
            if stale and not isinstance(action, Remove):
                await self._look()  # what came before shows while a slow step runs
                stale = False
            outcome = await self._execute(action)
            if self.engine_error is not None:
                return False, False  # the Engine went away: nothing more to try this pass
            if isinstance(action, Pull) and outcome != "ok":
                # failed, or waiting for its retry: the bring-up that needs the image waits
                # too, and the pull's error stays the reported problem
                halted |= {
                    a.assignment.app
                    for a in actions
                    if isinstance(a, Run)
                    and action.image in (a.assignment.spec.image, _run_ref(a.assignment))
                }
            if outcome is not None:
                # a round that only retired old instances has planned all of it (stops and
                # removals together): a second look would find nothing to do
                acted = acted or not isinstance(action, Stop | Remove)
                probe_now = probe_now or (outcome == "ok" and ready_at_probe(action, desired))
                if isinstance(action, Run | Start):
                    await self._look()  # the new container's id, and when it first ran
                else:
                    # a pull changes no container; a stop or removal is seen at the next
                    # look, before any step but a (quick) removal: a retirement of one old
                    # instance costs one list of the engine's containers, not two
                    stale = stale or not isinstance(action, Pull)
                    self.reports.soon()
        if stale:
            await self._look()
        self.evidence.remember_converged(desired, self._instances, ready)
        return acted, probe_now

    async def _look(self) -> None:
        """Read the engine's containers after acting, and report what changed soon."""
        await self._observe()
        self.health.seen_running(self._instances, self.clock())
        self.reports.soon()

    async def report(self, force: bool = False) -> None:
        """Send the full observed status, if connected and it changed (or `force`)."""
        await self.reports.report(force)

    def _status(self) -> Status:
        """The status as it stands (agent/reports.py builds it, masked)."""
        return build_status(
            self.host,
            self.desired,
            self._instances,
            self._ready,
            self._digests,
            self.evidence.problems,
            self.engine_error,
        )

    async def _observe(self) -> None:
        started = time.perf_counter()
        self._instances = await asyncio.to_thread(self.driver.list_instances)
        metrics.child(metrics.DOCKER_SECONDS, "list").observe(time.perf_counter() - started)

    async def _execute(self, action: Action) -> str | None:
        """Run one action: "ok", "failed" (recorded as a problem, retried later with a
        backoff), or None when it was not tried (its retry is not due yet)."""
        now = self.clock()
        if not self.evidence.due(action, now):
            return None  # its retry, or a crash-looping container's start, is not due yet
        drift = self.evidence.drift(action, self._instances)
        if drift is not None:
            await self.reports.event(DRIFT_HEALED, *drift)
        kind = type(action).__name__.lower()
        started = time.perf_counter()
        try:
            if isinstance(action, Pull):
                if not await self._pulled(action.image):
                    return None  # still pulling: the apps that need it wait, the others not
            else:
                await asyncio.to_thread(self._call, action)
        except Exception as exc:
            metrics.child(metrics.CONTAINER_ACTIONS, kind, "error").inc()
            if await self._engine_down(exc):
                return "failed"  # not the release's fault: no problem recorded, tried again
            if isinstance(action, Pull):
                metrics.child(metrics.PULLS, "error").inc()
            self.evidence.failed(action, str(exc), self.desired, now)
            if isinstance(action, Run):  # perhaps its image was removed by hand: look again
                self._digests.pop(action.assignment.spec.image, None)
            return "failed"
        metrics.child(metrics.DOCKER_SECONDS, kind).observe(time.perf_counter() - started)
        metrics.child(metrics.CONTAINER_ACTIONS, kind, "ok").inc()
        if isinstance(action, Pull):
            metrics.child(metrics.PULLS, "ok").inc()
        self.evidence.succeeded(action)
        key = action_key(action)
        log.info("%s host=%s app=%s release=%s", kind, self.host, key[0], key[1])
        return "ok"

    async def _pulled(self, image: str) -> bool:
        """Has `image` been pulled? Starts its pull in the background if none is in flight
        and waits a moment for it; raises the pull's error if it failed."""
        done, error = self.pulls.result(image)
        if not done:
            if self.pulls.start(image):
                await self.pulls.wait(image, PULL_INLINE_SECONDS)
            done, error = self.pulls.result(image)
            if not done:
                return False
        if error is not None:
            raise error
        self._digests.update(await asyncio.to_thread(self.driver.present_images, {image}))
        return True

    def _pull(self, image: str) -> None:
        """Pull an image (in a pull's own thread)."""
        started = time.perf_counter()
        self.driver.pull(image, self._auth(image))
        metrics.PULL_SECONDS.observe(time.perf_counter() - started)

    def _call(self, action: Run | Start | Stop | Remove) -> None:
        if isinstance(action, Run):
            self.driver.run(action.assignment, action.replica, action.name)
        elif isinstance(action, Start):
            self.driver.start(action.container_id)
        elif isinstance(action, Stop):
            self.driver.stop(action.container_id)
        else:
            self.driver.remove(action.container_id)
            if action.prune_image:
                self.driver.remove_image(action.prune_image)
                self._digests.pop(action.prune_image, None)

    def _auth(self, image: str) -> RegistryAuth | None:
        """The credentials the server sent for the registry of `image`, if any."""
        desired = self.desired
        registry = registry_of(image)
        for auth in desired.registries if desired is not None else ():
            if auth.registry == registry:
                return auth
        return None

    async def _engine_down(self, exc: Exception) -> bool:
        """After a failed call: is it because the Engine does not answer? Then that is what
        the agent reports (`Status.engine_error`), and the pass stops acting."""
        if await asyncio.to_thread(self.driver.reachable):
            return False
        if self.engine_error is None:
            log.warning("Docker Engine unavailable host=%s: %s", self.host, exc)
            metrics.ENGINE_UP.set(0)
        self.engine_error = clip(f"Docker Engine unavailable: {exc}", MAX_TEXT)
        return True

    def _engine_up(self) -> None:
        if self.engine_error is not None:
            log.info("Docker Engine available again host=%s", self.host)
            self.engine_error = None
        metrics.ENGINE_UP.set(1)


def _run_ref(assignment: Assignment) -> str:
    return run_ref(assignment.spec.image, assignment.spec.digest)


def _app(action: Action) -> str:
    return action.assignment.app if isinstance(action, Run) else action.app
