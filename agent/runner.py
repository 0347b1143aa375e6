"""The agent's reconcile loop: a thin I/O shell around `plan_reconcile`.

(Over 400 lines: the loop, its status reports and the health gate's bookkeeping share one
state per host; tests/agent/test_runner.py covers it through its public calls.)

A push, a Docker event or a timer only wakes the loop; each pass re-reads the containers,
plans, and executes the plan one action at a time. What changed is reported within 0.1 s
while the pass acts, and at its end (quick steps share one status). A pass that starts an
instance with a health probe probes it at once, and retires the old one in the same pass if
the probe passes. Docker SDK calls run in a thread. A failing action is recorded and retried
with capped backoff. Pulls run in the background (agent/pulls.py): a pass waits at most
PULL_INLINE_SECONDS for one, holds back only the app that needs its image, and a pull that
no desired state needs any longer is abandoned at the next pass.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from agent import metrics
from agent.caps import MAX_TEXT
from agent.health import HealthTracker
from agent.masking import mask, mask_problem, secret_values
from agent.pins import Pins, pinned_refs
from agent.protocol import (
    AppProblem,
    Assignment,
    ContainerSpec,
    DesiredState,
    Event,
    Instance,
    Message,
    RegistryAuth,
    Status,
    clip,
    fit_event,
    fit_status,
    registry_of,
    run_ref,
)
from agent.pulls import DEFAULT_PULL_TIMEOUT, Pulls
from agent.reconcile import Action, Pull, Remove, Run, Start, Stop, plan_reconcile
from agent.volumes import VolumePurges

log = logging.getLogger(__name__)

Send = Callable[[Message], Awaitable[None]]

AFTER_ACTION_SECONDS = 0.25
# While a pass acts, what changed goes out at most this much later, and at the pass's end at
# once: a quick pull-then-run, or stop-then-remove, is one status, not one per step (at 10,000
# hosts each status is a message the server must take), while a slow step (a long pull, a stop
# that waits out its grace period) still shows what came before it.
REPORT_SECONDS = 0.1
DUE_SLACK_SECONDS = 0.005  # wake just after a deadline, not a hair before it
RESTART_WINDOW = 30.0  # a container started again within this long is crash-looping
# a start that failed because a host port Docker picked was taken meanwhile (`_port_race`) is
# tried again this many times before it counts as the release's problem
PORT_RACE_TRIES = 3
# A pass waits this long for a pull it started: a quick one (a cached layer, a local
# registry) still makes pull-then-run one pass and one status; a slow one goes on in the
# background, and its end wakes the loop.
PULL_INLINE_SECONDS = 1.0


class Driver(Protocol):
    """What the loop needs from a Docker driver (the real one, or a benchmark's fake)."""

    def list_instances(self) -> list[Instance]:
        """Every container of this host, running or not."""

    def present_images(self, refs: set[str]) -> dict[str, str]:
        """Map each of `refs` present on the host to its digest."""

    def pull(self, ref: str, auth: RegistryAuth | None = None) -> None:
        """Pull an image; raise on failure."""

    def run(self, assignment: Assignment, replica: int, name: str) -> str:
        """Create and start one instance; return its container id."""

    def start(self, container_id: str) -> None:
        """Start an existing container."""

    def stop(self, container_id: str, timeout: int = 10) -> None:
        """Stop a container within `timeout` seconds."""

    def remove(self, container_id: str) -> None:
        """Remove a container."""

    def remove_image(self, ref: str) -> None:
        """Remove an image if nothing needs it."""

    def exec_ok(self, container_id: str, command: tuple[str, ...]) -> bool:
        """Run a command in a container; True if it exits 0."""

    def reachable(self) -> bool:
        """Does the Engine answer now? Asked after a call failed: an Engine that is down is
        a fault of the host, never evidence against the release being deployed."""
        ...

    def logs(self, container_id: str, lines: int = 20) -> list[str]:
        """The container's last `lines` lines of output."""

    def remove_volumes(self, app: str) -> list[str]:
        """Remove an app's volumes on this host (agent/volumes.py); their names."""

    def image_id(self, ref: str) -> str | None:
        """The id of the local image `ref` names (agent/pins.py), None if none."""

    def container_images(self) -> Mapping[str, str]:
        """The image id of each container of the last listing (agent/pins.py)."""


@dataclass
class _Backoff:
    failures: int = 0
    not_before: float = 0.0


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
        self._send: Send | None = None
        self._backoff: dict[tuple[str, int, str], _Backoff] = {}
        self._problems: dict[tuple[str, int], AppProblem] = {}
        self._converged: set[tuple[str, int, int]] = set()
        self._digests: dict[str, str] = {}
        self._instances: list[Instance] = []
        self._ready: frozenset[str] = frozenset()
        self._ran: set[str] = set()  # containers seen running for the current desired state
        self._last_status: Status | None = None
        self._starts: dict[str, tuple[int, float]] = {}
        self._report_lock = asyncio.Lock()  # statuses leave in the order they were built
        self._report_timer: asyncio.TimerHandle | None = None
        self._report_tasks: set[asyncio.Task[None]] = set()
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
        self._send = send
        self._last_status = None
        if send is None:
            self._cancel_report()  # nobody to report to; the next connection gets all

    def accept(self, desired: DesiredState) -> bool:
        """Take a pushed desired state if it is newer than the one held; wake the loop."""
        if desired.host != self.host:
            log.warning("ignoring desired state for host=%s (I am %s)", desired.host, self.host)
            return False
        if self.desired is not None and desired.generation <= self.desired.generation:
            return False
        log.info("desired state host=%s generation=%d", self.host, desired.generation)
        self.desired = desired
        self._backoff.clear()
        self._ran.clear()
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
                self._report_soon()  # what it changed before failing (a problem, a digest)

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
        self._cancel_report()  # the pass's own report goes now
        await self.report()
        metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    async def _round(self, desired: DesiredState) -> tuple[bool, bool]:
        """Judge readiness, plan, and act on the plan. Returns whether a pull, run or start
        was tried (what follows may be due soon), and whether an instance was started whose
        probe may find it ready at once."""
        ready = await self.health.check(desired.assignments, self._instances, self.clock())
        if ready != self._ready:
            self._ready = ready
            self._report_soon()  # readiness first: retiring old instances may take a while
        await self._note_unhealthy(desired)
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
                probe_now = probe_now or (outcome == "ok" and _ready_at_probe(action, desired))
                if isinstance(action, Run | Start):
                    await self._look()  # the new container's id, and when it first ran
                else:
                    # a pull changes no container; a stop or removal is seen at the next
                    # look, before any step but a (quick) removal: a retirement of one old
                    # instance costs one list of the engine's containers, not two
                    stale = stale or not isinstance(action, Pull)
                    self._report_soon()
        if stale:
            await self._look()
        self._remember_converged(desired, ready)
        return acted, probe_now

    async def _look(self) -> None:
        """Read the engine's containers after acting, and report what changed soon."""
        await self._observe()
        self.health.seen_running(self._instances, self.clock())
        self._report_soon()

    def _report_soon(self) -> None:
        """Report within REPORT_SECONDS, unless the pass ends (and reports) first."""
        if self._report_timer is None and self._send is not None:
            loop = asyncio.get_running_loop()
            self._report_timer = loop.call_later(REPORT_SECONDS, self._report_due)

    def _cancel_report(self) -> None:
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None

    def _report_due(self) -> None:
        self._report_timer = None
        task = asyncio.ensure_future(self.report())
        self._report_tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._report_tasks.discard)

    async def report(self, force: bool = False) -> None:
        """Send the full observed status, if connected and it changed (or `force`)."""
        async with self._report_lock:
            await self._report(force)

    async def _report(self, force: bool) -> None:
        if self._send is None:
            return
        desired = self.desired
        current = set()
        values = secret_values(desired)  # an app's output may show them: never reported
        if desired is not None:
            current = {(a.app, a.release) for a in desired.assignments}
            current |= {(p.app, p.release) for p in desired.prepull}
        status = fit_status(
            Status(
                host=self.host,
                generation=desired.generation if desired else 0,
                instances=tuple(
                    replace(i, ready=True) if i.container_id in self._ready else i
                    for i in self._instances
                ),
                digests=tuple(sorted(self._digests.items())),
                problems=tuple(
                    mask_problem(p, values) for k, p in self._problems.items() if k in current
                ),
                engine_error=self.engine_error,
            )
        )
        if status == self._last_status and not force:
            return  # liveness is the WebSocket's ping/pong: an unchanged status is not news
        self._last_status = status
        await self._safe_send(status)

    async def _observe(self) -> None:
        started = time.perf_counter()
        self._instances = await asyncio.to_thread(self.driver.list_instances)
        metrics.child(metrics.DOCKER_SECONDS, "list").observe(time.perf_counter() - started)

    async def _execute(self, action: Action) -> str | None:
        """Run one action: "ok", "failed" (recorded as a problem, retried later with a
        backoff), or None when it was not tried (its retry is not due yet)."""
        key = _key(action)
        gate = self._backoff.get(key)
        now = self.clock()
        if gate is not None and now < gate.not_before:
            return None
        if isinstance(action, Start):
            # starting the same container again and again is a crash loop: back off
            count, last = self._starts.get(action.container_id, (0, float("-inf")))
            if now - last < RESTART_WINDOW:
                if now - last < min(60.0, 0.5 * 2**count):
                    return None
                count += 1
            else:
                count = 1
            self._starts[action.container_id] = (count, now)
        await self._note_drift(action)
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
            gate = self._backoff.setdefault(key, _Backoff())
            gate.failures += 1
            delay = min(60.0, 0.5 * 2**gate.failures) * random.uniform(0.5, 1.0)
            gate.not_before = now + delay
            log.warning(
                "%s failed host=%s app=%s release=%s: %s (retry in %.1fs)",
                kind, self.host, key[0], key[1], mask(str(exc), secret_values(self.desired)),
                delay,
            )  # fmt: skip
            if isinstance(action, Run):  # perhaps its image was removed by hand: look again
                self._digests.pop(action.assignment.spec.image, None)
            if gate.failures <= PORT_RACE_TRIES and _port_race(action, str(exc), self.desired):
                return "failed"  # the host's doing, not the release's: tried again, no problem
            reason = "pull_failed" if isinstance(action, Pull) else "create_failed"
            message = str(exc)
            if (
                isinstance(action, Pull)
                and _refused_login(message)
                and not self._auth(action.image)
            ):
                registry = registry_of(action.image)
                message += f" (the server sent no credentials for registry {registry}: an admin adds them with POST /v1/registries)"
            self._problems[key[:2]] = AppProblem(key[0], key[1], reason, message)
            return "failed"
        metrics.child(metrics.DOCKER_SECONDS, kind).observe(time.perf_counter() - started)
        metrics.child(metrics.CONTAINER_ACTIONS, kind, "ok").inc()
        if isinstance(action, Pull):
            metrics.child(metrics.PULLS, "ok").inc()
        self._backoff.pop(key, None)
        if isinstance(action, Pull | Run):
            self._problems.pop(key[:2], None)
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

    async def _note_drift(self, action: Action) -> None:
        """A Run or Start of an instance that had converged means someone removed or stopped it."""
        if isinstance(action, Run):
            a = action.assignment
            slot = (a.app, a.release, action.replica)
            what = "removed; recreated"
        elif isinstance(action, Start):
            inst = next((i for i in self._instances if i.container_id == action.container_id), None)
            if inst is None:
                return
            slot = (inst.app, inst.release, inst.replica)
            what = f"{inst.state} (exit code {inst.exit_code}); started again"
        else:
            return
        if slot not in self._converged:
            return
        self._converged.discard(slot)
        metrics.DRIFT_HEALS.inc()
        message = f"instance {slot[2]} of release {slot[1]} was {what}"
        log.warning("drift healed host=%s app=%s: %s", self.host, slot[0], message)
        await self._safe_send(fit_event(Event(self.host, "drift_healed", slot[0], message)))

    def _remember_converged(self, desired: DesiredState, ready: frozenset[str]) -> None:
        for cid in ready:
            self._starts.pop(cid, None)  # it proved itself: its next start is no crash loop
        wanted = {(a.app, a.release) for a in desired.assignments}
        self._converged = {
            (i.app, i.release, i.replica)
            for i in self._instances
            if (i.app, i.release) in wanted and i.container_id in ready
        }

    async def _note_unhealthy(self, desired: DesiredState) -> None:
        """Record evidence for instances that crashed or fail their probe; forget it once
        they run again. Only a container seen running for this desired state can have
        crashed: a retired one we stopped ourselves exits 143 and is no evidence."""
        specs = {(a.app, a.release): a.spec for a in desired.assignments}
        now = self.clock()
        for inst in self._instances:
            if (inst.app, inst.release) in specs and inst.state == "running":
                self._ran.add(inst.container_id)
        for key, spec in specs.items():
            insts = [i for i in self._instances if (i.app, i.release) == key]
            crashed = [
                i
                for i in insts
                if i.exit_code not in (None, 0)
                and (
                    i.state == "restarting"
                    or (i.state in ("exited", "dead") and i.container_id in self._ran)
                )
            ]
            known = self._problems.get(key)
            if crashed:
                inst = crashed[0]
                if known is not None and known.message.startswith(f"container {inst.name} "):
                    continue  # evidence already taken; do not fetch logs every pass
                logs = await asyncio.to_thread(self.driver.logs, inst.container_id)
                self._problems[key] = AppProblem(
                    inst.app,
                    inst.release,
                    "exited",
                    f"container {inst.name} exited with code {inst.exit_code}",
                    exit_code=inst.exit_code,
                    logs=tuple(logs),
                )
                continue
            failing = [
                d
                for i in insts
                if (d := self.health.failing(i.container_id, spec.health, now)) is not None
            ]
            if failing:
                self._problems[key] = AppProblem(
                    key[0], key[1], "unhealthy", f"health check failing: {failing[0]}"
                )
            elif (
                known is not None
                and known.reason != "pull_failed"
                and insts
                and all(i.state == "running" for i in insts)
            ):
                del self._problems[key]  # it runs again: old evidence would fail a new rollout

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

    async def _safe_send(self, message: Message) -> None:
        send = self._send
        if send is None:
            return
        try:
            await send(message)
        except Exception as exc:  # the connection dropped; the client reconnects and resends
            log.debug("send failed host=%s: %s", self.host, exc)


