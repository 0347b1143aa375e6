"""The health gate's bookkeeping: what the agent holds against each release, between passes.

A release's problem (what the server's rollout judges) is a failed pull or create, a crash
with the container's last lines of output, or a failing health probe; it is forgotten once
the release's instances run again. A failed action is tried again after a capped backoff,
a container started again and again is a crash loop and backs off too, and an instance that
had converged and is found removed or stopped is drift, healed and told of. Only a
container seen running for the current desired state can have crashed: a retired one the
agent stopped itself exits 143 and is no evidence.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent import metrics
from agent.health import HealthTracker
from agent.masking import mask, secret_values
from agent.protocol import (
    AppProblem,
    ContainerSpec,
    ContainerState,
    DesiredState,
    Instance,
    ProblemReason,
    RegistryAuth,
    registry_of,
)
from agent.reconcile import Action, Pull, Run, Start

log = logging.getLogger(__name__)

Auth = Callable[[str], RegistryAuth | None]  # the credentials the server sent for an image

RESTART_WINDOW = 30.0  # a container started again within this long is crash-looping
# a start that failed because a host port Docker picked was taken meanwhile (`_port_race`) is
# tried again this many times before it counts as the release's problem
PORT_RACE_TRIES = 3


class CrashLogs(Protocol):
    """What this needs of a Docker driver."""

    def logs(self, container_id: str, lines: int = 20) -> list[str]:
        """The container's last `lines` lines of output."""


@dataclass
class _Backoff:
    failures: int = 0
    not_before: float = 0.0


