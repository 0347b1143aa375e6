"""The reconcile planner: desired state + observed containers -> actions. Pure, no I/O.

Modelled on Nomad's diffAllocs and Kubernetes' level-triggered controllers: each pass looks
at the full desired and actual state and plans the few steps that bring them closer. The
agent's loop executes the actions and plans again, so a plan need not reach the goal in one
pass (a start-first update stops the old instance only once the new one is ready).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from agent.protocol import (
    Assignment,
    ContainerSpec,
    ContainerState,
    DesiredState,
    Instance,
    PortSpec,
    Prepull,
    pinned_ref,
    run_ref,
)

DEFAULT_RETAIN = 2


@dataclass(frozen=True)
class Pull:
    """Pull a release's image (before it runs, or ahead of a rollout)."""

    app: str
    release: int
    image: str


@dataclass(frozen=True)
class Run:
    """Create and start instance `replica` of an assignment's release."""

    assignment: Assignment
    replica: int
    name: str


@dataclass(frozen=True)
class Start:
    """Start again an existing, stopped instance of the desired release."""

    container_id: str
    app: str
    release: int


@dataclass(frozen=True)
class Stop:
    """Stop a container that should no longer run."""

    container_id: str
    app: str
    release: int


@dataclass(frozen=True)
class Remove:
    """Remove a container no longer kept; with `prune_image`, its image too."""

    container_id: str
    app: str
    release: int
    prune_image: str = ""  # also remove this image: no kept container or desired release uses it


Action = Pull | Run | Start | Stop | Remove


def container_name(app: str, release: int, replica: int, host: str) -> str:
    """Stable, readable name: the host suffix lets several agents share one engine."""
    return f"flotilla-{app}-{release}-{replica}.{host}"


def plan_reconcile(
    host: str,
    assignments: Sequence[Assignment],
    actual: Iterable[Instance],
    images: frozenset[str],
    ready: frozenset[str] = frozenset(),
    retain: int = DEFAULT_RETAIN,
    prepull: Sequence[Prepull] = (),
    prune_images: bool = True,
    digests: Mapping[str, str] | None = None,
    mismatched: frozenset[str] = frozenset(),
) -> list[Action]:
    """Plan the next steps for `host`.

    `images` are the image references present on the engine, `ready` the ids of containers
    that passed their health gate, `prepull` images a coming rollout needs (pulled first, so
    that no host stops anything before every host has the new image). Containers not
    labelled with `host` are never touched.

    A release pinned to a digest (`spec.digest`) needs that image: present when its pinned
    reference (`repo@digest`) is, or when the local image of its tag has that digest
    (`digests`: reference -> digest); else the pinned reference is pulled. `mismatched`
    are containers of their assignment's release that run another image than its pin (the
    tag moved before this host pulled it): once the pinned image is present each is removed
    and its replica created again. A container is never judged by its image reference:
    one started before the pin arrived, running the pinned image, is not in `mismatched`.
    """
    local = digests or {}
    mine = [i for i in actual if i.host == host]
    by_app: dict[str, list[Instance]] = defaultdict(list)
    for inst in mine:
        by_app[inst.app].append(inst)
    wanted = {a.app: a for a in assignments}
    actions: list[Action] = []
    pulled: set[str] = set()
    for p in prepull:
        ref = run_ref(p.image, p.digest)
        if not has_image(p.image, p.digest, images, local) and ref not in pulled:
            pulled.add(ref)
            actions.append(Pull(p.app, p.release, ref))
    for app in sorted(set(by_app) | set(wanted)):
        assignment = wanted.get(app)
        instances = by_app.get(app, [])
        if assignment is None:  # removed from this host: nothing is kept for a rollback
            actions += _retire(instances, keep=set(), retain=0, release=None)
            continue
        present = has_image(assignment.spec.image, assignment.spec.digest, images, local)
        actions += _plan_app(
            host, assignment, instances, present, ready, retain, pulled, mismatched
        )
    if not prune_images:
        return actions
    return _prune_images(actions, mine, assignments, prepull)


