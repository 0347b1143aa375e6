"""One judgement: what a host was assigned and what it last reported -> a verdict. Pure.

The rollout controller, `GET /v1/apps/{app}` and the fleet gauges all ask this one function
whether a host is done with a release, so they cannot disagree. The rule:

- `failed`: the agent reported a problem for this release (a pull error, a crash, a failed
  health check); the problem's message is the evidence;
- `healthy`: every replica of the release is running and ready (passed its health gate for
  `min_healthy_time`) and no other release of the app still runs there;
- `updating`: some instance of the release exists, but the above does not hold yet;
- `pending`: nothing of the release is there (or the host never reported).

Whether the host has the release's image (the pre-pull) is part of the same verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.codec import dumps_json, loads_json
from agent.protocol import ContainerState, Instance, ProblemReason, Status, run_ref
from server.states import TargetState


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a host was assigned of one app: a release, its replicas and image."""

    app: str
    release: int
    replicas: int = 1
    image: str = ""
    digest: str | None = None  # the release's pin, when the deployment began
    # the image as given and its pinned reference: a host may hold the pin and not the tag
    images: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "images", frozenset({self.image, run_ref(self.image, self.digest)})
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """A host's state for one assigned release, with the evidence behind it."""

    state: TargetState
    problem: str | None = None  # the agent's newest problem report for the release
    pulled: bool = False  # the host has the release's image
    pull_error: str | None = None  # the problem, when it was met while pulling
    ready: int = 0  # instances of the release running and ready


NEVER_REPORTED = Verdict(TargetState.PENDING)


def ready(instance: Instance) -> bool:
    """Is this instance running and ready (past its health gate)? The judgement's rule for
    one instance, which the fleet gauges count by too."""
    return instance.ready and instance.state == ContainerState.RUNNING


def judge(wanted: Wanted, status: Status | None) -> Verdict:
    """The verdict on one host for `wanted`, from its last status (None: never reported).

    One walk over the instances and one over the problems: the controller calls this for
    every status of a rollout, 10,000 per fan-out at 10,000 hosts."""
    if status is None:
        return NEVER_REPORTED
    app, release = wanted.app, wanted.release
    ready_count = 0
    present = stale = False
    for i in status.instances:
        if i.app != app:
            continue
        if i.release == release:
            present = True
            if ready(i):
                ready_count += 1
        elif i.state == ContainerState.RUNNING:
            stale = True
    problem = pull_error = None
    for p in status.problems:
        if p.app == app and p.release == release:
            problem = p.message
            pull_error = p.message if p.reason == ProblemReason.PULL_FAILED else None
    images = wanted.images
    pulled = bool(wanted.image) and any(image in images for image, _ in status.digests)
    if problem is not None:
        state = TargetState.FAILED
    elif ready_count >= wanted.replicas and not stale:
        state = TargetState.HEALTHY
    elif present:
        state = TargetState.UPDATING
    else:
        state = TargetState.PENDING
    return Verdict(state, problem, pulled, pull_error, ready_count)


def evidence(status: Status | None, app: str, release: int) -> dict[str, object]:
    """What a failed host showed: its problems with the release and its instances of the app
    (as plain values, stored with the target row and shown by GET /v1/deployments/{id})."""
    if status is None:
        return {"problems": [], "instances": []}
    return {
        "problems": [_plain(p) for p in status.problems if p.app == app and p.release == release],
        "instances": [_plain(i) for i in status.instances if i.app == app],
    }


def _plain(item: object) -> dict[str, object]:
    """A protocol dataclass as JSON values (tuples become lists)."""
    value: dict[str, object] = loads_json(dumps_json(item))
    return value