class Evidence:
    """One host's problems by release, the backoffs of its retries, and what converged."""

    def __init__(self, host: str, driver: CrashLogs, health: HealthTracker, auth: Auth) -> None:
        self.host = host
        self.driver = driver
        self.health = health
        self._auth = auth
        self.problems: dict[tuple[str, int], AppProblem] = {}
        self._backoff: dict[tuple[str, int, str], _Backoff] = {}
        self._converged: set[tuple[str, int, int]] = set()
        self._ran: set[str] = set()  # containers seen running for the current desired state
        self._starts: dict[str, tuple[int, float]] = {}

    def new_desired(self) -> None:
        """A new desired state: every action may be tried at once, and no container has run
        for it yet."""
        self._backoff.clear()
        self._ran.clear()

    def due(self, action: Action, now: float) -> bool:
        """May `action` be tried now? Not before its retry is due, nor a start of a
        crash-looping container before its backoff ends (a start that may go is counted)."""
        gate = self._backoff.get(action_key(action))
        if gate is not None and now < gate.not_before:
            return False
        if isinstance(action, Start):
            # starting the same container again and again is a crash loop: back off
            count, last = self._starts.get(action.container_id, (0, float("-inf")))
            if now - last < RESTART_WINDOW:
                if now - last < min(60.0, 0.5 * 2**count):
                    return False
                count += 1
            else:
                count = 1
            self._starts[action.container_id] = (count, now)
        return True

    def failed(self, action: Action, error: str, desired: DesiredState | None, now: float) -> None:
        """`action` failed with `error` (the Engine answering): try it again after a backoff,
        and record the failure as its release's problem unless it is the host's doing."""
        key = action_key(action)
        kind = type(action).__name__.lower()
        gate = self._backoff.setdefault(key, _Backoff())
        gate.failures += 1
        delay = min(60.0, 0.5 * 2**gate.failures) * random.uniform(0.5, 1.0)
        gate.not_before = now + delay
        log.warning(
            "%s failed host=%s app=%s release=%s: %s (retry in %.1fs)",
            kind, self.host, key[0], key[1], mask(error, secret_values(desired)), delay,
        )  # fmt: skip
        if gate.failures <= PORT_RACE_TRIES and _port_race(action, error, desired):
            return  # the host's doing, not the release's: tried again, no problem
        reason = (
            ProblemReason.PULL_FAILED if isinstance(action, Pull) else ProblemReason.CREATE_FAILED
        )
        message = error
        if isinstance(action, Pull) and _refused_login(message) and not self._auth(action.image):
            registry = registry_of(action.image)
            message += f" (the server sent no credentials for registry {registry}: an admin adds them with POST /v1/registries)"
        self.problems[key[:2]] = AppProblem(key[0], key[1], reason, message)

    def succeeded(self, action: Action) -> None:
        """`action` went through: no retry is pending, and a pull or create that failed
        before is no longer its release's problem."""
        key = action_key(action)
        self._backoff.pop(key, None)
        if isinstance(action, Pull | Run):
            self.problems.pop(key[:2], None)

    def drift(self, action: Action, instances: list[Instance]) -> tuple[str, str] | None:
        """A Run or Start of an instance that had converged means someone removed or stopped
        it: its app and what happened, for the event `drift_healed`; None if it had not."""
        if isinstance(action, Run):
            a = action.assignment
            slot = (a.app, a.release, action.replica)
            what = "removed; recreated"
        elif isinstance(action, Start):
            inst = next((i for i in instances if i.container_id == action.container_id), None)
            if inst is None:
                return None
            slot = (inst.app, inst.release, inst.replica)
            what = f"{inst.state} (exit code {inst.exit_code}); started again"
        else:
            return None
        if slot not in self._converged:
            return None
        self._converged.discard(slot)
        metrics.DRIFT_HEALS.inc()
        message = f"instance {slot[2]} of release {slot[1]} was {what}"
        log.warning("drift healed host=%s app=%s: %s", self.host, slot[0], message)
        return slot[0], message

    def remember_converged(
        self, desired: DesiredState, instances: list[Instance], ready: frozenset[str]
    ) -> None:
        """After a round: the instances of wanted releases that are ready have converged."""
        for cid in ready:
            self._starts.pop(cid, None)  # it proved itself: its next start is no crash loop
        wanted = {(a.app, a.release) for a in desired.assignments}
        self._converged = {
            (i.app, i.release, i.replica)
            for i in instances
            if (i.app, i.release) in wanted and i.container_id in ready
        }

    async def note_unhealthy(
        self, desired: DesiredState, instances: list[Instance], now: float
    ) -> None:
        """Record evidence for instances that crashed or fail their probe; forget it once
        they run again. Only a container seen running for this desired state can have
        crashed: a retired one we stopped ourselves exits 143 and is no evidence."""
        specs = {(a.app, a.release): a.spec for a in desired.assignments}
        for inst in instances:
            if (inst.app, inst.release) in specs and inst.state == ContainerState.RUNNING:
                self._ran.add(inst.container_id)
        for key, spec in specs.items():
            insts = [i for i in instances if (i.app, i.release) == key]
            crashed = [
                i
                for i in insts
                if i.exit_code not in (None, 0)
                and (
                    i.state == ContainerState.RESTARTING
                    or (
                        i.state in (ContainerState.EXITED, ContainerState.DEAD)
                        and i.container_id in self._ran
                    )
                )
            ]
            known = self.problems.get(key)
            if crashed:
                inst = crashed[0]
                if known is not None and known.message.startswith(f"container {inst.name} "):
                    continue  # evidence already taken; do not fetch logs every pass
                logs = await asyncio.to_thread(self.driver.logs, inst.container_id)
                self.problems[key] = AppProblem(
                    inst.app,
                    inst.release,
                    ProblemReason.EXITED,
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
                self.problems[key] = AppProblem(
                    key[0], key[1], ProblemReason.UNHEALTHY, f"health check failing: {failing[0]}"
                )
            elif (
                known is not None
                and known.reason != ProblemReason.PULL_FAILED
                and insts
                and all(i.state == ContainerState.RUNNING for i in insts)
            ):
                del self.problems[key]  # it runs again: old evidence would fail a new rollout


def action_key(action: Action) -> tuple[str, int, str]:
    """An action's app, release, and what it does to which instance (its retries' key)."""
    if isinstance(action, Pull):
        return (action.app, action.release, "pull")
    if isinstance(action, Run):
        return (action.assignment.app, action.assignment.release, f"run{action.replica}")
    return (action.app, action.release, action.container_id)


def _refused_login(message: str) -> bool:
    """Does a pull's error say the registry wants credentials (Docker's wordings)?"""
    text = message.lower()
    return any(
        w in text for w in ("no basic auth credentials", "unauthorized", "authentication required")
    )


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