def has_image(
    image: str, digest: str | None, images: frozenset[str], digests: Mapping[str, str]
) -> bool:
    """Is the image a release runs on the engine: its pinned image, if it has a pin?"""
    if digest is None:
        return image in images
    return pinned_ref(image, digest) in images or digests.get(image) == digest


def _prune_images(
    actions: list[Action],
    mine: list[Instance],
    assignments: Sequence[Assignment],
    prepull: Sequence[Prepull],
) -> list[Action]:
    """Let a Remove take its image along when nothing kept or wanted still needs it."""
    removed = {a.container_id for a in actions if isinstance(a, Remove)}
    needed = {a.spec.image for a in assignments} | {p.image for p in prepull}
    needed |= {run_ref(a.spec.image, a.spec.digest) for a in assignments}
    needed |= {run_ref(p.image, p.digest) for p in prepull}
    needed |= {i.image for i in mine if i.container_id not in removed}
    image_of = {i.container_id: i.image for i in mine}
    result: list[Action] = []
    for action in actions:
        if isinstance(action, Remove):
            image = image_of.get(action.container_id, "")
            if image and image not in needed:
                needed.add(image)  # once: the first Remove takes it
                action = replace(action, prune_image=image)
        result.append(action)
    return result


def _plan_app(
    host: str,
    assignment: Assignment,
    instances: list[Instance],
    present: bool,
    ready: frozenset[str],
    retain: int,
    pulled: set[str],
    mismatched: frozenset[str],
) -> list[Action]:
    ref = run_ref(assignment.spec.image, assignment.spec.digest)
    pull: list[Action] = []
    if not present and ref not in pulled:
        pull = [Pull(assignment.app, assignment.release, ref)]
    # containers of this release on another image than its pin: replaced once it is here
    wrong = [
        i
        for i in instances
        if i.container_id in mismatched
        and i.release == assignment.release
        and i.replica < assignment.replicas
    ]
    if wrong and not present:
        pulled.update(a.image for a in pull if isinstance(a, Pull))
        return pull  # they keep serving while the pinned image comes
    current: dict[int, Instance] = {}
    duplicates: list[Instance] = []
    for inst in sorted(instances, key=_preference):
        if inst.release != assignment.release or inst.replica >= assignment.replicas:
            continue
        if inst in wrong:
            continue
        if inst.replica in current:
            duplicates.append(inst)
        else:
            current[inst.replica] = inst
    old_running = [
        i
        for i in instances
        if i.release != assignment.release and i.state == ContainerState.RUNNING
    ]
    surplus = [
        i for i in instances if i.release == assignment.release and i.replica >= assignment.replicas
    ]
    bring_up: list[Action] = []
    # a replaced container goes first: its replica's new one takes its name
    bring_up += [Remove(i.container_id, i.app, i.release) for i in wrong]
    for replica in range(assignment.replicas):
        existing = current.get(replica)
        if existing is None:
            if pull:
                pulled.add(ref)
                bring_up += pull
                pull = []
            name = container_name(assignment.app, assignment.release, replica, host)
            bring_up.append(Run(assignment, replica, name))
        elif existing.state not in (ContainerState.RUNNING, ContainerState.RESTARTING):
            bring_up.append(Start(existing.container_id, existing.app, existing.release))

    stop_first = assignment.spec.stop_first or _port_conflict(assignment.spec.ports, old_running)
    all_ready = not bring_up and all(
        current[r].container_id in ready for r in range(assignment.replicas)
    )
    actions: list[Action] = []
    if stop_first and bring_up:
        # pull first: a slow or failing pull must not leave the host with nothing running
        actions += [a for a in bring_up if isinstance(a, Pull)]
        actions += [Stop(i.container_id, i.app, i.release) for i in old_running]
        bring_up = [a for a in bring_up if not isinstance(a, Pull)]
    actions += bring_up
    actions += [Remove(i.container_id, i.app, i.release) for i in duplicates + surplus]
    if all_ready or (stop_first and bring_up):
        keep = {i.container_id for i in current.values()}
        retired = [i for i in instances if i not in duplicates and i not in surplus]
        already = {a.container_id for a in actions if isinstance(a, Stop)}
        actions += [
            a
            for a in _retire(retired, keep, retain, assignment.release, assignment.keep)
            if not (isinstance(a, Stop) and a.container_id in already)
        ]
    return actions


