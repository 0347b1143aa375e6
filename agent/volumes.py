"""Removing the volumes of apps removed with `?volumes=true` (issue 18 item 4).

The desired state lists such apps (`DesiredState.purge_volumes`) for as long as the removal
applies: level-triggered, so an agent that was away does it when it comes back. An app's
volumes go once none of its containers is left on this host (Docker refuses to remove a
volume a container uses), and never while the desired state assigns or pre-pulls the app:
then the volumes are a new release's. `due` is the decision (pure); `VolumePurges` does it
once per app while the removal applies, and again after a failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from agent.protocol import DesiredState, Instance

log = logging.getLogger(__name__)


class VolumeDriver(Protocol):
    """What this needs of a Docker driver."""

    def remove_volumes(self, app: str) -> list[str]:
        """Remove the app's volumes on this host; their names."""


def due(desired: DesiredState, instances: Iterable[Instance], done: set[str]) -> list[str]:
    """The apps whose volumes to remove now: listed for removal, neither assigned nor to be
    pre-pulled, with no container of this host left, and not removed already."""
    busy = {a.app for a in desired.assignments} | {p.app for p in desired.prepull}
    busy |= {i.app for i in instances if i.host == desired.host}
    return sorted(set(desired.purge_volumes) - busy - done)


class VolumePurges:
    """Removes what `due` says, remembering what it removed while the removal applies."""

    def __init__(self, host: str, driver: VolumeDriver) -> None:
        self.host = host
        self.driver = driver
        self._done: set[str] = set()

    async def run(self, desired: DesiredState, instances: Iterable[Instance]) -> None:
        """Remove the volumes of the apps due; a failure is logged and tried again next pass."""
        self._done &= set(desired.purge_volumes)  # a removal withdrawn, then made again: redo
        for app in due(desired, instances, self._done):
            try:
                names = await asyncio.to_thread(self.driver.remove_volumes, app)
            except Exception as exc:
                log.warning("removing volumes failed host=%s app=%s: %s", self.host, app, exc)
                continue
            self._done.add(app)
            log.info("volumes removed host=%s app=%s volumes=%s", self.host, app, names)
