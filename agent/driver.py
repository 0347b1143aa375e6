"""The interface between the agent's loop and a Docker driver.

`agent/docker_driver.py` implements it against the Engine; the in-memory fakes
(bench/fake_driver.py, tests/agent/fake_driver.py) stand in for it. A method that asks the
Engine blocks: the agent calls it through a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from agent.protocol import Assignment, Instance, RegistryAuth


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