def _ready_at_probe(action: Action, desired: DesiredState) -> bool:
    """Did `action` start an instance that its first probe, due at once, may find ready: one
    with a health probe and no minimum healthy time?"""
    spec: ContainerSpec | None = None
    if isinstance(action, Run):
        spec = action.assignment.spec
    elif isinstance(action, Start):
        key = (action.app, action.release)
        spec = next((a.spec for a in desired.assignments if (a.app, a.release) == key), None)
    return spec is not None and spec.health is not None and spec.min_healthy_time <= 0


def _refused_login(message: str) -> bool:
    """Does a pull's error say the registry wants credentials (Docker's wordings)?"""
    text = message.lower()
    return any(
        w in text for w in ("no basic auth credentials", "unauthorized", "authentication required")
    )


def _run_ref(assignment: Assignment) -> str:
    return run_ref(assignment.spec.image, assignment.spec.digest)


def _app(action: Action) -> str:
    return action.assignment.app if isinstance(action, Run) else action.app


def _port_race(action: Action, message: str, desired: DesiredState | None) -> bool:
    """Did a start fail because a host port Docker picked (`host` 0) was taken meanwhile by
    another socket of the host (its own connections use the same ephemeral range)? That is
    the host's doing, not the release's: it is tried again, with a new port."""
    if not isinstance(action, Run | Start):
        return False
    if "address already in use" not in message and "port is already allocated" not in message:
        return False
    if isinstance(action, Run):
        spec: ContainerSpec | None = action.assignment.spec
    else:
        wanted = (action.app, action.release)
        assigned = desired.assignments if desired is not None else ()
        spec = next((a.spec for a in assigned if (a.app, a.release) == wanted), None)
    return spec is not None and bool(spec.ports) and all(p.host == 0 for p in spec.ports)


def _key(action: Action) -> tuple[str, int, str]:
    if isinstance(action, Pull):
        return (action.app, action.release, "pull")
    if isinstance(action, Run):
        return (action.assignment.app, action.assignment.release, f"run{action.replica}")
    return (action.app, action.release, action.container_id)