def _retire(
    instances: list[Instance],
    keep: set[str],
    retain: int,
    release: int | None,
    good: tuple[int, ...] = (),
) -> list[Action]:
    """Stop old instances; keep `retain` old releases stopped for fast rollbacks (the newest
    of the `good` ones the server names, else the newest), remove the rest. Every stop comes
    before any removal: the old release stops serving first, and the agent looks at the
    engine once after the quick removals, not between them and the stop."""
    old = [i for i in instances if i.container_id not in keep and i.release != release]
    releases = sorted({i.release for i in old}, reverse=True)
    if good:
        present = set(releases)
        kept_releases = {r for r in good if r in present and r != release}
        kept_releases = set(sorted(kept_releases, reverse=True)[:retain])
    else:
        kept_releases = set(releases[:retain])
    stops: list[Action] = []
    removals: list[Action] = []
    for inst in sorted(old, key=lambda i: (i.release, i.replica, i.container_id)):
        if inst.state in (ContainerState.RUNNING, ContainerState.RESTARTING, ContainerState.PAUSED):
            stops.append(Stop(inst.container_id, inst.app, inst.release))
        if inst.release not in kept_releases:
            removals.append(Remove(inst.container_id, inst.app, inst.release))
    return stops + removals


def _preference(inst: Instance) -> tuple[int, str]:
    """Among duplicates of one replica, keep a running one, then the lowest id (stable)."""
    return (0 if inst.state == ContainerState.RUNNING else 1, inst.container_id)


def _port_conflict(ports: Sequence[PortSpec], running: list[Instance]) -> bool:
    fixed = {(p.host_ip, p.host, p.protocol) for p in ports if p.host}
    if not fixed:
        return False
    held = {(p.host_ip, p.host_port, p.protocol) for i in running for p in i.ports}
    return bool(fixed & held)


def simulate(host: str, actual: Sequence[Instance], actions: Sequence[Action]) -> list[Instance]:
    """What the engine would hold after `actions`: for tests and the benchmark's fake driver."""
    result = {i.container_id: i for i in actual}
    for action in actions:
        if isinstance(action, Run):
            a = action.assignment
            cid = f"sim-{a.app}-{a.release}-{action.replica}-{len(result)}"
            result[cid] = Instance(
                container_id=cid,
                name=action.name,
                host=host,
                app=a.app,
                release=a.release,
                replica=action.replica,
                deployment=a.deployment,
                state=ContainerState.RUNNING,
                image=a.spec.image,
            )
        elif isinstance(action, Start):
            result[action.container_id] = replace(
                result[action.container_id], state=ContainerState.RUNNING
            )
        elif isinstance(action, Stop):
            result[action.container_id] = replace(
                result[action.container_id], state=ContainerState.EXITED
            )
        elif isinstance(action, Remove):
            del result[action.container_id]
    return list(result.values())


def ready_at_probe(action: Action, desired: DesiredState) -> bool:
    """Did `action` start an instance that its first probe, due at once, may find ready: one
    with a health probe and no minimum healthy time?"""
    spec: ContainerSpec | None = None
    if isinstance(action, Run):
        spec = action.assignment.spec
    elif isinstance(action, Start):
        key = (action.app, action.release)
        spec = next((a.spec for a in desired.assignments if (a.app, a.release) == key), None)
    return spec is not None and spec.health is not None and spec.min_healthy_time <= 0
