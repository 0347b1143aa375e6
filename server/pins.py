"""Which digest a release is pinned to, from what a host assigned it reports. Pure.

A release is pinned when it is written if its image reference names a digest
(`db/deploys.py`); otherwise to the digest the first host that runs it resolves. The hub
keeps, per connected host, the releases its last desired state assigned it without a pin
(`Unpinned`, with that state's generation), and takes a digest for one only from a status
of that generation or later (the agent had heard of the assignment) whose digest is for the
release's own image reference: the digest of the image that host runs for this release,
resolved for it (pulled, or already there when it was assigned). An agent that still runs an
older release of the same tag, and was not assigned this one, is never asked. The first
such digest written wins (`db/pins.pin_digest`: only a release without one), and from
then on every desired state carries it (`ContainerSpec.digest`, `Prepull.digest`); a host
that reported another digest for the release is pushed the pin at once
(`host_log.HostLog.pins`).
"""

from __future__ import annotations

from typing import NamedTuple

from agent.protocol import DesiredState, Status

Releases = tuple[tuple[str, int, str], ...]  # (app, release, image)


class Unpinned(NamedTuple):
    """The releases a host was assigned without a pin: (app, release, image), at a generation.
    (A named tuple: the hub makes one per host on every push, and a tuple is made fastest.)"""

    generation: int
    releases: Releases


NONE = Unpinned(0, ())


def awaiting(desired: DesiredState) -> Releases:
    """(app, release, image) of what `desired` assigns without a pin: the same for every
    host of a fan-out, which share their assignments (`Hub._send_all` makes it once)."""
    return tuple(
        (a.app, a.release, a.spec.image) for a in desired.assignments if a.spec.digest is None
    )


def unpinned(desired: DesiredState, releases: Releases | None = None) -> Unpinned:
    """What of `desired` awaits a pin (`releases`: its `awaiting`, if made already)."""
    if releases is None:
        releases = awaiting(desired)
    return Unpinned(desired.generation, releases) if releases else NONE


def found(status: Status, waiting: Unpinned) -> set[tuple[str, int, str]]:
    """(app, release, digest) of the pins `status` resolves for what `waiting` awaits."""
    if not waiting.releases or status.generation < waiting.generation or not status.digests:
        return set()
    resolved = set()
    for app, release, image in waiting.releases:  # one in a fan-out, of a few digests
        # the last digest reported for the image, as a dict of the pairs would keep
        digest = next((d for ref, d in reversed(status.digests) if ref == image), None)
        if digest:
            resolved.add((app, release, digest))
    return resolved
