"""What an agent may speak for: its own host, the apps and images it was told of. Pure.

An agent's token lets it speak for its host and nothing more (as Kubernetes' NodeRestriction
confines a kubelet). The hub keeps, per connected host, what the host's last desired state
told it (`Told`: the apps assigned or to pre-pull there, and their images), and passes every
report through these functions before anyone reads it:

- a status keeps only the instances labelled with this host, of apps it was told of; the
  problems of those apps; the digests of images it was told to pull;
- an event is kept only if its kind is one an agent can witness (`AGENT_EVENT_KINDS`, never
  a deployment's) and its app is one the host was told of.

Whatever is cut is counted (`flotilla_agent_reports_refused_total{reason="foreign"|"kind"}`),
never recorded: no read, webhook or metric series grows with what an agent makes up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from agent.protocol import DesiredState, Event, Status, run_ref
from server.states import EventKind

# the only kinds an agent may emit: what it did on its own host
AGENT_EVENT_KINDS = frozenset({EventKind.DRIFT_HEALED})


@dataclass(frozen=True)
class Told:
    """What a host's last desired state told its agent of."""

    apps: frozenset[str] = frozenset()
    images: frozenset[str] = frozenset()


NOTHING = Told()


def told_of(desired: DesiredState) -> Told:
    """The apps and images a desired state tells its host of (assigned or to pre-pull)."""
    apps = {a.app for a in desired.assignments} | {p.app for p in desired.prepull}
    images = {a.spec.image for a in desired.assignments} | {p.image for p in desired.prepull}
    # and their pinned references: a host that holds the pinned image says so by that name
    images |= {run_ref(a.spec.image, a.spec.digest) for a in desired.assignments}
    images |= {run_ref(p.image, p.digest) for p in desired.prepull}
    return Told(frozenset(apps), frozenset(images))


def confine_status(status: Status, host: str, told: Told) -> tuple[Status, int]:
    """The part of `status` the host's agent may report, and how many instances and problems
    were cut (digests of images it was not told of are dropped silently)."""
    if _within(status, host, told):
        return status, 0  # the common case: nothing to cut, nothing built
    apps = told.apps
    instances = tuple(i for i in status.instances if i.host == host and i.app in apps)
    problems = tuple(p for p in status.problems if p.app in apps)
    digests = tuple(d for d in status.digests if d[0] in told.images)
    # digests of images it was not told of are dropped but not counted: an agent keeps old
    # images (a reconnected one was told of them on an earlier connection), which is no fault
    cut = len(status.instances) - len(instances) + len(status.problems) - len(problems)
    return replace(status, instances=instances, problems=problems, digests=digests), cut


def _within(status: Status, host: str, told: Told) -> bool:
    """Is all of `status` the host's agent's to report? Asked of every status, so it stops at
    the first thing outside and builds nothing (a 10,000-host fan-out takes 10,000)."""
    for instance in status.instances:
        if instance.host != host or instance.app not in told.apps:
            return False
    for problem in status.problems:
        if problem.app not in told.apps:
            return False
    return all(image in told.images for image, _ in status.digests)


def event_refusal(event: Event, told: Told) -> str | None:
    """Why the host's agent may not report `event` ("kind" or "foreign"); None if it may."""
    if event.kind not in AGENT_EVENT_KINDS:
        return "kind"
    if event.app not in told.apps:
        return "foreign"
    return None
