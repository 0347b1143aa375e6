"""Pinned digests on the agent's side (issue 18 item 3).

A release pinned to a digest (`ContainerSpec.digest`) runs exactly that image: the driver
creates its containers from the pinned reference (`repo@digest`, or the local image whose
digest it is), the planner pulls that reference when the host has no such image
(`reconcile.has_image`), and a container of the release that runs another image (its tag
moved between two hosts' pulls) is replaced. Which containers those are is decided here,
by the image each container runs (its image id, from the engine's listing), never by the
reference it was created from: a container started from the tag before the pin arrived,
running the pinned image, stays as it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from agent.protocol import DesiredState, Instance, pinned_ref, run_ref

log = logging.getLogger(__name__)

MAX_KNOWN = 1000  # pinned images whose ids are remembered


class PinDriver(Protocol):
    """What this needs of a Docker driver."""

    def image_id(self, ref: str) -> str | None:
        """The id of the local image `ref` names, None if there is none."""

    def container_images(self) -> Mapping[str, str]:
        """The image id of each container of the last listing, by container id."""


def pinned_refs(desired: DesiredState, known: Mapping[str, str] | None = None) -> set[str]:
    """The pinned references a desired state runs or pre-pulls; with `known` (image reference
    -> its digest, or id, on the engine), only those to look for on the engine: not a pin
    that its image's tag already is (what `reconcile.has_image` accepts). An image built on
    the host has no `repo@digest` at all: looking for one cost an Engine call every pass."""
    pins = {(a.spec.image, a.spec.digest) for a in desired.assignments if a.spec.digest}
    pins |= {(p.image, p.digest) for p in desired.prepull if p.digest}
    known = known or {}
    return {pinned_ref(image, digest) for image, digest in pins if known.get(image) != digest}


def mismatched(
    instances: Iterable[Instance],
    container_images: Mapping[str, str],
    pinned_ids: Mapping[tuple[str, int], str],
) -> frozenset[str]:
    """The containers of a pinned release whose image is not its pinned image (`pinned_ids`:
    (app, release) -> the pinned image's id, for the pins whose image is on the engine).
    A container whose image is not known is not judged."""
    wrong = set()
    for inst in instances:
        target = pinned_ids.get((inst.app, inst.release))
        running = container_images.get(inst.container_id)
        if target is not None and running is not None and running != target:
            wrong.add(inst.container_id)
    return frozenset(wrong)


class Pins:
    """Finds the pinned images' ids (each looked up once: a digest never moves)."""

    def __init__(self, driver: PinDriver) -> None:
        self.driver = driver
        self._ids: dict[str, str] = {}  # pinned reference -> its image id

    async def mismatched(
        self, desired: DesiredState, instances: Sequence[Instance]
    ) -> frozenset[str]:
        """The containers to replace (see `mismatched`), and those of a pinned release whose
        pinned image is not on the engine (the planner pulls it first, and replaces only
        what then differs). No Docker call unless a pinned release has a container that
        was not created from its pinned reference."""
        pinned_ids: dict[tuple[str, int], str] = {}
        suspects: set[str] = set()
        for a in desired.assignments:
            digest = a.spec.digest
            if digest is None:
                continue
            ref = run_ref(a.spec.image, digest)
            mine = [i for i in instances if (i.app, i.release) == (a.app, a.release)]
            if all(i.image == ref for i in mine):
                continue  # none, or all made from the pin
            found = self._ids.get(ref)
            if found is None:
                try:  # the pinned reference, or a pin that is a local image's id (no registry)
                    found = await asyncio.to_thread(self.driver.image_id, ref)
                    found = found or await asyncio.to_thread(self.driver.image_id, digest)
                except Exception as exc:  # the Engine went away: judged at a later pass
                    log.debug("pinned image lookup failed image=%s: %s", ref, exc)
                    continue
                if found is None:
                    # not here: cannot tell what they run. The planner pulls the pin (they
                    # keep serving meanwhile), then they are judged
                    suspects |= {i.container_id for i in mine if i.image != ref}
                    continue
                if len(self._ids) >= MAX_KNOWN:
                    self._ids.clear()  # found again when needed
                self._ids[ref] = found
            pinned_ids[(a.app, a.release)] = found
        if not pinned_ids:
            return frozenset(suspects)
        return frozenset(suspects) | mismatched(
            instances, self.driver.container_images(), pinned_ids
        )
